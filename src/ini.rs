//! A format-preserving ini editor with DevStack's `inc/ini-config` semantics.
//!
//! Service configuration files are edited in place by DevStack, by plugins and by
//! people; every edit here changes only the lines it must and keeps everything else
//! (comments, blank lines, ordering, repeated keys, spacing around `=`) byte for byte.
//!
//! Line grammar, as DevStack's sed expressions read it:
//! - a section header is `[NAME]` starting in column 0 (anything after `]` is ignored);
//! - a comment starts with `#` or `;`;
//! - an option is `KEY=VALUE` or `KEY = VALUE` with KEY starting in column 0; a line
//!   starting with whitespace is a continuation line and never an option;
//! - everything else is kept verbatim and means nothing to us.
//!
//! A section name may appear several times; like DevStack's sed ranges, reads and
//! replacements look at every body of that name, insertions go under the first one.
//!
//! Values are written exactly as given. DevStack passes values through an unquoted
//! `echo`, which collapses whitespace runs and may expand globs; we deliberately do
//! not copy that, because it silently corrupts values such as format strings.

use std::io::Write as _;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use fs_err as fs;

/// Failures reading or writing an ini file, or a malformed `ini` operation.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IniError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown ini operation '{op}' (expected one of {})", op_names())]
    UnknownOp { op: String },
    #[error("usage: {usage}")]
    Usage { usage: &'static str },
}

/// An ini file as a list of lines kept verbatim; edits replace, insert or remove
/// whole lines and never reformat the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IniDoc {
    /// The lines without their `\n` (a `\r` of a CRLF file stays part of the line).
    lines: Vec<String>,
    /// Whether the text ended with `\n`; kept so an untouched file renders identically.
    trailing_newline: bool,
}

/// What a line means to the editor.
enum LineKind<'a> {
    Header(&'a str),
    Option { key: &'a str, value: &'a str },
    Other,
}

fn classify(line: &str) -> LineKind<'_> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(rest) = line.strip_prefix('[') {
        return match rest.find(']') {
            Some(end) => LineKind::Header(rest[..end].trim()),
            None => LineKind::Other,
        };
    }
    if line.starts_with(['#', ';']) || line.starts_with(char::is_whitespace) {
        return LineKind::Other;
    }
    match line.split_once('=') {
        Some((key, value)) if !key.trim_end().is_empty() => LineKind::Option {
            key: key.trim_end(),
            value: value.trim(),
        },
        _ => LineKind::Other,
    }
}

/// `line` (an option line) with its value replaced, keeping its `KEY<ws>=<ws>` prefix
/// and its CR if the file uses CRLF.
fn with_value(line: &str, value: &str) -> String {
    let (base, cr) = match line.strip_suffix('\r') {
        Some(base) => (base, "\r"),
        None => (line, ""),
    };
    let eq = base.find('=').map_or(base.len(), |i| i + 1);
    let after = &base[eq..];
    let spaces = after.len() - after.trim_start_matches([' ', '\t']).len();
    format!("{}{value}{cr}", &base[..eq + spaces])
}

impl IniDoc {
    pub(crate) fn parse(text: &str) -> Self {
        if text.is_empty() {
            return Self::default();
        }
        let trailing_newline = text.ends_with('\n');
        let body = text.strip_suffix('\n').unwrap_or(text);
        Self {
            lines: body.split('\n').map(str::to_owned).collect(),
            trailing_newline,
        }
    }

    /// Reads a file; a missing file is an empty document (iniset creates files).
    pub(crate) fn load(path: &Path) -> Result<Self, IniError> {
        match fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(IniError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Writes the document: parent directories are created, the new content goes to a
    /// temporary file that is renamed over the target (a reader, e.g. a service
    /// restarting, never sees half a file), and an existing file keeps its mode (and
    /// its owner when we may set it). A symlink is followed, not replaced.
    pub(crate) fn save(&self, path: &Path) -> Result<(), IniError> {
        let target = resolve_symlink(path);
        let write_error = |source| IniError::Write {
            path: target.clone(),
            source,
        };
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(write_error)?;
        }
        let existing = fs_err::metadata(&target).ok();
        let text = self.render();
        let tmp = temp_path(&target);
        match write_temp(&tmp, &text, existing.as_ref()) {
            Ok(()) => fs::rename(&tmp, &target).map_err(|e| {
                let _ = fs_err::remove_file(&tmp);
                write_error(e)
            }),
            // A writable file in a directory we may not create files in (e.g. a
            // config file handed to the stack user in a root-owned /etc directory):
            // an in-place write is the only way, as DevStack's `sed -i` would fail too
            // but plain writes succeed.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && existing.is_some() => {
                fs::write(&target, text).map_err(write_error)
            }
            Err(e) => {
                let _ = fs_err::remove_file(&tmp);
                Err(write_error(e))
            }
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        if self.trailing_newline && !self.lines.is_empty() {
            text.push('\n');
        }
        text
    }

    /// `iniget`: the first value of KEY in SECTION.
    pub(crate) fn get(&self, section: &str, key: &str) -> Option<String> {
        self.option_lines(section, key)
            .first()
            .map(|&i| self.value_at(i).to_owned())
    }

    /// `iniget_multiline`: every value of KEY in SECTION, in file order.
    pub(crate) fn get_all(&self, section: &str, key: &str) -> Vec<String> {
        self.option_lines(section, key)
            .into_iter()
            .map(|i| self.value_at(i).to_owned())
            .collect()
    }

    /// `ini_has_option`.
    pub(crate) fn has(&self, section: &str, key: &str) -> bool {
        !self.option_lines(section, key).is_empty()
    }

    /// `iniset`: KEY gets exactly one value. An existing line keeps its position and
    /// prefix, further occurrences are removed; a new key goes directly under the
    /// section header (created at the end of the file when missing). Empty SECTION or
    /// KEY is a no-op, as in DevStack.
    pub(crate) fn set(&mut self, section: &str, key: &str, value: &str) {
        if section.is_empty() || key.is_empty() {
            return;
        }
        let found = self.option_lines(section, key);
        if let Some((&first, rest)) = found.split_first() {
            self.lines[first] = with_value(&self.lines[first], value);
            self.remove_lines(rest);
        } else {
            let header = self.ensure_section(section);
            let line = self.new_option_line(key, value);
            self.lines.insert(header + 1, line);
        }
    }

    /// Sets many options of one section in one pass (a local.conf fragment): the
    /// same result as `set` (one value) or `set_multi` (several) for each option in
    /// turn, with new keys directly under the header in the given order, but in time
    /// linear in the file and the options, not their product.
    pub(crate) fn set_many(&mut self, section: &str, options: &[(String, Vec<String>)]) {
        use std::collections::{HashMap, HashSet};
        if section.is_empty() {
            return;
        }
        let mut existing: HashMap<&str, Vec<usize>> = HashMap::new();
        for i in self.bodies(section).into_iter().flatten() {
            if let LineKind::Option { key, .. } = classify(&self.lines[i]) {
                existing.entry(key).or_default().push(i);
            }
        }
        let mut replace: HashMap<usize, Vec<String>> = HashMap::new();
        let mut remove: HashSet<usize> = HashSet::new();
        let mut new_keys: Vec<(&str, &[String])> = Vec::new();
        for (key, values) in options {
            if key.is_empty() {
                continue;
            }
            match existing.get(key.as_str()) {
                Some(found) => {
                    let (&first, rest) = found.split_first().expect("non-empty");
                    remove.extend(rest.iter().copied());
                    if values.is_empty() {
                        remove.insert(first);
                    } else {
                        let model = &self.lines[first];
                        replace
                            .insert(first, values.iter().map(|v| with_value(model, v)).collect());
                    }
                }
                None if !values.is_empty() => new_keys.push((key, values)),
                None => {}
            }
        }
        let added: Vec<String> = new_keys
            .iter()
            .flat_map(|(key, values)| values.iter().map(|v| self.new_option_line(key, v)))
            .collect();
        let header = if added.is_empty() {
            None
        } else {
            Some(self.ensure_section(section))
        };
        let old = std::mem::take(&mut self.lines);
        let mut lines = Vec::with_capacity(old.len() + added.len());
        let mut added = Some(added);
        for (i, line) in old.into_iter().enumerate() {
            if let Some(new) = replace.remove(&i) {
                lines.extend(new);
            } else if !remove.contains(&i) {
                lines.push(line);
            }
            if header == Some(i) {
                lines.extend(added.take().unwrap_or_default());
            }
        }
        self.lines = lines;
    }

    /// `iniset_multiline`: KEY gets exactly these values, one line each, in order. They
    /// replace the existing lines at the first one's position (keeping its prefix), or
    /// go directly under the header for a new key. No values deletes the key.
    pub(crate) fn set_multi(&mut self, section: &str, key: &str, values: &[String]) {
        if section.is_empty() || key.is_empty() {
            return;
        }
        if values.is_empty() {
            self.delete(section, key);
            return;
        }
        let found = self.option_lines(section, key);
        let (at, new_lines): (usize, Vec<String>) = if let Some(&first) = found.first() {
            let model = self.lines[first].clone();
            (
                first,
                values.iter().map(|v| with_value(&model, v)).collect(),
            )
        } else {
            let header = self.ensure_section(section);
            (
                header + 1,
                values
                    .iter()
                    .map(|v| self.new_option_line(key, v))
                    .collect(),
            )
        };
        // Every removed line is at or after `at`, so `at` stays valid.
        self.remove_lines(&found);
        self.lines.splice(at..at, new_lines);
    }

    /// `iniadd`: one more value for a multi-line option, after the existing ones (or
    /// directly under the header for a new key).
    pub(crate) fn add(&mut self, section: &str, key: &str, value: &str) {
        if section.is_empty() || key.is_empty() {
            return;
        }
        let found = self.option_lines(section, key);
        if let Some(&last) = found.last() {
            let line = with_value(&self.lines[last], value);
            self.lines.insert(last + 1, line);
        } else {
            let header = self.ensure_section(section);
            let line = self.new_option_line(key, value);
            self.lines.insert(header + 1, line);
        }
    }

    /// `inidelete`: every line of KEY in SECTION goes.
    pub(crate) fn delete(&mut self, section: &str, key: &str) {
        let found = self.option_lines(section, key);
        self.remove_lines(&found);
    }

    /// `inicomment`: `key = v` becomes `#key = v` (every occurrence).
    pub(crate) fn comment(&mut self, section: &str, key: &str) {
        for i in self.option_lines(section, key) {
            self.lines[i].insert(0, '#');
        }
    }

    /// `iniuncomment`: `#key = v` (also `# key = v`, `;key = v`) becomes `key = v`.
    pub(crate) fn uncomment(&mut self, section: &str, key: &str) {
        for range in self.bodies(section) {
            for line in &mut self.lines[range] {
                let Some(stripped) = line
                    .strip_prefix(['#', ';'])
                    .map(|rest| rest.trim_start_matches(['#', ';']).trim_start())
                else {
                    continue;
                };
                if matches!(classify(stripped), LineKind::Option { key: k, .. } if k == key) {
                    *line = stripped.to_owned();
                }
            }
        }
    }

    /// `iniget_sections`: section names in order of first appearance. Unlike DevStack a
    /// name repeated in the file is listed once, so callers iterating over sections do
    /// not visit one twice.
    pub(crate) fn sections(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for line in &self.lines {
            if let LineKind::Header(name) = classify(line)
                && !names.iter().any(|n| n == name)
            {
                names.push(name.to_owned());
            }
        }
        names
    }

    /// The line ranges of every body of SECTION (the lines after each of its headers
    /// up to the next header).
    fn bodies(&self, section: &str) -> Vec<Range<usize>> {
        let mut ranges = Vec::new();
        let mut open: Option<usize> = None;
        for (i, line) in self.lines.iter().enumerate() {
            if let LineKind::Header(name) = classify(line) {
                if let Some(start) = open.take() {
                    ranges.push(start..i);
                }
                if name == section {
                    open = Some(i + 1);
                }
            }
        }
        if let Some(start) = open {
            ranges.push(start..self.lines.len());
        }
        ranges
    }

    /// Indices of KEY's option lines in every body of SECTION, ascending.
    fn option_lines(&self, section: &str, key: &str) -> Vec<usize> {
        self.bodies(section)
            .into_iter()
            .flatten()
            .filter(|&i| matches!(classify(&self.lines[i]), LineKind::Option { key: k, .. } if k == key))
            .collect()
    }

    fn value_at(&self, index: usize) -> &str {
        match classify(&self.lines[index]) {
            LineKind::Option { value, .. } => value,
            _ => "",
        }
    }

    /// Removes lines by ascending index.
    fn remove_lines(&mut self, ascending: &[usize]) {
        for &i in ascending.iter().rev() {
            self.lines.remove(i);
        }
    }

    /// The index of SECTION's first header, appending `[SECTION]` (after a blank
    /// separator line, unless the file is empty or already ends with one) if missing.
    fn ensure_section(&mut self, section: &str) -> usize {
        let existing = self
            .lines
            .iter()
            .position(|line| matches!(classify(line), LineKind::Header(name) if name == section));
        if let Some(i) = existing {
            return i;
        }
        let ends_blank = self.lines.last().is_none_or(|l| l.trim().is_empty());
        if !ends_blank {
            self.lines.push(self.eol().to_owned());
        }
        self.lines.push(format!("[{section}]{}", self.eol()));
        self.trailing_newline = true;
        self.lines.len() - 1
    }

    /// DevStack's layout for a line it adds: `KEY = VALUE`.
    fn new_option_line(&self, key: &str, value: &str) -> String {
        format!("{key} = {value}{}", self.eol())
    }

    /// `"\r"` when the file uses CRLF line ends, so added lines match the others.
    fn eol(&self) -> &'static str {
        if self.lines.first().is_some_and(|l| l.ends_with('\r')) {
            "\r"
        } else {
            ""
        }
    }
}

fn resolve_symlink(path: &Path) -> PathBuf {
    let is_link = fs_err::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if is_link && let Ok(real) = fs_err::canonicalize(path) {
        return real;
    }
    path.to_path_buf()
}

/// A temporary file beside the target (same filesystem, so the rename is atomic).
fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(|| "ini".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.devstack-tmp.{}", std::process::id()))
}

fn write_temp(tmp: &Path, text: &str, existing: Option<&std::fs::Metadata>) -> std::io::Result<()> {
    // A temp file left by a killed run with our pid would make create_new fail.
    let _ = fs_err::remove_file(tmp);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    if let Some(meta) = existing {
        fs::set_permissions(tmp, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        if meta.uid() != file.metadata()?.uid() || meta.gid() != file.metadata()?.gid() {
            // Only root may give the file away; anyone else keeps the default owner,
            // which is who could have written the file in place anyway.
            let _ = std::os::unix::fs::chown(tmp, Some(meta.uid()), Some(meta.gid()));
        }
    }
    Ok(())
}

/// What an `ini` operation prints and returns, for the shell function that called it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpOutput {
    pub stdout: String,
    pub status: i32,
}

/// The operations: name, argument count (after the op and `-sudo`) and usage.
struct OpSpec {
    name: &'static str,
    min_args: usize,
    max_args: Option<usize>,
    usage: &'static str,
}

const OPS: &[OpSpec] = &[
    // The value is optional because DevStack's `iniset F S K $UNSET` (an unquoted
    // empty variable) sets an empty value rather than failing.
    OpSpec {
        name: "set",
        min_args: 3,
        max_args: Some(4),
        usage: "ini set [-sudo] FILE SECTION KEY [VALUE]",
    },
    OpSpec {
        name: "get",
        min_args: 3,
        max_args: Some(3),
        usage: "ini get FILE SECTION KEY",
    },
    OpSpec {
        name: "get-multi",
        min_args: 3,
        max_args: Some(3),
        usage: "ini get-multi FILE SECTION KEY",
    },
    OpSpec {
        name: "has",
        min_args: 3,
        max_args: Some(3),
        usage: "ini has FILE SECTION KEY",
    },
    OpSpec {
        name: "add",
        min_args: 3,
        max_args: None,
        usage: "ini add [-sudo] FILE SECTION KEY VALUE...",
    },
    OpSpec {
        name: "set-multi",
        min_args: 3,
        max_args: None,
        usage: "ini set-multi [-sudo] FILE SECTION KEY VALUE...",
    },
    OpSpec {
        name: "delete",
        min_args: 3,
        max_args: Some(3),
        usage: "ini delete [-sudo] FILE SECTION KEY",
    },
    OpSpec {
        name: "comment",
        min_args: 3,
        max_args: Some(3),
        usage: "ini comment [-sudo] FILE SECTION KEY",
    },
    OpSpec {
        name: "uncomment",
        min_args: 3,
        max_args: Some(3),
        usage: "ini uncomment [-sudo] FILE SECTION KEY",
    },
    OpSpec {
        name: "sections",
        min_args: 1,
        max_args: Some(1),
        usage: "ini sections FILE",
    },
];

fn one_per_line(items: &[String]) -> String {
    let mut text = String::new();
    for item in items {
        text.push_str(item);
        text.push('\n');
    }
    text
}

fn op_names() -> String {
    OPS.iter().map(|op| op.name).collect::<Vec<_>>().join(", ")
}

/// One ini operation as the shell library names it, applied to a file: this is what
/// `iniset FILE SECTION KEY VALUE` etc. call (from Rust over the plugin-shell channel,
/// or as the hidden CLI `devstack ini set FILE SECTION KEY VALUE`).
///
/// A file is written only when an edit changed it, so reads and no-op edits never
/// create or touch files.
pub(crate) fn apply_op(args: &[String]) -> Result<OpOutput, IniError> {
    let Some((op, rest)) = args.split_first() else {
        return Err(IniError::Usage {
            usage: "ini OP [-sudo] FILE [SECTION KEY [VALUE...]]",
        });
    };
    let spec = OPS
        .iter()
        .find(|spec| spec.name == op)
        .ok_or_else(|| IniError::UnknownOp { op: op.clone() })?;
    // DevStack's `-sudo` ran sed as root; we already write as whoever runs us.
    let rest = match rest.split_first() {
        Some((flag, after)) if flag == "-sudo" => after,
        _ => rest,
    };
    if rest.len() < spec.min_args || spec.max_args.is_some_and(|max| rest.len() > max) {
        return Err(IniError::Usage { usage: spec.usage });
    }
    let path = Path::new(&rest[0]);
    let mut doc = IniDoc::load(path)?;
    if spec.name == "sections" {
        return Ok(OpOutput {
            stdout: one_per_line(&doc.sections()),
            status: 0,
        });
    }
    // A header written `[ ccc ]` is found by the name ` ccc ` (DevStack's sed matches
    // the spaces literally; the editor keeps names trimmed).
    let (section, key, values) = (rest[1].trim(), &rest[2], &rest[3..]);
    let before = doc.render();
    let mut output = OpOutput::default();
    match spec.name {
        "get" => {
            if let Some(value) = doc.get(section, key) {
                output.stdout = format!("{value}\n");
            }
        }
        "get-multi" => {
            output.stdout = one_per_line(&doc.get_all(section, key));
        }
        "has" => output.status = i32::from(!doc.has(section, key)),
        "set" => doc.set(section, key, values.first().map_or("", String::as_str)),
        "set-multi" => doc.set_multi(section, key, values),
        "add" => {
            for value in values {
                doc.add(section, key, value);
            }
        }
        "delete" => doc.delete(section, key),
        "comment" => doc.comment(section, key),
        "uncomment" => doc.uncomment(section, key),
        other => unreachable!("ini operation '{other}' is in OPS but not handled"),
    }
    if doc.render() != before {
        doc.save(path)?;
    }
    Ok(output)
}

#[cfg(test)]
mod tests {

    #[test]
    fn set_many_is_set_and_set_multi_in_one_pass() {
        let text = "[DEFAULT]\nold = 1\ndup = a\nkeep = k\n\n[other]\nx = y\n[DEFAULT]\ndup = b\n";
        let options: Vec<(String, Vec<String>)> = vec![
            ("new1".into(), vec!["n1".into()]),
            ("old".into(), vec!["2".into()]),
            ("dup".into(), vec!["c".into()]),
            ("multi".into(), vec!["m1".into(), "m2".into()]),
            ("new2".into(), vec!["n2".into()]),
        ];
        let mut one_by_one = IniDoc::parse(text);
        for (key, values) in options.iter().rev() {
            if let [v] = values.as_slice() {
                one_by_one.set("DEFAULT", key, v);
            } else {
                one_by_one.set_multi("DEFAULT", key, values);
            }
        }
        let mut batched = IniDoc::parse(text);
        batched.set_many("DEFAULT", &options);
        assert_eq!(batched.render(), one_by_one.render());
        let mut fresh = IniDoc::parse("");
        fresh.set_many("new", &options[..1]);
        assert_eq!(fresh.render(), "[new]\nnew1 = n1\n");
    }
    use super::*;

    const SAMPLE: &str = "\
# nova.conf, hand-edited
[DEFAULT]
debug=True
; an old style comment
transport_url = rabbit://old

[database]
connection =   mysql://x
    continuation line

[filter_scheduler]
enabled_filters = A
enabled_filters = B
# trailing comment
";

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        args(list)
    }

    #[test]
    fn render_round_trips_byte_for_byte() {
        for text in [
            SAMPLE,
            "",
            "\n",
            "no newline at end",
            "[a]\r\nk = v\r\n",
            "\n\n[x]\n\n\nk=v\n\n",
        ] {
            assert_eq!(IniDoc::parse(text).render(), text);
        }
    }

    #[test]
    fn get_reads_both_spacings_and_first_value() {
        let doc = IniDoc::parse(SAMPLE);
        assert_eq!(doc.get("DEFAULT", "debug").as_deref(), Some("True"));
        assert_eq!(
            doc.get("DEFAULT", "transport_url").as_deref(),
            Some("rabbit://old")
        );
        assert_eq!(
            doc.get("database", "connection").as_deref(),
            Some("mysql://x")
        );
        assert_eq!(
            doc.get("filter_scheduler", "enabled_filters").as_deref(),
            Some("A")
        );
        assert_eq!(doc.get("DEFAULT", "missing"), None);
        assert_eq!(doc.get("nosection", "debug"), None);
        // Comments and continuation lines are not options.
        assert_eq!(doc.get("DEFAULT", "; an old style comment"), None);
        assert!(!doc.has("database", "continuation line"));
    }

    #[test]
    fn keys_and_sections_match_exactly_not_as_regex() {
        let doc = IniDoc::parse("[a.b]\nx.y = 1\n[axb]\nxzy = 2\n");
        assert_eq!(doc.get("a.b", "x.y").as_deref(), Some("1"));
        assert_eq!(doc.get("a.b", "x.*"), None);
        assert_eq!(doc.get("a.*", "x.y"), None);
        assert_eq!(doc.get("axb", "x.y"), None);
        assert_eq!(doc.get("a", "x.y"), None);
        assert_eq!(doc.get("a.b", "x"), None);
    }

    #[test]
    fn get_all_and_has() {
        let doc = IniDoc::parse(SAMPLE);
        assert_eq!(
            doc.get_all("filter_scheduler", "enabled_filters"),
            strings(&["A", "B"])
        );
        assert!(doc.get_all("DEFAULT", "nothing").is_empty());
        assert!(doc.has("DEFAULT", "debug"));
        assert!(!doc.has("database", "debug"));
    }

    #[test]
    fn set_replaces_value_keeping_prefix_and_everything_else() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.set("DEFAULT", "debug", "False");
        doc.set("database", "connection", "sqlite://");
        let expected = SAMPLE
            .replace("debug=True", "debug=False")
            .replace("connection =   mysql://x", "connection =   sqlite://");
        assert_eq!(doc.render(), expected);
    }

    #[test]
    fn set_inserts_new_key_directly_after_header() {
        let mut doc = IniDoc::parse("[DEFAULT]\na = 1\n\n[other]\nb = 2\n");
        doc.set("DEFAULT", "new", "x");
        doc.set("DEFAULT", "newer", "y");
        assert_eq!(
            doc.render(),
            "[DEFAULT]\nnewer = y\nnew = x\na = 1\n\n[other]\nb = 2\n"
        );
    }

    #[test]
    fn set_appends_missing_section_after_blank_line() {
        let mut doc = IniDoc::parse("[a]\nk = v\n");
        doc.set("b", "x", "1");
        assert_eq!(doc.render(), "[a]\nk = v\n\n[b]\nx = 1\n");

        // No doubled blank line when the file already ends with one.
        let mut doc = IniDoc::parse("[a]\nk = v\n\n");
        doc.set("b", "x", "1");
        assert_eq!(doc.render(), "[a]\nk = v\n\n[b]\nx = 1\n");

        // A file without a final newline gets one between old and new text.
        let mut doc = IniDoc::parse("[a]\nk = v");
        doc.set("b", "x", "1");
        assert_eq!(doc.render(), "[a]\nk = v\n\n[b]\nx = 1\n");
    }

    #[test]
    fn set_on_empty_doc_has_no_leading_blank_line() {
        let mut doc = IniDoc::default();
        doc.set("DEFAULT", "debug", "True");
        assert_eq!(doc.render(), "[DEFAULT]\ndebug = True\n");
    }

    #[test]
    fn set_collapses_a_multi_line_option_to_one_value() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.set("filter_scheduler", "enabled_filters", "C");
        assert_eq!(
            doc.render(),
            SAMPLE.replace(
                "enabled_filters = A\nenabled_filters = B\n",
                "enabled_filters = C\n"
            )
        );
    }

    #[test]
    fn set_with_empty_section_or_key_is_a_no_op() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.set("", "debug", "x");
        doc.set("DEFAULT", "", "x");
        doc.set_multi("", "k", &strings(&["x"]));
        doc.add("DEFAULT", "", "x");
        assert_eq!(doc.render(), SAMPLE);
    }

    #[test]
    fn set_keeps_values_verbatim() {
        let mut doc = IniDoc::default();
        doc.set("DEFAULT", "fmt", "%(asctime)s  %(name)s   *");
        assert_eq!(
            doc.get("DEFAULT", "fmt").as_deref(),
            Some("%(asctime)s  %(name)s   *")
        );
        // An '=' in the value belongs to the value.
        doc.set("DEFAULT", "url", "a=b=c");
        assert_eq!(doc.get("DEFAULT", "url").as_deref(), Some("a=b=c"));
    }

    #[test]
    fn set_only_touches_the_named_section_and_inserts_under_the_first_header() {
        let mut doc = IniDoc::parse("k = top\n[a]\nk = 1\n[b]\nk = 2\n[a]\nother = 3\n");
        doc.set("b", "k", "x");
        assert_eq!(
            doc.render(),
            "k = top\n[a]\nk = 1\n[b]\nk = x\n[a]\nother = 3\n"
        );
        // `other` lives in the second [a] body; DevStack's sed ranges see it.
        doc.set("a", "other", "4");
        assert_eq!(
            doc.render(),
            "k = top\n[a]\nk = 1\n[b]\nk = x\n[a]\nother = 4\n"
        );
        doc.set("a", "new", "n");
        assert_eq!(
            doc.render(),
            "k = top\n[a]\nnew = n\nk = 1\n[b]\nk = x\n[a]\nother = 4\n"
        );
    }

    #[test]
    fn set_multi_replaces_in_place_or_inserts_under_header() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.set_multi(
            "filter_scheduler",
            "enabled_filters",
            &strings(&["X", "Y", "Z"]),
        );
        assert_eq!(
            doc.render(),
            SAMPLE.replace(
                "enabled_filters = A\nenabled_filters = B\n",
                "enabled_filters = X\nenabled_filters = Y\nenabled_filters = Z\n"
            )
        );
        let mut doc = IniDoc::parse("[DEFAULT]\na = 1\n");
        doc.set_multi("DEFAULT", "m", &strings(&["1", "2"]));
        doc.set_multi("new", "m", &strings(&["3", "4"]));
        assert_eq!(
            doc.render(),
            "[DEFAULT]\nm = 1\nm = 2\na = 1\n\n[new]\nm = 3\nm = 4\n"
        );
        doc.set_multi("DEFAULT", "m", &[]);
        assert!(!doc.has("DEFAULT", "m"));
    }

    #[test]
    fn add_appends_after_the_existing_values() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.add("filter_scheduler", "enabled_filters", "C");
        assert_eq!(
            doc.get_all("filter_scheduler", "enabled_filters"),
            strings(&["A", "B", "C"])
        );
        assert!(
            doc.render()
                .contains("enabled_filters = B\nenabled_filters = C\n# trailing")
        );
        let mut doc = IniDoc::parse("[a]\nx=1\n");
        doc.add("a", "y", "1");
        doc.add("a", "y", "2");
        doc.add("a", "x", "2");
        assert_eq!(doc.render(), "[a]\ny = 1\ny = 2\nx=1\nx=2\n");
    }

    #[test]
    fn delete_removes_every_occurrence_only_in_that_section() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.delete("filter_scheduler", "enabled_filters");
        doc.delete("DEFAULT", "connection");
        doc.delete("missing", "x");
        assert_eq!(
            doc.render(),
            SAMPLE.replace("enabled_filters = A\nenabled_filters = B\n", "")
        );
    }

    #[test]
    fn comment_and_uncomment_round_trip() {
        let mut doc = IniDoc::parse(SAMPLE);
        doc.comment("DEFAULT", "debug");
        assert!(doc.render().contains("\n#debug=True\n"));
        assert!(!doc.has("DEFAULT", "debug"));
        doc.uncomment("DEFAULT", "debug");
        assert_eq!(doc.render(), SAMPLE);

        let mut doc = IniDoc::parse("[a]\n# key = 1\n;key=2\n#keyboard = 3\n[b]\n#key = 4\n");
        doc.uncomment("a", "key");
        assert_eq!(
            doc.render(),
            "[a]\nkey = 1\nkey=2\n#keyboard = 3\n[b]\n#key = 4\n"
        );
    }

    #[test]
    fn sections_in_first_appearance_order_without_duplicates() {
        let doc = IniDoc::parse("k=1\n[b]\n[a]\n[b]\n[ c ]\n");
        assert_eq!(doc.sections(), strings(&["b", "a", "c"]));
        assert!(IniDoc::default().sections().is_empty());
    }

    #[test]
    fn crlf_files_keep_their_line_ends() {
        let mut doc = IniDoc::parse("[a]\r\nk = v\r\n");
        assert_eq!(doc.get("a", "k").as_deref(), Some("v"));
        doc.set("a", "k", "w");
        doc.set("a", "n", "1");
        doc.set("b", "x", "2");
        assert_eq!(
            doc.render(),
            "[a]\r\nn = 1\r\nk = w\r\n\r\n[b]\r\nx = 2\r\n"
        );
    }

    #[test]
    fn load_missing_file_is_empty_and_save_creates_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/nova/nova.conf");
        let mut doc = IniDoc::load(&path).unwrap();
        assert_eq!(doc, IniDoc::default());
        doc.set("DEFAULT", "debug", "True");
        doc.save(&path).unwrap();
        assert_eq!(
            fs_err::read_to_string(&path).unwrap(),
            "[DEFAULT]\ndebug = True\n"
        );
        assert_eq!(IniDoc::load(&path).unwrap(), doc);
    }

    #[test]
    fn save_keeps_the_existing_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.conf");
        fs_err::write(&path, "[a]\nk = v\n").unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let inode_before = fs_err::metadata(&path).unwrap().ino();
        let mut doc = IniDoc::load(&path).unwrap();
        doc.set("a", "k", "w");
        doc.save(&path).unwrap();
        let meta = fs_err::metadata(&path).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o640);
        // A new inode shows the write went through rename, not truncate-in-place.
        assert_ne!(meta.ino(), inode_before);
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "[a]\nk = w\n");
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("secret.conf")]);
    }

    #[test]
    fn save_through_a_symlink_edits_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.conf");
        let link = dir.path().join("link.conf");
        fs_err::write(&real, "[a]\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut doc = IniDoc::load(&link).unwrap();
        doc.set("a", "k", "v");
        doc.save(&link).unwrap();
        assert!(
            fs_err::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs_err::read_to_string(&real).unwrap(), "[a]\nk = v\n");
    }

    #[test]
    fn load_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = IniDoc::load(dir.path()).unwrap_err();
        assert!(matches!(&err, IniError::Read { path, .. } if path == dir.path()));
        assert!(err.to_string().starts_with("cannot read "));
    }

    #[test]
    fn apply_op_set_get_and_friends() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.conf");
        let f = file.to_str().unwrap();
        let run = |list: &[&str]| apply_op(&args(list)).unwrap();

        // A read of a missing file prints nothing and creates nothing.
        assert_eq!(run(&["get", f, "DEFAULT", "k"]), OpOutput::default());
        assert!(!file.exists());

        run(&["set", f, "DEFAULT", "k", "v 1"]);
        assert_eq!(run(&["get", f, "DEFAULT", "k"]).stdout, "v 1\n");
        assert_eq!(run(&["has", f, "DEFAULT", "k"]).status, 0);
        assert_eq!(
            run(&["has", f, "DEFAULT", "nope"]),
            OpOutput {
                stdout: String::new(),
                status: 1
            }
        );

        run(&["add", f, "DEFAULT", "m", "1", "2"]);
        run(&["add", f, "DEFAULT", "m", "3"]);
        assert_eq!(run(&["get-multi", f, "DEFAULT", "m"]).stdout, "1\n2\n3\n");
        run(&["set-multi", f, "DEFAULT", "m", "a", "b"]);
        assert_eq!(run(&["get-multi", f, "DEFAULT", "m"]).stdout, "a\nb\n");

        run(&["comment", f, "DEFAULT", "k"]);
        assert_eq!(run(&["has", f, "DEFAULT", "k"]).status, 1);
        run(&["uncomment", f, "DEFAULT", "k"]);
        assert_eq!(run(&["get", f, "DEFAULT", "k"]).stdout, "v 1\n");
        run(&["delete", f, "DEFAULT", "k"]);
        assert_eq!(run(&["get", f, "DEFAULT", "k"]).stdout, "");

        run(&["set", f, "other", "x", "y"]);
        assert_eq!(run(&["sections", f]).stdout, "DEFAULT\nother\n");
        assert_eq!(
            fs_err::read_to_string(&file).unwrap(),
            "[DEFAULT]\nm = a\nm = b\n\n[other]\nx = y\n"
        );
    }

    #[test]
    fn apply_op_accepts_and_ignores_sudo() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("unit.service");
        let f = file.to_str().unwrap();
        apply_op(&args(&[
            "set",
            "-sudo",
            f,
            "Unit",
            "Description",
            "Devstack x",
        ]))
        .unwrap();
        apply_op(&args(&["add", "-sudo", f, "Service", "Environment", "A=1"])).unwrap();
        assert_eq!(
            fs_err::read_to_string(&file).unwrap(),
            "[Unit]\nDescription = Devstack x\n\n[Service]\nEnvironment = A=1\n"
        );
        let out = apply_op(&args(&["get", "-sudo", f, "Unit", "Description"])).unwrap();
        assert_eq!(out.stdout, "Devstack x\n");
    }

    #[test]
    fn apply_op_set_without_value_sets_empty_and_empty_section_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.conf");
        let f = file.to_str().unwrap();
        apply_op(&args(&["set", f, "", "k", "v"])).unwrap();
        assert!(!file.exists());
        apply_op(&args(&["delete", f, "a", "k"])).unwrap();
        assert!(!file.exists());
        apply_op(&args(&["set", f, "a", "k"])).unwrap();
        assert_eq!(fs_err::read_to_string(&file).unwrap(), "[a]\nk = \n");
    }

    #[test]
    fn apply_op_does_not_rewrite_an_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.conf");
        fs_err::write(&file, "[a]\nk=v\n").unwrap();
        let inode = fs_err::metadata(&file).unwrap().ino();
        apply_op(&args(&["set", file.to_str().unwrap(), "a", "k", "v"])).unwrap();
        assert_eq!(fs_err::metadata(&file).unwrap().ino(), inode);
    }

    #[test]
    fn apply_op_rejects_bad_ops_and_arg_counts_with_usage() {
        let err = apply_op(&args(&["frobnicate", "f"])).unwrap_err();
        assert!(matches!(&err, IniError::UnknownOp { op } if op == "frobnicate"));
        assert!(
            err.to_string()
                .contains("expected one of set, get, get-multi")
        );

        assert!(matches!(apply_op(&[]), Err(IniError::Usage { .. })));
        let err = apply_op(&args(&["set", "f", "s"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "usage: ini set [-sudo] FILE SECTION KEY [VALUE]"
        );
        assert!(matches!(
            apply_op(&args(&["set", "f", "s", "k", "v", "extra"])),
            Err(IniError::Usage { .. })
        ));
        assert!(matches!(
            apply_op(&args(&["get", "-sudo", "f", "s"])),
            Err(IniError::Usage { .. })
        ));
        assert!(matches!(
            apply_op(&args(&["sections"])),
            Err(IniError::Usage { usage }) if usage == "ini sections FILE"
        ));
    }
}
