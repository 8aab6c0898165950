//! Passwords the user did not set are generated once and kept in
//! `$DATA_DIR/.devstack-passwords` (mode 0600). They are never printed or logged:
//! every log line passes through a redactor that knows them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use fs_err as fs;

const FILE_NAME: &str = ".devstack-passwords";
const LENGTH: usize = 24;

pub fn file(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// A random password of letters and digits (no characters that need quoting in
/// URLs, ini files or shells).
pub fn generate() -> String {
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
pub fn load(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

pub fn save(path: &Path, passwords: &BTreeMap<String, String>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    for (k, v) in passwords {
        writeln!(f, "{k}={v}")?;
    }
    f.sync_all()?;
    fs::rename(&tmp, path)
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
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
