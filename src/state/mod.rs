//! What a run leaves behind: the state file (JSON with a schema version, written
//! atomically after every change) and the lock that keeps one run per tree.
//!
//! Both live in `$TOP_DIR/.devstack/`, so `unstack` after a failed `stack` knows what
//! was started even when the settings changed since.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fs_err as fs;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Bumped when the file's shape changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("could not read the state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "the state file {path} has schema version {found}; this devstack understands {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: u32 },
    #[error("could not write the state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another devstack run holds the lock {path}{}", holder.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { path: PathBuf, holder: Option<u32> },
    #[error("could not take the lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One finished (or failed) step of the last stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRecord {
    pub fingerprint: String,
    pub seconds: f64,
    pub ok: bool,
}

/// One hook call of the last run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookRecord {
    pub point: String,
    pub script: String,
    pub status: i32,
    pub seconds: f64,
}

/// A process a run started (our supervisor or a systemd unit).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    pub name: String,
    pub backend: String,
    pub pid: Option<u32>,
    pub command: String,
    pub log: PathBuf,
    pub unit: Option<String>,
    /// Where it listens, when known (for `status`).
    #[serde(default)]
    pub address: Option<String>,
}

/// The whole state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub schema: u32,
    /// The last command and how it ended: "running", "ok", "failed".
    #[serde(default)]
    pub last_run: Option<RunRecord>,
    #[serde(default)]
    pub steps: BTreeMap<String, StepRecord>,
    #[serde(default)]
    pub hooks: Vec<HookRecord>,
    /// Debian packages this project installed.
    #[serde(default)]
    pub packages: BTreeSet<String>,
    #[serde(default)]
    pub processes: BTreeMap<String, ProcessRecord>,
    /// System services (mysql, rabbitmq-server, ...) a run started.
    #[serde(default)]
    pub system_services: BTreeSet<String>,
    /// Databases created, as "backend:name".
    #[serde(default)]
    pub databases: BTreeSet<String>,
    /// Database users created, as "backend:name".
    #[serde(default)]
    pub db_users: BTreeSet<String>,
    #[serde(default)]
    pub files: BTreeSet<PathBuf>,
    #[serde(default)]
    pub dirs: BTreeSet<PathBuf>,
    /// Free-form facts services keep between runs (e.g. a message queue user).
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    pub command: String,
    pub outcome: String,
    pub pid: u32,
    pub started: String,
}

impl Default for State {
    fn default() -> Self {
        Self {
            schema: SCHEMA_VERSION,
            last_run: None,
            steps: BTreeMap::new(),
            hooks: Vec::new(),
            packages: BTreeSet::new(),
            processes: BTreeMap::new(),
            system_services: BTreeSet::new(),
            databases: BTreeSet::new(),
            db_users: BTreeSet::new(),
            files: BTreeSet::new(),
            dirs: BTreeSet::new(),
            facts: BTreeMap::new(),
        }
    }
}

/// Lower-case hex of a digest, as fingerprints are kept in the state.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The directory of the state and lock files for a tree.
pub fn state_dir(top_dir: &Path) -> PathBuf {
    top_dir.join(".devstack")
}

/// The state with the path it is saved to.
#[derive(Debug)]
pub struct StateFile {
    pub path: PathBuf,
    pub state: State,
}

impl StateFile {
    /// Loads the state of a tree; a missing file is a fresh state.
    pub fn load(top_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir(top_dir).join("state.json");
        let state = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let state: State =
                    serde_json::from_str(&text).map_err(|source| StateError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                if state.schema != SCHEMA_VERSION {
                    return Err(StateError::Schema {
                        path,
                        found: state.schema,
                    });
                }
                state
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok(Self { path, state })
    }

    /// Writes the state atomically: a temporary file in the same directory, then rename.
    pub fn save(&self) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().expect("state file has a parent");
        fs::create_dir_all(dir).map_err(err)?;
        let tmp = self
            .path
            .with_extension(format!("json.tmp.{}", std::process::id()));
        let text = serde_json::to_string_pretty(&self.state).expect("state serialises");
        let mut file = fs::File::create(&tmp).map_err(err)?;
        file.write_all(text.as_bytes()).map_err(err)?;
        // No fsync: the rename is atomic for the reader that matters (the next run);
        // a power cut during a devstack run leaves more than this file to redo.
        fs::rename(&tmp, &self.path).map_err(err)?;
        Ok(())
    }
}

/// Held while a stack, unstack or clean runs; released on drop.
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<std::fs::File>,
    path: PathBuf,
}

impl RunLock {
    /// Takes the tree's lock, or says who holds it.
    pub fn acquire(top_dir: &Path) -> Result<Self, StateError> {
        let dir = state_dir(top_dir);
        let path = dir.join("lock");
        let err = |source| StateError::Lock {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(err)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(err)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                let holder = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|s| s.trim().parse().ok());
                return Err(StateError::Locked { path, holder });
            }
            Err((_, errno)) => return Err(err(errno.into())),
        };
        lock.set_len(0).map_err(err)?;
        writeln!(lock, "{}", std::process::id()).map_err(err)?;
        Ok(Self { _lock: lock, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let mut sf = StateFile::load(dir.path()).unwrap();
        assert_eq!(sf.state, State::default());
        sf.state.packages.insert("mariadb-server".into());
        sf.save().unwrap();
        let again = StateFile::load(dir.path()).unwrap();
        assert!(again.state.packages.contains("mariadb-server"));
        let leftovers: Vec<_> = std::fs::read_dir(state_dir(dir.path())).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn wrong_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(state_dir(dir.path())).unwrap();
        std::fs::write(
            state_dir(dir.path()).join("state.json"),
            r#"{"schema": 99}"#,
        )
        .unwrap();
        assert!(matches!(
            StateFile::load(dir.path()),
            Err(StateError::Schema { found: 99, .. })
        ));
    }

    #[test]
    fn second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let _held = RunLock::acquire(dir.path()).unwrap();
        match RunLock::acquire(dir.path()) {
            Err(StateError::Locked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
    }
}
