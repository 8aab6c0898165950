//! local.conf: the `[[PHASE|FILE]]` meta-sections (DevStack's inc/meta-config).
//!
//! The `[[local|localrc]]` body is bash, sourced before anything else; every other
//! section is an ini fragment merged into FILE at its phase. FILE stays unexpanded
//! here (`$NOVA_CONF`): variables only have their values when the phase runs.
//!
//! DevStack silently ignores what it does not understand (a typo in a phase name, text
//! before the first header, a header without `]]`), so a mistake shows up as a setting
//! that quietly never applied. We report each of these with its line number instead.

use std::fmt;
use std::path::{Path, PathBuf};

use fs_err as fs;

use crate::ini::IniDoc;

/// When a meta-section applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// `[[local|localrc]]`: shell settings, evaluated before anything else.
    Local,
    /// After services are configured, before they start.
    PostConfig,
    /// After services start, before the `extra` plugin phase.
    Extra,
    /// After the `extra` plugin phase.
    PostExtra,
    /// After the `test-config` plugin phase (tempest and friends).
    TestConfig,
}

impl Phase {
    pub const ALL: [Self; 5] = [
        Self::Local,
        Self::PostConfig,
        Self::Extra,
        Self::PostExtra,
        Self::TestConfig,
    ];

    /// The name used in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::PostConfig => "post-config",
            Self::Extra => "extra",
            Self::PostExtra => "post-extra",
            Self::TestConfig => "test-config",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|phase| phase.as_str() == name)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[PHASE|FILE]]` block and the lines under it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetaSection {
    pub phase: Phase,
    /// As written, unexpanded (e.g. `$NOVA_CONF`).
    pub file: String,
    /// 1-based line number of the header.
    pub header_line: usize,
    /// (1-based line number, text) of every line up to the next header.
    pub body: Vec<(usize, String)>,
}

/// A parsed local.conf: its meta-sections in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalConf {
    pub path: PathBuf,
    /// Blocks with the same phase and file stay separate, in file order; applying them
    /// in order is DevStack's concatenation of such blocks.
    pub sections: Vec<MetaSection>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalConfError {
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The path as given (e.g. `local.conf`), as the user knows the file.
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "{} is {kind}, not a file: local.conf must be a regular file (or a symlink to one)",
        path.display()
    )]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LocalConf {
    pub(crate) fn parse(path: &Path, text: &str) -> Result<Self, LocalConfError> {
        let shown = path.display().to_string();
        let syntax = |line: usize, message: String| LocalConfError::Syntax {
            path: shown.clone(),
            line,
            message,
        };
        // Known up front so text before the first header gets the right advice.
        let has_header = text.lines().any(looks_like_header);
        let mut sections: Vec<MetaSection> = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if let Some((phase, file)) = parse_header(line).map_err(|m| syntax(number, m))? {
                sections.push(MetaSection {
                    phase,
                    file,
                    header_line: number,
                    body: Vec::new(),
                });
            } else if let Some(current) = sections.last_mut() {
                current.body.push((number, line.to_owned()));
            } else if !is_blank_or_comment(line) {
                let message = if has_header {
                    "text outside any [[...]] section (settings go under a header such as [[local|localrc]])"
                } else {
                    "text outside any [[...]] section: local.conf has no [[PHASE|FILE]] header; \
                     put shell settings under a [[local|localrc]] line at the top"
                };
                return Err(syntax(number, message.to_owned()));
            }
        }
        // Every config section's body is checked now, at settings time (and in
        // plan), not when its phase comes after hooks have run.
        for section in sections.iter().filter(|s| s.phase != Phase::Local) {
            parse_fragment(section, &shown)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            sections,
        })
    }

    /// Reads and parses a local.conf; `None` when there is none.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>, LocalConfError> {
        // Reading a FIFO would wait for a writer forever; a device is not a
        // configuration: refused by kind before anything reads it.
        if let Ok(meta) = fs::metadata(path) {
            use std::os::unix::fs::FileTypeExt as _;
            let ft = meta.file_type();
            let kind = if ft.is_fifo() {
                Some("a FIFO (named pipe)")
            } else if ft.is_char_device() {
                Some("a character device")
            } else if ft.is_block_device() {
                Some("a block device")
            } else if ft.is_socket() {
                Some("a socket")
            } else if ft.is_dir() {
                Some("a directory")
            } else {
                None
            };
            if let Some(kind) = kind {
                return Err(LocalConfError::NotAFile {
                    path: path.to_path_buf(),
                    kind,
                });
            }
        }
        match fs::read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Self::parse(path, &text).map(Some),
                Err(e) => {
                    let bytes = e.as_bytes();
                    let at = e.utf8_error().valid_up_to();
                    let line = String::from_utf8_lossy(&bytes[..at]).split('\n').count();
                    Err(LocalConfError::Syntax {
                        path: path.display().to_string(),
                        line,
                        message: format!(
                            "byte 0x{:02x} is not UTF-8 (local.conf must be UTF-8 text; in a value, bash's $'\\xNN' makes any byte)",
                            bytes[at]
                        ),
                    })
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LocalConfError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Why `path` gives no configuration at all, when it gives none: missing,
    /// a symlink to nothing, or empty (blank lines and comments only).
    pub(crate) fn absence(path: &Path) -> Option<String> {
        let shown = path.display();
        match fs::symlink_metadata(path) {
            Err(_) => Some(format!("no local.conf found ({shown})")),
            Ok(meta) if meta.file_type().is_symlink() && fs::metadata(path).is_err() => {
                let target = fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                Some(format!(
                    "{shown} is a symlink to {target}, which does not exist"
                ))
            }
            Ok(_) => {
                let text = fs::read_to_string(path).ok()?;
                text.lines()
                    .all(|l| {
                        let l = l.trim();
                        l.is_empty() || l.starts_with('#')
                    })
                    .then(|| format!("{shown} is empty"))
            }
        }
    }

    pub(crate) fn localrc_sections(&self) -> impl Iterator<Item = &MetaSection> {
        self.sections_for(Phase::Local)
    }

    pub(crate) fn sections_for(&self, phase: Phase) -> impl Iterator<Item = &MetaSection> {
        self.sections.iter().filter(move |s| s.phase == phase)
    }

    /// The localrc bash text with every localrc block kept at its original line numbers
    /// (all other lines blank), so a bash error at line N of this text is local.conf line N.
    pub(crate) fn localrc_script(&self) -> Option<String> {
        let blocks: Vec<&MetaSection> = self.localrc_sections().collect();
        if blocks.is_empty() {
            return None;
        }
        let last_line = blocks
            .iter()
            .filter_map(|s| s.body.last().map(|(n, _)| *n))
            .max()
            .unwrap_or(0);
        let mut lines = vec![""; last_line];
        for (number, text) in blocks.iter().flat_map(|s| &s.body) {
            lines[number - 1] = text;
        }
        Some(lines.join("\n"))
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let trimmed = line.trim_start();
    trimmed.is_empty() || trimmed.starts_with('#')
}

/// A line that claims to be a meta-section header. `[[` followed by whitespace is
/// bash's conditional (`[[ -n $X ]] && enable_service foo` is valid localrc), and
/// DevStack could never read that as a header either (its first field would be `[[`).
fn looks_like_header(line: &str) -> bool {
    line.strip_prefix("[[")
        .is_some_and(|rest| !rest.starts_with(char::is_whitespace))
}

/// `Ok(None)` for a non-header line, the phase and raw file for a valid header, and
/// the error message for a line that claims to be a header but is not a valid one.
fn parse_header(line: &str) -> Result<Option<(Phase, String)>, String> {
    if !looks_like_header(line) {
        return Ok(None);
    }
    let shown = line.trim_end();
    let malformed = |why: &str| {
        format!(
            "malformed meta-section header '{shown}': {why} (expected [[PHASE|FILE]], e.g. [[post-config|$NOVA_CONF]])"
        )
    };
    let Some(inner) = shown
        .strip_prefix("[[")
        .and_then(|rest| rest.strip_suffix("]]"))
    else {
        return Err(malformed("no closing ]]"));
    };
    let Some((phase_name, file)) = inner.split_once('|') else {
        return Err(malformed("no '|' between PHASE and FILE"));
    };
    let Some(phase) = Phase::from_name(phase_name) else {
        let expected: Vec<&str> = Phase::ALL.iter().map(|p| p.as_str()).collect();
        return Err(format!(
            "unknown phase '{phase_name}' (expected one of {})",
            expected.join(", ")
        ));
    };
    if file.is_empty() {
        return Err(malformed("empty FILE"));
    }
    if inner.contains(char::is_whitespace) || file.contains(['|', '[', ']']) {
        return Err(malformed("FILE may not contain spaces, '|', '[' or ']'"));
    }
    if phase == Phase::Local && file != "localrc" {
        return Err(format!(
            "[[local|{file}]]: the local phase only takes localrc (write [[local|localrc]])"
        ));
    }
    Ok(Some((phase, file.to_owned())))
}

/// Merge an ini fragment (a post-config/extra/... body) into an `IniDoc` with DevStack's
/// `merge_config_file` semantics: `[section]` lines set the section; comment lines (`#`,
/// `;`), blank lines and lines starting with whitespace are ignored; other lines split at
/// the first `=` (key right-trimmed, value trimmed); a key given once replaces (iniset);
/// a key given several times in the fragment becomes a multi-line option with all values
/// in fragment order; a key line before any section header, or a line without `=`, is an
/// error with its line number.
#[cfg(test)]
pub(crate) fn merge_fragment(
    doc: &mut IniDoc,
    section: &MetaSection,
    path_for_errors: &str,
) -> Result<(), LocalConfError> {
    merge_fragment_with(doc, section, path_for_errors, str::to_owned)
}

/// [`merge_fragment`] with every value passed through `expand` first. DevStack `eval`s
/// each value in the stack.sh context, so `my_ip = $HOST_IP` works there; the caller
/// supplies that expansion (the fragment itself knows no variables).
pub(crate) fn merge_fragment_with(
    doc: &mut IniDoc,
    section: &MetaSection,
    path_for_errors: &str,
    mut expand: impl FnMut(&str) -> String,
) -> Result<(), LocalConfError> {
    let fragment = parse_fragment(section, path_for_errors)?;
    for (name, options) in &fragment {
        // One pass per section: a fragment of 20,000 keys is merged in linear time
        // (new keys land directly under the header in fragment order, as DevStack's
        // reversed iniset calls leave them).
        let expanded: Vec<(String, Vec<String>)> = options
            .iter()
            .map(|(key, values)| (key.clone(), values.iter().map(|v| expand(v)).collect()))
            .collect();
        doc.set_many(name, &expanded);
    }
    Ok(())
}

/// The (section, key) pairs a fragment sets, in fragment order: what a merge changes
/// and a later re-stack puts back before merging again.
pub(crate) fn fragment_keys(
    section: &MetaSection,
    path_for_errors: &str,
) -> Result<Vec<(String, String)>, LocalConfError> {
    Ok(parse_fragment(section, path_for_errors)?
        .into_iter()
        .flat_map(|(name, options)| options.into_iter().map(move |(key, _)| (name.clone(), key)))
        .collect())
}

/// Options of one section of a fragment: key and its values, in first-appearance order.
type FragmentOptions = Vec<(String, Vec<String>)>;

/// The fragment grouped by section (first-appearance order), then by key.
fn parse_fragment(
    section: &MetaSection,
    path_for_errors: &str,
) -> Result<Vec<(String, FragmentOptions)>, LocalConfError> {
    let syntax = |line: usize, message: String| LocalConfError::Syntax {
        path: path_for_errors.to_owned(),
        line,
        message,
    };
    let mut grouped: Vec<(String, FragmentOptions)> = Vec::new();
    let mut key_index: std::collections::HashMap<(usize, String), usize> =
        std::collections::HashMap::new();
    let mut current: Option<usize> = None;
    for (number, line) in &section.body {
        let number = *number;
        // Lines starting with whitespace are skipped: DevStack has no continuation
        // lines in fragments and ignores them the same way.
        if line.trim().is_empty()
            || line.starts_with(['#', ';'])
            || line.starts_with(char::is_whitespace)
        {
            continue;
        }
        if line.starts_with('[') {
            let name = line
                .trim_end()
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .ok_or_else(|| {
                    syntax(
                        number,
                        format!(
                            "malformed section header '{}' (expected [SECTION])",
                            line.trim_end()
                        ),
                    )
                })?;
            let index = grouped
                .iter()
                .position(|(n, _)| n == name)
                .unwrap_or_else(|| {
                    grouped.push((name.to_owned(), Vec::new()));
                    grouped.len() - 1
                });
            current = Some(index);
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax(
                number,
                format!(
                    "expected KEY = VALUE or [SECTION] in [[{}|{}]], got '{}'",
                    section.phase,
                    section.file,
                    line.trim_end()
                ),
            ));
        };
        let key = key.trim_end();
        if key.is_empty() {
            return Err(syntax(
                number,
                format!("no key before '=' in '{}'", line.trim_end()),
            ));
        }
        let Some(index) = current else {
            return Err(syntax(
                number,
                format!(
                    "'{key}' is set before any [SECTION] header in [[{}|{}]]",
                    section.phase, section.file
                ),
            ));
        };
        let options = &mut grouped[index].1;
        let value = value.trim().to_owned();
        // An index per section keeps a fragment of many keys linear.
        let slot = key_index.entry((index, key.to_owned())).or_insert_with(|| {
            options.push((key.to_owned(), Vec::new()));
            options.len() - 1
        });
        options[*slot].1.push(value);
    }
    Ok(grouped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LocalConf, LocalConfError> {
        LocalConf::parse(Path::new("local.conf"), text)
    }

    /// The `path:line: message` of a syntax error.
    fn error_of(text: &str) -> (usize, String) {
        match parse(text) {
            Err(LocalConfError::Syntax {
                path,
                line,
                message,
            }) => {
                assert_eq!(path, "local.conf");
                (line, message)
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    const FULL: &str = "\
# my devstack
[[local|localrc]]
ADMIN_PASSWORD=secret
enable_service foo

[[post-config|$NOVA_CONF]]
[DEFAULT]
debug = True
[[local|localrc]]
[[ -n $X ]] && disable_service bar
[[post-config|$NOVA_CONF]]
[DEFAULT]
debug = False
[[test-config|$TEMPEST_CONFIG]]
";

    #[test]
    fn phases_round_trip_their_names() {
        for phase in Phase::ALL {
            assert_eq!(Phase::from_name(phase.as_str()), Some(phase));
            assert_eq!(phase.to_string(), phase.as_str());
        }
        assert_eq!(Phase::from_name("postconfig"), None);
    }

    #[test]
    fn parses_sections_in_order_with_line_numbers() {
        let lc = parse(FULL).unwrap();
        let summary: Vec<(Phase, &str, usize, usize)> = lc
            .sections
            .iter()
            .map(|s| (s.phase, s.file.as_str(), s.header_line, s.body.len()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (Phase::Local, "localrc", 2, 3),
                (Phase::PostConfig, "$NOVA_CONF", 6, 2),
                (Phase::Local, "localrc", 9, 1),
                (Phase::PostConfig, "$NOVA_CONF", 11, 2),
                (Phase::TestConfig, "$TEMPEST_CONFIG", 14, 0),
            ]
        );
        assert_eq!(
            lc.sections[0].body[0],
            (3, "ADMIN_PASSWORD=secret".to_owned())
        );
        assert_eq!(lc.sections_for(Phase::PostConfig).count(), 2);
        assert_eq!(lc.localrc_sections().count(), 2);
        assert_eq!(lc.sections_for(Phase::Extra).count(), 0);
    }

    #[test]
    fn localrc_script_keeps_line_numbers() {
        let lc = parse(FULL).unwrap();
        let script = lc.localrc_script().unwrap();
        let lines: Vec<&str> = script.split('\n').collect();
        assert_eq!(lines.len(), 10);
        assert_eq!(lines[2], "ADMIN_PASSWORD=secret");
        assert_eq!(lines[3], "enable_service foo");
        assert_eq!(lines[9], "[[ -n $X ]] && disable_service bar");
        for (i, line) in lines.iter().enumerate() {
            if ![2, 3, 9].contains(&i) {
                assert_eq!(*line, "", "line {} should be blank", i + 1);
            }
        }
    }

    #[test]
    fn localrc_script_absent_without_localrc_section() {
        let lc = parse("[[post-config|/etc/x.conf]]\n[a]\nb=c\n").unwrap();
        assert_eq!(lc.localrc_script(), None);
        let lc = parse("[[local|localrc]]\n").unwrap();
        assert_eq!(lc.localrc_script().as_deref(), Some(""));
    }

    #[test]
    fn empty_or_comment_only_file_has_no_sections() {
        assert!(parse("").unwrap().sections.is_empty());
        assert!(parse("# nothing\n\n   \n").unwrap().sections.is_empty());
    }

    #[test]
    fn header_allows_trailing_whitespace_and_empty_section_at_end() {
        let lc = parse("[[local|localrc]]  \nA=1\n[[post-config|$NOVA_CONF]]").unwrap();
        assert_eq!(lc.sections.len(), 2);
        assert!(lc.sections[1].body.is_empty());
    }

    #[test]
    fn unknown_phase_is_an_error_with_its_line() {
        let (line, message) =
            error_of("[[local|localrc]]\nA=1\n\n# x\n\n\n[[post-confg|$NOVA_CONF]]\n");
        assert_eq!(line, 7);
        assert_eq!(
            message,
            "unknown phase 'post-confg' (expected one of local, post-config, extra, post-extra, test-config)"
        );
        assert_eq!(
            parse("[[xyz|f]]").unwrap_err().to_string(),
            "local.conf:1: unknown phase 'xyz' (expected one of local, post-config, extra, post-extra, test-config)"
        );
    }

    #[test]
    fn local_phase_only_takes_localrc() {
        let (line, message) = error_of("[[local|localrc]]\n[[local|local.conf]]\n");
        assert_eq!(line, 2);
        assert!(message.contains("[[local|local.conf]]"), "{message}");
        assert!(message.contains("only takes localrc"), "{message}");
    }

    #[test]
    fn malformed_headers_are_errors_with_their_line() {
        for (text, line, why) in [
            (
                "[[local|localrc]]\nA=1\n[[post-config|$NOVA_CONF\n",
                3,
                "no closing ]]",
            ),
            ("[[local|localrc]]\n[[post-config]]\n", 2, "no '|'"),
            ("[[local]]\n", 1, "no '|'"),
            (
                "[[local|localrc]]\nA=1\n\n[[post-config|]]\n",
                4,
                "empty FILE",
            ),
            ("[[post-config|$NOVA_CONF]] # nova\n", 1, "no closing ]]"),
            ("[[post-config|/etc/my file]]\n", 1, "spaces"),
            ("[[\n", 1, "no closing ]]"),
        ] {
            let (got_line, message) = error_of(text);
            assert_eq!(got_line, line, "{text:?}");
            assert!(
                message.starts_with("malformed meta-section header"),
                "{message}"
            );
            assert!(message.contains(why), "{text:?}: {message}");
        }
    }

    #[test]
    fn bash_conditional_in_localrc_is_not_a_header() {
        let lc = parse("[[local|localrc]]\n[[ -f /x ]] && A=1\n[[\t-n $B ]]\n").unwrap();
        assert_eq!(lc.sections.len(), 1);
        assert_eq!(lc.sections[0].body.len(), 2);
    }

    #[test]
    fn text_before_the_first_header_is_an_error() {
        let (line, message) = error_of("# comment\n\nADMIN_PASSWORD=x\n[[local|localrc]]\nA=1\n");
        assert_eq!(line, 3);
        assert!(
            message.starts_with("text outside any [[...]] section"),
            "{message}"
        );
        assert!(message.contains("[[local|localrc]]"), "{message}");
    }

    #[test]
    fn plain_bash_without_any_header_is_rejected_with_advice() {
        let text = "# old style localrc\nADMIN_PASSWORD=secret\nenable_service foo\n";
        let err = parse(text).unwrap_err();
        let LocalConfError::Syntax { line, message, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*line, 2);
        assert!(message.contains("no [[PHASE|FILE]] header"), "{message}");
        assert!(message.contains("under a [[local|localrc]]"), "{message}");
        assert!(
            err.to_string()
                .starts_with("local.conf:2: text outside any [[...]] section")
        );
    }

    #[test]
    fn load_missing_is_none_and_load_uses_the_given_path_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.conf");
        assert!(LocalConf::load(&path).unwrap().is_none());
        fs_err::write(&path, "[[local|localrc]]\nA=1\n[[bad|x]]\n").unwrap();
        let err = LocalConf::load(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: unknown phase 'bad' (expected one of local, post-config, extra, post-extra, test-config)",
                path.display()
            )
        );
        fs_err::write(&path, "[[local|localrc]]\nA=1\n").unwrap();
        let lc = LocalConf::load(&path).unwrap().unwrap();
        assert_eq!(lc.path, path);
        assert!(matches!(
            LocalConf::load(dir.path()),
            Err(LocalConfError::NotAFile {
                kind: "a directory",
                ..
            })
        ));
    }

    fn section(header_line: usize, body: &str) -> MetaSection {
        MetaSection {
            phase: Phase::PostConfig,
            file: "$NOVA_CONF".to_owned(),
            header_line,
            body: body
                .lines()
                .enumerate()
                .map(|(i, l)| (header_line + 1 + i, l.to_owned()))
                .collect(),
        }
    }

    fn merged(existing: &str, body: &str) -> String {
        let mut doc = IniDoc::parse(existing);
        merge_fragment(&mut doc, &section(1, body), "local.conf").unwrap();
        doc.render()
    }

    fn merge_error(body: &str) -> (usize, String) {
        let mut doc = IniDoc::default();
        match merge_fragment(&mut doc, &section(10, body), "local.conf") {
            Err(LocalConfError::Syntax {
                path,
                line,
                message,
            }) => {
                assert_eq!(path, "local.conf");
                (line, message)
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn merge_single_key_replaces_existing_value() {
        assert_eq!(
            merged(
                "[DEFAULT]\ndebug=False\nx = 1\n",
                "[DEFAULT]\ndebug = True\n"
            ),
            "[DEFAULT]\ndebug=True\nx = 1\n"
        );
    }

    #[test]
    fn merge_repeated_key_becomes_multi_line_option_in_fragment_order() {
        assert_eq!(
            merged(
                "[filter_scheduler]\nenabled_filters = Old\n",
                "[filter_scheduler]\nenabled_filters = A\nenabled_filters = B\n"
            ),
            "[filter_scheduler]\nenabled_filters = A\nenabled_filters = B\n"
        );
        // Repeated across two bodies of the same section in one fragment, too.
        assert_eq!(
            merged("", "[a]\nk = 1\n[b]\nx = y\n[a]\nk = 2\n"),
            "[a]\nk = 1\nk = 2\n\n[b]\nx = y\n"
        );
    }

    #[test]
    fn merge_creates_sections_and_keeps_new_keys_in_fragment_order() {
        assert_eq!(
            merged(
                "[DEFAULT]\nold = 1\n",
                "[DEFAULT]\na = 1\nb = 2\n[new]\nc = 3\nd = 4\n"
            ),
            "[DEFAULT]\na = 1\nb = 2\nold = 1\n\n[new]\nc = 3\nd = 4\n"
        );
    }

    #[test]
    fn merge_ignores_comments_blank_and_indented_lines_and_trims() {
        assert_eq!(
            merged(
                "",
                "# comment\n\n[DEFAULT]\n  # indented comment\n    indented = ignored\n;semi\nkey   =   spaced value  \nurl=a=b\n"
            ),
            "[DEFAULT]\nkey = spaced value\nurl = a=b\n"
        );
    }

    #[test]
    fn merge_preserves_the_format_of_an_existing_file() {
        let existing = "\
# nova.conf
[DEFAULT]
# the debug flag
debug=False
transport_url =  rabbit://x

[database]
connection = mysql://
";
        let result = merged(
            existing,
            "[DEFAULT]\ndebug = True\n[database]\nconnection = sqlite://\n",
        );
        assert_eq!(
            result,
            existing
                .replace("debug=False", "debug=True")
                .replace("connection = mysql://", "connection = sqlite://")
        );
        // An empty fragment changes nothing.
        assert_eq!(merged(existing, ""), existing);
    }

    #[test]
    fn merge_with_expansion_expands_values() {
        let mut doc = IniDoc::default();
        merge_fragment_with(
            &mut doc,
            &section(1, "[DEFAULT]\nmy_ip = $HOST_IP\n"),
            "local.conf",
            |v| v.replace("$HOST_IP", "10.0.0.1"),
        )
        .unwrap();
        assert_eq!(doc.get("DEFAULT", "my_ip").as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn merge_errors_carry_the_local_conf_line() {
        let (line, message) = merge_error("# c\ndebug = True\n");
        assert_eq!(line, 12);
        assert!(
            message.contains("'debug' is set before any [SECTION] header"),
            "{message}"
        );

        let (line, message) = merge_error("[DEFAULT]\n\ndebug True\n");
        assert_eq!(line, 13);
        assert!(
            message.starts_with("expected KEY = VALUE or [SECTION]"),
            "{message}"
        );
        assert!(message.contains("'debug True'"), "{message}");

        let (line, message) = merge_error("[DEFAULT\n");
        assert_eq!(line, 11);
        assert!(
            message.starts_with("malformed section header '[DEFAULT'"),
            "{message}"
        );

        let (line, _) = merge_error("[DEFAULT]\n= value\n");
        assert_eq!(line, 12);
    }

    #[test]
    fn merge_error_display_names_path_and_line() {
        let mut doc = IniDoc::default();
        let err = merge_fragment(&mut doc, &section(6, "oops\n"), "local.conf").unwrap_err();
        assert!(err.to_string().starts_with("local.conf:7: "), "{err}");
    }
}
