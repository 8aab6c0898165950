//! Where hooks come from: extras.d dispatch scripts, external plugins
//! (`enable_plugin NAME URL [REF]`), and hypervisor plugins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::system::process::{Cmd, ProcessError};

/// The five functions a hypervisor plugin must define.
pub(crate) const HYPERVISOR_FUNCTIONS: [&str; 5] = [
    "install_nova_hypervisor",
    "configure_nova_hypervisor",
    "start_nova_hypervisor",
    "stop_nova_hypervisor",
    "cleanup_nova_hypervisor",
];

/// extras.d scripts the project itself ships (the reserved 00–09 and 90–99 ranges
/// are for these; anything else there is reported).
pub(crate) const SHIPPED_EXTRAS: &[&str] = &[];

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("could not read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin '{name}' is enabled twice (enable_plugin {name} ...)")]
    EnabledTwice { name: String },
    #[error(
        "plugin '{plugin}' requires '{missing}', which is not enabled (add enable_plugin {missing} URL to localrc)"
    )]
    MissingRequirement { plugin: String, missing: String },
    #[error("plugins require each other in a cycle: {}", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
    #[error("could not fetch plugin '{name}' from {url} (ref {git_ref})")]
    Clone {
        name: String,
        url: String,
        git_ref: String,
        #[source]
        source: Box<ProcessError>,
    },
    #[error("plugin '{name}' is not at {dir} and ERROR_ON_CLONE forbids cloning it")]
    CloneForbidden { name: String, dir: PathBuf },
    #[error(
        "plugin '{name}': the repository {url} (ref {git_ref}) has no devstack/ directory, so it is not a DevStack plugin"
    )]
    NotAPlugin {
        name: String,
        url: String,
        git_ref: String,
    },
    #[error(
        "{path} is not a regular file (a directory, or a symlink to nothing): an extras.d script must be a file"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "plugin '{name}': {dir} exists but holds no devstack/ directory; it is left alone (move it away, or fix the plugin's name)"
    )]
    Occupied { name: String, dir: PathBuf },
    #[error(
        "enable_plugin '{name}': a plugin name is a simple name (letters, digits, '-', '_', '.'; not '.' or '..', no '/'): it names the directory $DEST/NAME"
    )]
    BadName { name: String },
}

/// A plugin name that can only name a directory inside DEST.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// One `extras.d/NN-name.sh` script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ExtrasScript {
    pub path: PathBuf,
    pub file_name: String,
    pub sequence: u8,
}

/// Finds the extras.d scripts in sequence order (then by name), with warnings for
/// names that do not fit (skipped) and for scripts in the reserved ranges (still run).
pub(crate) fn discover_extras(dir: &Path) -> Result<(Vec<ExtrasScript>, Vec<String>), PluginError> {
    let mut scripts = Vec::new();
    let mut warnings = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((scripts, warnings)),
        Err(source) => {
            return Err(PluginError::Read {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| PluginError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if file_name.starts_with('.') {
            continue;
        }
        if Path::new(&file_name).extension().is_none_or(|e| e != "sh") {
            // A README is nothing to say; a name that looks like a hook script
            // (`NN-`) but is not `*.sh` (`.bash`, `.SH`, none) is skipped, and said.
            let b = file_name.as_bytes();
            if b.len() > 3 && b[0].is_ascii_digit() && b[1].is_ascii_digit() && b[2] == b'-' {
                warnings.push(format!(
                    "extras.d/{file_name} is not a .sh file; skipped (only extras.d/NN-name.sh files are sourced)"
                ));
            }
            continue;
        }
        let Some(sequence) = parse_extras_name(&file_name) else {
            warnings.push(format!(
                "extras.d/{file_name} does not match NN-name.sh (two digits, a dash, a name); skipped"
            ));
            continue;
        };
        // A directory or a dangling symlink cannot be sourced: said now, clearly,
        // not as a failure of the batch.
        if !entry.path().is_file() {
            return Err(PluginError::NotAFile { path: entry.path() });
        }
        if !(10..90).contains(&sequence) && !SHIPPED_EXTRAS.contains(&file_name.as_str()) {
            warnings.push(format!(
                "extras.d/{file_name} uses sequence {sequence:02}, reserved for devstack's own scripts (00-09, 90-99); it runs anyway"
            ));
        }
        scripts.push(ExtrasScript {
            path: entry.path(),
            file_name,
            sequence,
        });
    }
    scripts.sort_by(|a, b| (a.sequence, &a.file_name).cmp(&(b.sequence, &b.file_name)));
    Ok((scripts, warnings))
}

fn parse_extras_name(name: &str) -> Option<u8> {
    let stem = name.strip_suffix(".sh")?;
    let bytes = stem.as_bytes();
    if bytes.len() < 4
        || !bytes[0].is_ascii_digit()
        || !bytes[1].is_ascii_digit()
        || bytes[2] != b'-'
    {
        return None;
    }
    let rest = &stem[3..];
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return None;
    }
    stem[..2].parse().ok()
}

/// One `enable_plugin NAME URL [REF]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalPlugin {
    pub name: String,
    pub url: String,
    pub git_ref: String,
    /// `$DEST/NAME` (DEST as it was at the enable_plugin line).
    pub dir: PathBuf,
    /// From `plugin_requires NAME OTHER` lines in devstack/settings.
    pub requires: Vec<String>,
}

impl ExternalPlugin {
    pub fn override_defaults(&self) -> PathBuf {
        self.dir.join("devstack/override-defaults")
    }
    pub fn settings(&self) -> PathBuf {
        self.dir.join("devstack/settings")
    }
    pub fn plugin_sh(&self) -> PathBuf {
        self.dir.join("devstack/plugin.sh")
    }
}

/// Records enable_plugin calls in order; a name given twice is an error.
#[derive(Debug, Default, Clone)]
pub struct PluginRegistry {
    plugins: Vec<ExternalPlugin>,
}

impl PluginRegistry {
    pub fn enable(
        &mut self,
        name: &str,
        url: &str,
        git_ref: &str,
        dest: &Path,
    ) -> Result<(), PluginError> {
        if !valid_name(name) {
            return Err(PluginError::BadName {
                name: name.to_owned(),
            });
        }
        if self.plugins.iter().any(|p| p.name == name) {
            return Err(PluginError::EnabledTwice {
                name: name.to_owned(),
            });
        }
        self.plugins.push(ExternalPlugin {
            name: name.to_owned(),
            url: url.to_owned(),
            git_ref: if git_ref.is_empty() {
                "master"
            } else {
                git_ref
            }
            .to_owned(),
            dir: dest.join(name),
            requires: Vec::new(),
        });
        Ok(())
    }

    pub fn plugins(&self) -> &[ExternalPlugin] {
        &self.plugins
    }
}

/// Reads `plugin_requires NAME OTHER` lines of a plugin's settings (as DevStack's
/// Zuul role does): the declarations, without running anything.
pub(crate) fn read_requires(settings: &Path, plugin: &str) -> Result<Vec<String>, PluginError> {
    let text = match fs::read_to_string(settings) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PluginError::Read {
                path: settings.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("plugin_requires") {
            continue;
        }
        let (Some(name), Some(other)) = (words.next(), words.next()) else {
            continue;
        };
        if name.trim_matches(['"', '\'']) == plugin {
            let other = other.trim_matches(['"', '\'']).to_owned();
            if !out.contains(&other) {
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Orders plugins so each runs after those it requires; otherwise registration order.
pub(crate) fn order(plugins: &[ExternalPlugin]) -> Result<Vec<ExternalPlugin>, PluginError> {
    let index: BTreeMap<&str, usize> = plugins
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    for p in plugins {
        for r in &p.requires {
            if !index.contains_key(r.as_str()) {
                return Err(PluginError::MissingRequirement {
                    plugin: p.name.clone(),
                    missing: r.clone(),
                });
            }
        }
    }
    let mut marks = vec![Mark::New; plugins.len()];
    let mut out = Vec::with_capacity(plugins.len());
    for i in 0..plugins.len() {
        visit(i, plugins, &index, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

/// Where a plugin stands in the depth-first ordering.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    New,
    Active,
    Done,
}

/// Depth-first in registration order: stable, and a cycle is found with its path.
fn visit(
    i: usize,
    plugins: &[ExternalPlugin],
    index: &BTreeMap<&str, usize>,
    marks: &mut [Mark],
    path: &mut Vec<String>,
    out: &mut Vec<ExternalPlugin>,
) -> Result<(), PluginError> {
    match marks[i] {
        Mark::Done => return Ok(()),
        Mark::Active => {
            let start = path.iter().position(|n| *n == plugins[i].name).unwrap_or(0);
            let mut cycle = path[start..].to_vec();
            cycle.push(plugins[i].name.clone());
            return Err(PluginError::Cycle { cycle });
        }
        Mark::New => {}
    }
    marks[i] = Mark::Active;
    path.push(plugins[i].name.clone());
    for r in &plugins[i].requires {
        visit(index[r.as_str()], plugins, index, marks, path, out)?;
    }
    path.pop();
    marks[i] = Mark::Done;
    out.push(plugins[i].clone());
    Ok(())
}

/// The file, inside a clone's `.git`, that says which ref the clone was made for.
const REF_MARKER: &str = "devstack-rs-ref";

/// Is `dir` a complete clone made for `git_ref`? A user's own checkout (no marker)
/// with a devstack/ directory counts as complete, as in DevStack.
fn clone_state(dir: &Path, git_ref: &str) -> CloneState {
    let git = dir.join(".git");
    if !dir.exists() {
        return CloneState::Missing;
    }
    if !dir.join("devstack").is_dir() {
        // Only what a failed fetch leaves (nothing, or a bare `.git`) is ours to
        // replace: anything else is someone's directory.
        let ours = fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .filter_map(Result::ok)
                .all(|e| e.file_name() == ".git")
        });
        return if ours {
            CloneState::Incomplete
        } else {
            CloneState::Foreign
        };
    }
    match fs::read_to_string(git.join(REF_MARKER)) {
        Ok(r) if r.trim() != git_ref => CloneState::OtherRef(r.trim().to_owned()),
        _ => CloneState::Ready,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum CloneState {
    Missing,
    /// A partial clone left by a failed fetch, or no devstack/ in it.
    Incomplete,
    /// Made for another ref than the one enabled now.
    OtherRef(String),
    /// A directory with other things in it and no devstack/: not touched.
    Foreign,
    Ready,
}

/// Clones a plugin at its ref into its directory, unless a complete clone for that
/// ref is there already (re-fetched with RECLONE). The clone is made in a
/// temporary directory beside it and renamed on success, so a failed fetch leaves
/// nothing that looks like a plugin. Returns true when it fetched.
pub(crate) fn fetch(
    plugin: &ExternalPlugin,
    reclone: bool,
    error_on_clone: bool,
    base: &Cmd,
) -> Result<bool, PluginError> {
    let clone_err = |source| PluginError::Clone {
        name: plugin.name.clone(),
        url: plugin.url.clone(),
        git_ref: plugin.git_ref.clone(),
        source: Box::new(source),
    };
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PluginError::Read { path, source }
    };
    let git = |args: &[&str]| base.clone().args(args.iter().copied());
    let state = clone_state(&plugin.dir, &plugin.git_ref);
    if state == CloneState::Ready && !reclone {
        return Ok(false);
    }
    if state == CloneState::Foreign {
        return Err(PluginError::Occupied {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
        });
    }
    if error_on_clone && state == CloneState::Missing {
        return Err(PluginError::CloneForbidden {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
        });
    }
    let parent = plugin.dir.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = parent.join(format!(".{}.fetch-{}", plugin.name, std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    let tmp_s = tmp.to_string_lossy().into_owned();
    let fetched = (|| {
        git(&["clone", "--quiet", "--no-checkout", &plugin.url, &tmp_s]).run()?;
        // As DevStack's git_clone: clone, then check the ref out (a branch, a tag,
        // a full or an abbreviated commit); a ref no branch reaches (a review's
        // refs/changes/...) is fetched by name.
        let checkout = git(&["-C", &tmp_s, "checkout", "--quiet", &plugin.git_ref])
            .label("git checkout")
            .run();
        if checkout.is_err() {
            git(&["-C", &tmp_s, "fetch", "--quiet", "origin", &plugin.git_ref]).run()?;
            git(&["-C", &tmp_s, "checkout", "--quiet", "FETCH_HEAD"]).run()?;
        }
        Ok(())
    })();
    if let Err(e) = fetched {
        let _ = fs::remove_dir_all(&tmp);
        return Err(clone_err(e));
    }
    if !tmp.join("devstack").is_dir() {
        let _ = fs::remove_dir_all(&tmp);
        return Err(PluginError::NotAPlugin {
            name: plugin.name.clone(),
            url: plugin.url.clone(),
            git_ref: plugin.git_ref.clone(),
        });
    }
    let marker = tmp.join(".git").join(REF_MARKER);
    fs::write(&marker, format!("{}\n", plugin.git_ref)).map_err(io_err(&marker))?;
    if plugin.dir.exists() {
        fs::remove_dir_all(&plugin.dir).map_err(io_err(&plugin.dir))?;
    }
    fs::rename(&tmp, &plugin.dir).map_err(io_err(&plugin.dir))?;
    Ok(true)
}

/// `$NOVA_PLUGINS/hypervisor-$VIRT_DRIVER`, when it exists.
pub(crate) fn hypervisor_file(nova_plugins: &Path, virt_driver: &str) -> PathBuf {
    nova_plugins.join(format!("hypervisor-{virt_driver}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str, requires: &[&str]) -> ExternalPlugin {
        ExternalPlugin {
            name: name.into(),
            url: String::new(),
            git_ref: "master".into(),
            dir: PathBuf::new(),
            requires: requires.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn names(list: &[ExternalPlugin]) -> Vec<&str> {
        list.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn extras_names() {
        assert_eq!(parse_extras_name("50-foo.sh"), Some(50));
        assert_eq!(parse_extras_name("05-a-b.sh"), Some(5));
        for bad in ["5-foo.sh", "50foo.sh", "50-.sh", "ab-foo.sh", "500-foo.sh"] {
            assert_eq!(parse_extras_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn discover_sorts_warns_and_skips() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "50-b.sh",
            "20-z.sh",
            "50-a.sh",
            "95-late.sh",
            "bad.sh",
            "README.md",
        ] {
            fs_err::write(dir.path().join(f), "").unwrap();
        }
        let (scripts, warnings) = discover_extras(dir.path()).unwrap();
        let names: Vec<_> = scripts.iter().map(|s| s.file_name.as_str()).collect();
        assert_eq!(names, ["20-z.sh", "50-a.sh", "50-b.sh", "95-late.sh"]);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("bad.sh") && w.contains("skipped"))
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("95-late.sh") && w.contains("reserved"))
        );
    }

    #[test]
    fn requires_reorder_and_errors() {
        let ordered = order(&[plugin("a", &["c"]), plugin("b", &[]), plugin("c", &[])]).unwrap();
        assert_eq!(names(&ordered), ["c", "a", "b"]);
        assert!(matches!(
            order(&[plugin("a", &["x"])]),
            Err(PluginError::MissingRequirement { .. })
        ));
        let err = order(&[plugin("a", &["b"]), plugin("b", &["a"])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "plugins require each other in a cycle: a -> b -> a"
        );
    }

    #[test]
    fn reads_requires_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("settings");
        fs_err::write(&f, "define_plugin a\nplugin_requires a b\nplugin_requires other c\n  plugin_requires a \"d\"\n").unwrap();
        assert_eq!(read_requires(&f, "a").unwrap(), ["b", "d"]);
    }

    #[test]
    fn enabling_twice_is_an_error() {
        let mut reg = PluginRegistry::default();
        reg.enable("a", "u", "", Path::new("/opt/stack")).unwrap();
        assert_eq!(reg.plugins()[0].git_ref, "master");
        assert!(matches!(
            reg.enable("a", "u", "", Path::new("/x")),
            Err(PluginError::EnabledTwice { .. })
        ));
    }
}
