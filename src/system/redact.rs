//! Secrets never reach a log or the terminal: every line passes through a redactor.

use std::borrow::Cow;
use std::sync::Arc;

/// Replaces every known secret in a line by `***`. Cheap to clone (shared list).
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<Vec<String>>,
}

/// Secrets shorter than this are not redacted: replacing every "a" would make logs
/// unreadable and protect nothing.
const MIN_SECRET_LEN: usize = 4;

impl Redactor {
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = secrets
            .into_iter()
            .map(Into::into)
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        // Longest first, so a secret that contains another is replaced whole.
        list.sort_by_key(|s| std::cmp::Reverse(s.len()));
        list.dedup();
        Self {
            secrets: Arc::new(list),
        }
    }

    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(line);
        for secret in self.secrets.iter() {
            if !out.contains(secret.as_str()) {
                continue;
            }
            out = if is_word(secret) {
                match redact_values(&out, secret) {
                    Some(text) => Cow::Owned(text),
                    None => out,
                }
            } else {
                Cow::Owned(out.replace(secret.as_str(), "***"))
            };
        }
        out
    }
}

/// A secret that is an ordinary word (letters only: manila's service password
/// defaults to `manila`) is also the name of a plugin, a service, a file or a
/// function: it is redacted only where it stands as a value.
/// (Generated passwords are 20 random letters and digits of mixed case: never
/// one of these.)
fn is_word(secret: &str) -> bool {
    let mut chars = secret.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest: Vec<char> = chars.collect();
    secret.len() <= 16
        && first_ok
        && rest.iter().all(char::is_ascii_alphabetic)
        && (rest.iter().all(char::is_ascii_lowercase)
            || secret.chars().all(|c| c.is_ascii_uppercase()))
}

/// `line` with each occurrence of the word `secret` that stands as a value
/// replaced; None when there is none.
fn redact_values(line: &str, secret: &str) -> Option<String> {
    let name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(line.len());
    let mut rest_from = 0;
    let mut changed = false;
    for (at, _) in line.match_indices(secret) {
        let end = at + secret.len();
        let before = &line[..at];
        let after = &line[end..];
        // `mysql -pSECRET`: the option letter is glued to the value.
        let glued_option = before.ends_with(" -p") || before == "-p";
        let whole_word = (glued_option || !before.chars().next_back().is_some_and(name_char))
            && !after.chars().next().is_some_and(name_char);
        if whole_word && at >= rest_from && (glued_option || stands_as_value(before, after)) {
            out.push_str(&line[rest_from..at]);
            out.push_str("***");
            rest_from = end;
            changed = true;
        }
    }
    changed.then(|| {
        out.push_str(&line[rest_from..]);
        out
    })
}

/// Is what stands between `before` and `after` a value: after `=` (an assignment,
/// an option, an ini line), a URL's `user:SECRET@`, or a word that names a secret
/// (`--password SECRET`, `password: SECRET`)?
fn stands_as_value(before: &str, after: &str) -> bool {
    let unquoted = before.trim_end_matches(['\'', '"']);
    if unquoted.trim_end().ends_with('=') {
        return true;
    }
    if unquoted.ends_with(':') && after.starts_with('@') {
        return true;
    }
    let key = unquoted.trim_end().trim_end_matches(':').trim_end();
    let last = key
        .rsplit(|c: char| c.is_whitespace() || c == '-')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "pass"]
        .iter()
        .any(|w| last.ends_with(w))
}

/// The process-wide redactor: what reaches the terminal or the run log outside a
/// child's own output (notes, warnings, reports) passes through it. Set whenever
/// the run learns a secret.
fn global_cell() -> &'static std::sync::RwLock<Redactor> {
    static GLOBAL: std::sync::OnceLock<std::sync::RwLock<Redactor>> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(|| std::sync::RwLock::new(Redactor::default()))
}

/// Replaces the process-wide redactor.
pub(crate) fn set_global(redactor: &Redactor) {
    if let Ok(mut g) = global_cell().write() {
        *g = redactor.clone();
    }
}

/// Redacts `text` with the process-wide redactor.
pub(crate) fn redact_global(text: &str) -> String {
    global_cell()
        .read()
        .map_or_else(|_| text.to_owned(), |g| g.redact(text).into_owned())
}

/// The literal values a bash script assigns to variables whose names say they
/// hold a secret (`ADMIN_PASSWORD=x`, `export FOO_SECRET="y"`): known before the
/// script runs, so not even its `set -x` trace shows them.
pub(crate) fn literal_secrets(script: &str, is_secret: impl Fn(&str) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for line in script.lines() {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || !is_secret(name)
        {
            continue;
        }
        let value = value.trim_end();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        if !value.is_empty() {
            out.push(value.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_longest_first_and_ignores_short() {
        let r = Redactor::new(["s3cret", "s3cret-long", "ab"]);
        assert_eq!(r.redact("x s3cret-long y s3cret ab"), "x *** y *** ab");
    }

    #[test]
    fn a_secret_that_is_a_word_is_redacted_as_a_value_never_as_a_name() {
        let r = Redactor::new(["manila"]);
        for (line, want) in [
            (
                "MANILA_SERVICE_PASSWORD=manila",
                "MANILA_SERVICE_PASSWORD=***",
            ),
            ("password = manila", "password = ***"),
            ("export X='manila'", "export X='***'"),
            (
                "connection = mysql://root:manila@127.0.0.1/db",
                "connection = mysql://root:***@127.0.0.1/db",
            ),
            ("--os-password manila --x", "--os-password *** --x"),
            ("password: manila", "password: ***"),
            (
                "mysql -uroot -pmanila -h 127.0.0.1",
                "mysql -uroot -p*** -h 127.0.0.1",
            ),
            (
                "plugin 'manila' failed at /opt/stack/manila/devstack/plugin.sh:3",
                "plugin 'manila' failed at /opt/stack/manila/devstack/plugin.sh:3",
            ),
            (
                "install_manila; manila-api; manila.sh",
                "install_manila; manila-api; manila.sh",
            ),
            ("  plugin: manila (x)", "  plugin: manila (x)"),
        ] {
            assert_eq!(r.redact(line), want, "{line}");
        }
        // A secret that is not a word is redacted wherever it stands.
        let r = Redactor::new(["Pw4242x", "hGfTyUiOpLkJhGfDsAqW"]);
        assert_eq!(r.redact("/x/Pw4242x/y"), "/x/***/y");
        assert_eq!(r.redact("leak hGfTyUiOpLkJhGfDsAqW"), "leak ***");
    }

    #[test]
    fn literal_secrets_are_found_before_the_script_runs() {
        let script = "ADMIN_PASSWORD=plain\nexport X_SECRET=\"quoted\"\n  RABBIT_PASSWORD='single'\nHOST_IP=10.0.0.1\n# DB_PASSWORD\n";
        let found = literal_secrets(script, |n| n.contains("PASSWORD") || n.contains("SECRET"));
        assert_eq!(found, ["plain", "quoted", "single"]);
    }
}
