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
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), "***"));
            }
        }
        out
    }
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
        let r = Redactor::new(["secret", "secret-long", "ab"]);
        assert_eq!(r.redact("x secret-long y secret ab"), "x *** y *** ab");
    }

    #[test]
    fn literal_secrets_are_found_before_the_script_runs() {
        let script = "ADMIN_PASSWORD=plain\nexport X_SECRET=\"quoted\"\n  RABBIT_PASSWORD='single'\nHOST_IP=10.0.0.1\n# DB_PASSWORD\n";
        let found = literal_secrets(script, |n| n.contains("PASSWORD") || n.contains("SECRET"));
        assert_eq!(found, ["plain", "quoted", "single"]);
    }
}
