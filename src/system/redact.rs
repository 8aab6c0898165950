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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_longest_first_and_ignores_short() {
        let r = Redactor::new(["secret", "secret-long", "ab"]);
        assert_eq!(r.redact("x secret-long y secret ab"), "x *** y *** ab");
    }
}
