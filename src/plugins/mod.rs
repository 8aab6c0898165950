//! Where hooks come from: extras.d dispatch scripts, external plugins
//! (`enable_plugin NAME URL [REF]`), and hypervisor plugins.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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
    #[error(
        "plugin '{name}': {dir} is not a git checkout, so it cannot be fetched into; it is left alone (move it away to have it cloned, or set RECLONE=False and keep the enabled ref)"
    )]
    NotACheckout { name: String, dir: PathBuf },
    #[error(
        "plugin '{name}': {why} in {dir} would lose {lost}; nothing was changed (commit and push them, or move {dir} away, or {keep})"
    )]
    WouldLose {
        name: String,
        dir: PathBuf,
        why: String,
        lost: String,
        keep: String,
    },
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
    fn clone_error(&self, source: ProcessError) -> PluginError {
        PluginError::Clone {
            name: self.name.clone(),
            url: self.url.clone(),
            git_ref: self.git_ref.clone(),
            source: Box::new(source),
        }
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

/// Brings a plugin's checkout to its ref. A missing one is cloned in a temporary
/// directory beside it and renamed on success, so a failed fetch leaves nothing
/// that looks like a plugin. An existing checkout is never removed: without
/// RECLONE it is left as it is (unless the enabled ref changed since we cloned it),
/// with RECLONE it is fetched and checked out in place, and a checkout that would
/// lose uncommitted changes or local commits is an error saying which. Returns true
/// when it fetched.
pub(crate) fn fetch(
    plugin: &ExternalPlugin,
    reclone: bool,
    error_on_clone: bool,
    base: &Cmd,
) -> Result<bool, PluginError> {
    let parent = plugin.dir.parent().unwrap_or_else(|| Path::new("."));
    remove_stale_fetches(parent, &plugin.name);
    match clone_state(&plugin.dir, &plugin.git_ref) {
        CloneState::Ready if !reclone => Ok(false),
        CloneState::Foreign => Err(PluginError::Occupied {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
        }),
        CloneState::Missing if error_on_clone => Err(PluginError::CloneForbidden {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
        }),
        CloneState::Missing | CloneState::Incomplete => {
            clone_fresh(plugin, parent, base)?;
            Ok(true)
        }
        CloneState::Ready => {
            update_in_place(plugin, None, base)?;
            Ok(true)
        }
        CloneState::OtherRef(old) => {
            update_in_place(plugin, Some(&old), base)?;
            Ok(true)
        }
    }
}

/// The temporary directory a fetch by process `pid` clones into.
fn fetch_dir(parent: &Path, name: &str, pid: u32) -> PathBuf {
    parent.join(format!(".{name}.fetch-{pid}"))
}

/// Removes `.NAME.fetch-PID` directories whose process is gone (a fetch killed
/// outright leaves one). Called with DEST's lock held, so no live run of ours is
/// using one of another pid that is still running: those are left alone anyway.
pub(crate) fn remove_stale_fetches(parent: &Path, name: &str) -> Vec<PathBuf> {
    let prefix = format!(".{name}.fetch-");
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(parent) else {
        return removed;
    };
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = file_name
            .strip_prefix(&prefix)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists();
        if !alive && fs::remove_dir_all(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// Every stale fetch directory in `parent`, whatever the plugin's name (clean).
pub(crate) fn remove_all_stale_fetches(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix('.')?;
            let (name, pid) = rest.rsplit_once(".fetch-")?;
            pid.parse::<u32>().ok().map(|_| name.to_owned())
        })
        .collect();
    let mut removed = Vec::new();
    for name in names {
        for p in remove_stale_fetches(parent, &name) {
            if !removed.contains(&p) {
                removed.push(p);
            }
        }
    }
    removed
}

fn clone_fresh(plugin: &ExternalPlugin, parent: &Path, base: &Cmd) -> Result<(), PluginError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| PluginError::Read { path, source }
    };
    let git = |args: &[&str]| base.clone().args(args.iter().copied());
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let tmp = fetch_dir(parent, &plugin.name, std::process::id());
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
        return Err(plugin.clone_error(e));
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
        // Only what a failed fetch leaves (nothing, or a bare `.git`): see clone_state.
        fs::remove_dir_all(&plugin.dir).map_err(io_err(&plugin.dir))?;
    }
    fs::rename(&tmp, &plugin.dir).map_err(io_err(&plugin.dir))?;
    Ok(())
}

/// Where the checkout is to go: a branch of the remote, or a commit.
enum Target {
    Branch { name: String, commit: String },
    Commit(String),
}

/// Fetches into an existing checkout and checks the ref out there, as DevStack's
/// git_clone does with RECLONE, after making sure nothing of the user's is lost.
/// `old_ref` is the ref we cloned it for when the enabled ref changed since.
fn update_in_place(
    plugin: &ExternalPlugin,
    old_ref: Option<&str>,
    base: &Cmd,
) -> Result<(), PluginError> {
    let dir = plugin.dir.to_string_lossy().into_owned();
    let git = |args: &[&str]| base.clone().arg("-C").arg(&dir).args(args.iter().copied());
    // `git rev-parse` and friends: stdout when it answered, None when it said no.
    let ask = |args: &[&str]| -> Result<Option<String>, PluginError> {
        let out = git(args)
            .capture()
            .allow_failure()
            .run()
            .map_err(|e| plugin.clone_error(e))?;
        Ok(out
            .status
            .success()
            .then(|| out.stdout.trim_end().to_owned()))
    };
    let run = |args: &[&str]| {
        git(args)
            .run()
            .map(|_| ())
            .map_err(|e| plugin.clone_error(e))
    };

    // Only the checkout's own repository: `git -C` would otherwise find one that
    // holds DEST and change that.
    if !plugin.dir.join(".git").exists() {
        return Err(PluginError::NotACheckout {
            name: plugin.name.clone(),
            dir: plugin.dir.clone(),
        });
    }
    match ask(&["remote", "get-url", "origin"])? {
        Some(url) if url == plugin.url => {}
        Some(_) => run(&["remote", "set-url", "origin", &plugin.url])?,
        None => run(&["remote", "add", "origin", &plugin.url])?,
    }
    run(&["fetch", "--quiet", "--tags", "origin"])?;
    let git_ref = plugin.git_ref.as_str();
    let remote_branch = format!("refs/remotes/origin/{git_ref}^{{commit}}");
    let target = if let Some(commit) = ask(&["rev-parse", "--verify", "--quiet", &remote_branch])? {
        Target::Branch {
            name: git_ref.to_owned(),
            commit,
        }
    } else if let Some(commit) = ask(&[
        "rev-parse",
        "--verify",
        "--quiet",
        &format!("{git_ref}^{{commit}}"),
    ])? {
        Target::Commit(commit)
    } else {
        run(&["fetch", "--quiet", "origin", git_ref])?;
        let commit =
            ask(&["rev-parse", "--verify", "--quiet", "FETCH_HEAD^{commit}"])?.unwrap_or_default();
        Target::Commit(commit)
    };

    let head = ask(&["rev-parse", "--verify", "--quiet", "HEAD"])?.unwrap_or_default();
    let on_branch = ask(&["symbolic-ref", "--quiet", "--short", "HEAD"])?;
    let lines = |text: Option<String>| -> Vec<String> {
        text.unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let would_lose = |lost: String| PluginError::WouldLose {
        name: plugin.name.clone(),
        dir: plugin.dir.clone(),
        why: match old_ref {
            Some(old) => {
                format!("the enabled ref changed from {old} to {git_ref}, and checking it out")
            }
            None => format!("RECLONE=True, and checking out {git_ref}"),
        },
        lost,
        keep: match old_ref {
            Some(old) => format!("enable it at {old} again"),
            None => "set RECLONE=False".to_owned(),
        },
    };
    let target_commit = match &target {
        Target::Branch { commit, .. } | Target::Commit(commit) => commit.clone(),
    };
    let unchanged = match &target {
        Target::Branch { name, .. } => on_branch.as_deref() == Some(name) && head == target_commit,
        Target::Commit(commit) => on_branch.is_none() && head == *commit,
    };
    if unchanged {
        write_marker(&plugin.dir, git_ref);
        return Ok(());
    }
    let changed = lines(ask(&["status", "--porcelain", "--untracked-files=no"])?);
    if !changed.is_empty() {
        let files: Vec<&str> = changed.iter().map(|l| l.get(3..).unwrap_or(l)).collect();
        return Err(would_lose(format!(
            "uncommitted changes to {}",
            shown_list(&files)
        )));
    }
    // Commits that only the checked-out HEAD (detached) or the branch about to be
    // moved reach.
    let orphaned = |tip: &str, not: &[&str]| -> Result<Vec<String>, PluginError> {
        let mut args = vec!["log", "--format=%h %s", tip, "--not"];
        args.extend_from_slice(not);
        Ok(lines(ask(&args)?))
    };
    if on_branch.is_none() && !head.is_empty() {
        let lost = orphaned(
            &head,
            &["--branches", "--tags", "--remotes", &target_commit],
        )?;
        if !lost.is_empty() {
            return Err(would_lose(format!(
                "{} commit(s) on the detached HEAD that no branch or tag holds: {}",
                lost.len(),
                shown_list(&lost)
            )));
        }
    }
    if let Target::Branch { name, commit } = &target {
        let local = format!("refs/heads/{name}");
        if ask(&["rev-parse", "--verify", "--quiet", &local])?.is_some() {
            let lost = orphaned(&local, &[commit])?;
            if !lost.is_empty() {
                return Err(would_lose(format!(
                    "{} commit(s) on branch {name} that {} does not have: {}",
                    lost.len(),
                    plugin.url,
                    shown_list(&lost)
                )));
            }
        }
    }
    let remote_branch;
    let checkout: Vec<&str> = match &target {
        Target::Branch { name, .. } => {
            remote_branch = format!("origin/{name}");
            vec!["checkout", "--quiet", "-B", name, &remote_branch]
        }
        Target::Commit(commit) => vec!["checkout", "--quiet", "--detach", commit],
    };
    // git itself refuses to overwrite untracked files: said as what would be lost.
    if let Err(e) = git(&checkout).run() {
        let in_the_way: Vec<String> = e
            .tail()
            .iter()
            .skip_while(|l| !l.contains("would be overwritten"))
            .skip(1)
            .take_while(|l| l.starts_with(char::is_whitespace))
            .map(|l| l.trim().to_owned())
            .collect();
        if in_the_way.is_empty() {
            return Err(plugin.clone_error(e));
        }
        return Err(would_lose(format!(
            "untracked files the checkout would overwrite: {}",
            shown_list(&in_the_way)
        )));
    }
    write_marker(&plugin.dir, git_ref);
    Ok(())
}

/// Up to five items, and how many more.
fn shown_list<S: AsRef<str>>(items: &[S]) -> String {
    let mut text = items
        .iter()
        .take(5)
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > 5 {
        let _ = write!(text, " and {} more", items.len() - 5);
    }
    text
}

/// Notes the ref a checkout is at (only in a `.git` directory: a worktree's or a
/// submodule's `.git` file is left alone, and the checkout then counts as the
/// user's own).
fn write_marker(dir: &Path, git_ref: &str) {
    let git = dir.join(".git");
    if git.is_dir() {
        let _ = fs::write(git.join(REF_MARKER), format!("{git_ref}\n"));
    }
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
