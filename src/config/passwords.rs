//! Passwords the user did not set are generated once and kept in
//! `$DATA_DIR/.devstack-passwords` (mode 0600). They are never printed or logged:
//! every log line passes through a redactor that knows them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;

use std::path::{Path, PathBuf};

use fs_err as fs;

const FILE_NAME: &str = ".devstack-passwords";
const LENGTH: usize = 24;

pub(crate) fn file(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// A random password of letters and digits (no characters that need quoting in
/// URLs, ini files or shells).
pub(crate) fn generate() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; LENGTH * 2];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("/dev/urandom is readable");
    bytes
        .iter()
        .filter(|b| usize::from(**b) < 256 - 256 % ALPHABET.len())
        .take(LENGTH)
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Reads the kept passwords (`NAME=value` lines).
pub(crate) fn load(path: &Path) -> BTreeMap<String, String> {
    fs_err::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

pub(crate) fn save(path: &Path, passwords: &BTreeMap<String, String>) -> std::io::Result<()> {
    let text = passwords.iter().fold(String::new(), |mut t, (k, v)| {
        let _ = writeln!(t, "{k}={v}");
        t
    });
    crate::state::write_atomic(path, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_passwords_are_long_and_plain() {
        let a = generate();
        assert_eq!(a.len(), LENGTH);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, generate());
    }

    #[test]
    fn kept_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(dir.path());
        let map: BTreeMap<String, String> =
            [("ADMIN_PASSWORD".to_owned(), "abc123".to_owned())].into();
        save(&path, &map).unwrap();
        assert_eq!(load(&path), map);
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
