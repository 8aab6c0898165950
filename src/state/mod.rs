//! What a run leaves behind: the state ledger (a JSON file with a schema version,
//! written atomically) and the lock that keeps one run per tree.
//!
//! Both live in `$TOP_DIR/.devstack/`, so `unstack` after a failed `stack` knows what
//! was started even when the settings changed since. Nothing outside this module
//! knows how the file is encoded: services record and forget through [`Ledger`]'s
//! typed methods.

use fs_err::os::unix::fs::OpenOptionsExt as _;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use fs_err as fs;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

/// Bumped when the file's shape changes; older shapes are migrated on load.
pub(crate) const SCHEMA_VERSION: u32 = 2;

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
        "the state file {path} has schema version {found}; this devstack understands up to {SCHEMA_VERSION}"
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
    #[error("{what} is in use by another devstack run: pid {pid} in {tree} (lock {path})")]
    HostLocked {
        what: String,
        pid: String,
        tree: String,
        path: PathBuf,
    },
    #[error(
        "DEST={dest} belongs to the tree at {owner}, which stacked there and has not been cleaned: \
         two trees on one DEST would share its processes, data and logs \
         (run ./clean.sh in {owner} first, give this tree a DEST of its own, \
         or take DEST over with DEVSTACK_TAKEOVER=1)"
    )]
    OwnedByAnotherTree { dest: PathBuf, owner: PathBuf },
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
    /// The processes this step started (a resumed stack checks they still run).
    #[serde(default)]
    pub started: Vec<String>,
}

/// One hook call of the last run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HookRecord {
    pub point: String,
    pub script: String,
    pub status: i32,
    pub seconds: f64,
}

/// Who supervises a process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// devstack-rs's own supervisor (containers, CI).
    #[default]
    Own,
    /// A systemd unit.
    Systemd,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Systemd => "systemd",
        }
    }
}

/// The two kinds of process a run starts: the host's daemons (database, message
/// queue, cache, and later libvirtd, OVS/OVN), which only `unstack --all` stops, and
/// the cloud's processes (OpenStack services, a plugin's `run_process` ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessKind {
    Daemon,
    Service,
}

/// A process a run started (our supervisor or a systemd unit).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    pub name: String,
    pub backend: Backend,
    pub pid: Option<u32>,
    pub command: String,
    pub log: PathBuf,
    pub unit: Option<String>,
    /// Where it listens, when known (for `status`).
    #[serde(default)]
    pub address: Option<String>,
    /// How it was started beyond its command: what `devstack start` and `restart`
    /// need to start it again exactly so. None: recorded by an older devstack, or
    /// found from a pidfile.
    #[serde(default)]
    pub launch: Option<Launch>,
}

/// What a process was started with besides its command line: its environment, user,
/// group and working directory. The environment may hold secrets: it lives only in
/// the state file, which is 0600.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Launch {
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub workdir: Option<PathBuf>,
}

/// How the last command ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Running,
    Ok,
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunRecord {
    pub command: String,
    pub outcome: Outcome,
    pub pid: u32,
    pub started: String,
}

/// The whole file. Private: the ledger's methods are the only way in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct State {
    schema: u32,
    #[serde(default)]
    last_run: Option<RunRecord>,
    #[serde(default)]
    steps: BTreeMap<String, StepRecord>,
    #[serde(default)]
    hooks: Vec<HookRecord>,
    /// Debian packages this project installed.
    #[serde(default)]
    packages: BTreeSet<String>,
    /// The cloud's processes ([`ProcessKind::Service`]).
    #[serde(default)]
    processes: BTreeMap<String, ProcessRecord>,
    /// The host's daemons ([`ProcessKind::Daemon`]).
    #[serde(default)]
    daemons: BTreeMap<String, ProcessRecord>,
    /// System services (mysql, rabbitmq-server, ...) a run started or took over.
    #[serde(default)]
    system_services: BTreeSet<String>,
    /// Databases created, as "backend:name".
    #[serde(default)]
    databases: BTreeSet<String>,
    /// Database users created, as "backend:name".
    #[serde(default)]
    db_users: BTreeSet<String>,
    #[serde(default)]
    files: BTreeSet<PathBuf>,
    #[serde(default)]
    dirs: BTreeSet<PathBuf>,
    /// Free-form facts services keep between runs (e.g. a message queue user).
    #[serde(default)]
    facts: BTreeMap<String, String>,
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
            daemons: BTreeMap::new(),
            system_services: BTreeSet::new(),
            databases: BTreeSet::new(),
            db_users: BTreeSet::new(),
            files: BTreeSet::new(),
            dirs: BTreeSet::new(),
            facts: BTreeMap::new(),
        }
    }
}

/// The facts that are choices shown by `status`.
const CHOICE_PREFIX: &str = "choice:";

/// Schema 1 kept the host's daemons as JSON strings in `facts["system-process:NAME"]`.
const V1_DAEMON_FACT: &str = "system-process:";

/// Reads any known schema into the current one.
fn migrate(path: &Path, mut value: serde_json::Value) -> Result<State, StateError> {
    let found = value
        .get("schema")
        .and_then(serde_json::Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or(0);
    if found == 0 || found > SCHEMA_VERSION {
        return Err(StateError::Schema {
            path: path.to_path_buf(),
            found,
        });
    }
    if found == 1 {
        let mut daemons = serde_json::Map::new();
        if let Some(facts) = value.get_mut("facts").and_then(|f| f.as_object_mut()) {
            let keys: Vec<String> = facts
                .keys()
                .filter(|k| k.starts_with(V1_DAEMON_FACT))
                .cloned()
                .collect();
            for key in keys {
                let text = facts.remove(&key).unwrap_or_default();
                if let Some(record) = text
                    .as_str()
                    .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
                {
                    daemons.insert(key[V1_DAEMON_FACT.len()..].to_owned(), record);
                }
            }
        }
        if let Some(obj) = value.as_object_mut() {
            obj.insert("daemons".into(), serde_json::Value::Object(daemons));
            obj.insert("schema".into(), SCHEMA_VERSION.into());
        }
    }
    serde_json::from_value(value).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Lower-case hex of a digest, as fingerprints are kept in the state.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// In a DEST, the file naming the tree that stacked into it.
const OWNER_FILE: &str = ".devstack-rs-owner";

/// A tree's path as the owner file holds it.
fn tree_id(top_dir: &Path) -> PathBuf {
    fs::canonicalize(top_dir).unwrap_or_else(|_| top_dir.to_path_buf())
}

/// The other tree that owns `dest`: one that stacked into it and still has its
/// state (a tree that was cleaned, or removed, owns nothing).
pub(crate) fn dest_owner(dest: &Path, top_dir: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(dest.join(OWNER_FILE)).ok()?;
    let owner = PathBuf::from(text.trim_end_matches('\n'));
    (owner != tree_id(top_dir) && state_dir(&owner).join("state.json").exists()).then_some(owner)
}

/// Refuses `dest` when another tree owns it, unless `take_over`; returns the
/// tree it was taken from.
pub(crate) fn check_dest_owner(
    dest: &Path,
    top_dir: &Path,
    take_over: bool,
) -> Result<Option<PathBuf>, StateError> {
    match dest_owner(dest, top_dir) {
        Some(owner) if !take_over => Err(StateError::OwnedByAnotherTree {
            dest: dest.to_path_buf(),
            owner,
        }),
        owner => Ok(owner),
    }
}

/// Records that this tree stacks into `dest`.
pub(crate) fn claim_dest(dest: &Path, top_dir: &Path) -> std::io::Result<()> {
    let mut text = tree_id(top_dir).into_os_string().into_encoded_bytes();
    text.push(b'\n');
    write_atomic(&dest.join(OWNER_FILE), &text, 0o644)
}

/// A cleaned tree owns its DEST no more.
pub(crate) fn release_dest(dest: &Path, top_dir: &Path) {
    let file = dest.join(OWNER_FILE);
    let ours = fs::read_to_string(&file)
        .is_ok_and(|t| tree_id(top_dir) == Path::new(t.trim_end_matches('\n')));
    if ours {
        let _ = fs::remove_file(&file);
    }
}

/// The directory of the state and lock files for a tree.
pub(crate) fn state_dir(top_dir: &Path) -> PathBuf {
    top_dir.join(".devstack")
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, then
/// rename) with `mode`: the one private atomic write of the project.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(bytes)?;
    // No fsync: the rename is atomic for the reader that matters (the next run); a
    // power cut during a devstack run leaves more than this file to redo.
    drop(file);
    fs::rename(&tmp, path)
}

/// The state with the path it is saved to, behind typed methods.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    state: State,
}

impl Ledger {
    /// Loads the state of a tree; a missing file is a fresh state; an older schema
    /// is migrated.
    pub fn load(top_dir: &Path) -> Result<Self, StateError> {
        let path = state_dir(top_dir).join("state.json");
        let state = match fs_err::read_to_string(&path) {
            Ok(text) => {
                let value: serde_json::Value =
                    serde_json::from_str(&text).map_err(|source| StateError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                migrate(&path, value)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        Ok(Self { path, state })
    }

    /// Loads the state, or, when the file cannot be read or parsed, moves it aside
    /// (`state.json.corrupt-TIME`) and starts from an empty ledger: teardown must
    /// never be blocked by its own records. The second value says what happened.
    pub fn load_or_set_aside(top_dir: &Path) -> (Self, Option<String>) {
        match Self::load(top_dir) {
            Ok(ledger) => (ledger, None),
            Err(e) => {
                let ledger = Self::empty(top_dir);
                let aside = ledger.path.with_extension(format!(
                    "json.corrupt-{}",
                    chrono::Local::now().format("%Y%m%d-%H%M%S")
                ));
                let cause =
                    std::error::Error::source(&e).map_or_else(String::new, |c| format!(" ({c})"));
                let moved = match fs::rename(&ledger.path, &aside) {
                    Ok(()) => format!("moved aside to {}", aside.display()),
                    Err(m) => format!("could not be moved aside: {m}"),
                };
                (
                    ledger,
                    Some(format!(
                        "{e}{cause}; {moved}; going on with what can be found (pidfiles beside the logs)"
                    )),
                )
            }
        }
    }

    /// An empty ledger saved to `path` (for tests and for a state set aside).
    pub fn empty(top_dir: &Path) -> Self {
        Self {
            path: state_dir(top_dir).join("state.json"),
            state: State::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state atomically, readable by its owner only (a `run_process`
    /// command line may hold a secret).
    pub fn save(&self) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(&self.state).expect("state serialises");
        write_atomic(&self.path, text.as_bytes(), 0o600).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// Removes the file (clean: nothing is left to say).
    pub fn remove(&self) -> std::io::Result<()> {
        match fs_err::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn map(&self, kind: ProcessKind) -> &BTreeMap<String, ProcessRecord> {
        match kind {
            ProcessKind::Daemon => &self.state.daemons,
            ProcessKind::Service => &self.state.processes,
        }
    }

    fn map_mut(&mut self, kind: ProcessKind) -> &mut BTreeMap<String, ProcessRecord> {
        match kind {
            ProcessKind::Daemon => &mut self.state.daemons,
            ProcessKind::Service => &mut self.state.processes,
        }
    }

    pub fn record_process(&mut self, kind: ProcessKind, record: ProcessRecord) {
        self.map_mut(kind).insert(record.name.clone(), record);
    }

    pub fn process(&self, kind: ProcessKind, name: &str) -> Option<&ProcessRecord> {
        self.map(kind).get(name)
    }

    /// The records of one kind, by name.
    pub fn processes(&self, kind: ProcessKind) -> Vec<ProcessRecord> {
        self.map(kind).values().cloned().collect()
    }

    /// Every record: daemons first, then the cloud's processes.
    pub fn all_processes(&self) -> Vec<ProcessRecord> {
        let mut out = self.processes(ProcessKind::Daemon);
        out.extend(self.processes(ProcessKind::Service));
        out
    }

    pub fn forget_process(&mut self, kind: ProcessKind, name: &str) -> Option<ProcessRecord> {
        self.map_mut(kind).remove(name)
    }

    pub fn record_file(&mut self, path: &Path) {
        self.state.files.insert(path.to_path_buf());
    }

    pub fn forget_file(&mut self, path: &Path) {
        self.state.files.remove(path);
    }

    pub fn has_file(&self, path: &Path) -> bool {
        self.state.files.contains(path)
    }

    pub fn files(&self) -> Vec<PathBuf> {
        self.state.files.iter().cloned().collect()
    }

    pub fn record_dir(&mut self, path: &Path) {
        self.state.dirs.insert(path.to_path_buf());
    }

    pub fn forget_dir(&mut self, path: &Path) {
        self.state.dirs.remove(path);
    }

    pub fn has_dir(&self, path: &Path) -> bool {
        self.state.dirs.contains(path)
    }

    pub fn dirs(&self) -> Vec<PathBuf> {
        self.state.dirs.iter().cloned().collect()
    }

    fn db_key(backend: &str, name: &str) -> String {
        format!("{backend}:{name}")
    }

    fn of_backend(set: &BTreeSet<String>, backend: &str) -> Vec<String> {
        let prefix = format!("{backend}:");
        set.iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_owned))
            .collect()
    }

    pub fn record_database(&mut self, backend: &str, name: &str) {
        self.state.databases.insert(Self::db_key(backend, name));
    }

    pub fn forget_database(&mut self, backend: &str, name: &str) {
        self.state.databases.remove(&Self::db_key(backend, name));
    }

    /// The databases recorded for a backend, by name.
    pub fn databases(&self, backend: &str) -> Vec<String> {
        Self::of_backend(&self.state.databases, backend)
    }

    pub fn record_db_user(&mut self, backend: &str, name: &str) {
        self.state.db_users.insert(Self::db_key(backend, name));
    }

    pub fn forget_db_user(&mut self, backend: &str, name: &str) {
        self.state.db_users.remove(&Self::db_key(backend, name));
    }

    pub fn db_users(&self, backend: &str) -> Vec<String> {
        Self::of_backend(&self.state.db_users, backend)
    }

    pub fn record_package(&mut self, name: &str) {
        self.state.packages.insert(name.to_owned());
    }

    pub fn forget_package(&mut self, name: &str) {
        self.state.packages.remove(name);
    }

    pub fn record_system_service(&mut self, name: &str) {
        self.state.system_services.insert(name.to_owned());
    }

    /// Forgets a system service; true when it was recorded.
    pub fn forget_system_service(&mut self, name: &str) -> bool {
        self.state.system_services.remove(name)
    }

    pub fn has_system_service(&self, name: &str) -> bool {
        self.state.system_services.contains(name)
    }

    pub fn system_services(&self) -> Vec<String> {
        self.state.system_services.iter().cloned().collect()
    }

    pub fn fact(&self, key: &str) -> Option<&str> {
        self.state.facts.get(key).map(String::as_str)
    }

    pub fn set_fact(&mut self, key: &str, value: impl Into<String>) {
        self.state.facts.insert(key.to_owned(), value.into());
    }

    pub fn forget_fact(&mut self, key: &str) {
        self.state.facts.remove(key);
    }

    /// What services said about the choices they made (a backend, a datapath, KVM or
    /// TCG), for `devstack status`: the facts recorded with [`Ledger::set_choice`].
    pub fn choices(&self) -> Vec<(String, String)> {
        self.state
            .facts
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(CHOICE_PREFIX)
                    .map(|name| (name.to_owned(), v.clone()))
            })
            .collect()
    }

    /// Records a choice a service made and why, shown by `devstack status`.
    pub fn set_choice(&mut self, service: &str, text: impl Into<String>) {
        self.set_fact(&format!("{CHOICE_PREFIX}{service}"), text);
    }

    pub fn forget_choice(&mut self, service: &str) {
        self.forget_fact(&format!("{CHOICE_PREFIX}{service}"));
    }

    pub fn last_run(&self) -> Option<&RunRecord> {
        self.state.last_run.as_ref()
    }

    /// A command begins: it is recorded as running, and the hook records of the run
    /// before are dropped. Returns how the run before ended.
    pub fn begin_run(&mut self, command: &str) -> Option<RunRecord> {
        self.state.hooks.clear();
        self.state.last_run.replace(RunRecord {
            command: command.to_owned(),
            outcome: Outcome::Running,
            pid: std::process::id(),
            started: chrono::Local::now().to_rfc3339(),
        })
    }

    /// The run recorded as running, when its process is gone (killed, or the
    /// machine rebooted): it is marked failed, so the state never says `running`
    /// for a dead pid. Returns the dead run.
    pub fn settle_dead_run(&mut self) -> Option<RunRecord> {
        let last = self.state.last_run.as_mut()?;
        // A pid reused by another program does not count as the run.
        let alive = fs::read(format!("/proc/{}/cmdline", last.pid))
            .is_ok_and(|c| c.windows(8).any(|w| w == b"devstack"));
        if last.outcome != Outcome::Running || last.pid == std::process::id() || alive {
            return None;
        }
        last.outcome = Outcome::Failed;
        Some(last.clone())
    }

    pub fn end_run(&mut self, outcome: Outcome) {
        if let Some(last) = self.state.last_run.as_mut() {
            last.outcome = outcome;
        }
    }

    /// The names of every recorded process, daemons and the cloud's.
    pub fn process_names(&self) -> BTreeSet<String> {
        self.state
            .daemons
            .keys()
            .chain(self.state.processes.keys())
            .cloned()
            .collect()
    }

    pub fn record_step(&mut self, name: &str, record: StepRecord) {
        self.state.steps.insert(name.to_owned(), record);
    }

    pub fn step(&self, name: &str) -> Option<&StepRecord> {
        self.state.steps.get(name)
    }

    pub fn record_hook(&mut self, record: HookRecord) {
        self.state.hooks.push(record);
    }

    pub fn hooks(&self) -> &[HookRecord] {
        &self.state.hooks
    }

    /// Is anything recorded that teardown would act on?
    pub fn is_empty(&self) -> bool {
        self.state.processes.is_empty()
            && self.state.daemons.is_empty()
            && self.state.system_services.is_empty()
    }
}

/// Held while a stack, unstack or clean runs; released on drop.
#[derive(Debug)]
pub(crate) struct RunLock {
    _lock: Flock<std::fs::File>,
}

/// Opens and locks `path` (exclusive, without waiting) and writes `holder` into it;
/// `Ok(Err(text))` when another process holds it (`text`: what it wrote).
fn lock_file(
    path: &Path,
    holder: &str,
) -> Result<Result<Flock<std::fs::File>, String>, StateError> {
    let err = |source| StateError::Lock {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    // nix's Flock wants a std File; the error below names the path itself.
    #[allow(clippy::disallowed_methods)]
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(err)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            return Ok(Err(fs_err::read_to_string(path).unwrap_or_default()));
        }
        Err((_, errno)) => return Err(err(errno.into())),
    };
    lock.set_len(0).map_err(err)?;
    write!(lock, "{holder}").map_err(err)?;
    Ok(Ok(lock))
}

/// Where host-wide locks live: one machine, whatever tree a run comes from.
fn host_lock_dir() -> PathBuf {
    let run_lock = Path::new("/run/lock");
    if run_lock.is_dir() {
        run_lock.join("devstack-rs")
    } else {
        std::env::temp_dir().join("devstack-rs-locks")
    }
}

/// A lock on something every tree on the machine shares: a DEST, DATA_DIR or
/// LOGDIR (keyed by its absolute path, so trees with their own directories never
/// collide), or the host's layer-1 daemons. Released on drop.
#[derive(Debug)]
pub(crate) struct HostLock {
    _lock: Flock<std::fs::File>,
}

impl HostLock {
    /// Takes the lock on `key` (`what` says what it guards, for the message), or
    /// names the run that holds it: its pid and tree.
    pub(crate) fn acquire(what: &str, key: &str, top_dir: &Path) -> Result<Self, StateError> {
        use sha2::{Digest as _, Sha256};
        let digest = hex(&Sha256::digest(key.as_bytes()));
        let path = host_lock_dir().join(format!("{}.lock", &digest[..24]));
        let holder = format!("{}\n{}\n{key}\n", std::process::id(), top_dir.display());
        match lock_file(&path, &holder)? {
            Ok(lock) => Ok(Self { _lock: lock }),
            Err(text) => {
                let mut lines = text.lines();
                Err(StateError::HostLocked {
                    what: what.to_owned(),
                    pid: lines.next().unwrap_or("?").to_owned(),
                    tree: lines.next().unwrap_or("another tree").to_owned(),
                    path,
                })
            }
        }
    }
}

/// Removes the host-wide lock files whose last holder's tree no longer exists
/// (nothing can be recorded under them again but by a new run, which makes its
/// own). Each is locked first: one a run holds now is left alone.
pub(crate) fn remove_orphan_host_locks() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(host_lock_dir()) else {
        return removed;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap_or_default();
        let Some(tree) = text.lines().nth(1).filter(|t| t.starts_with('/')) else {
            continue;
        };
        if Path::new(tree).exists() {
            continue;
        }
        // Held while it is removed, so no run holds it meanwhile.
        #[allow(clippy::disallowed_methods)]
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
        else {
            continue;
        };
        if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            if fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
            drop(lock);
        }
    }
    removed
}

impl RunLock {
    /// Takes the tree's lock, or says who holds it.
    pub(crate) fn acquire(top_dir: &Path) -> Result<Self, StateError> {
        let dir = state_dir(top_dir);
        let path = dir.join("lock");
        let holder = format!("{}\n", std::process::id());
        match lock_file(&path, &holder)? {
            Ok(lock) => Ok(Self { _lock: lock }),
            Err(text) => Err(StateError::Locked {
                holder: text.trim().parse().ok(),
                path,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> ProcessRecord {
        ProcessRecord {
            name: name.into(),
            backend: Backend::Own,
            pid: Some(42),
            command: "sleep 1".into(),
            log: "/tmp/x.log".into(),
            unit: None,
            address: None,
            launch: None,
        }
    }

    #[test]
    fn ledger_round_trips_privately_and_atomically() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::load(dir.path()).unwrap();
        assert!(ledger.is_empty());
        ledger.record_package("mariadb-server");
        ledger.record_process(ProcessKind::Service, record("n-api"));
        ledger.record_process(ProcessKind::Daemon, record("mysql"));
        ledger.record_database("mysql", "nova");
        ledger.save().unwrap();
        let again = Ledger::load(dir.path()).unwrap();
        assert_eq!(again.state, ledger.state);
        assert_eq!(again.databases("mysql"), ["nova"]);
        assert!(again.databases("postgresql").is_empty());
        assert_eq!(
            again
                .all_processes()
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>(),
            ["mysql", "n-api"],
            "daemons first"
        );
        let leftovers: Vec<_> = fs_err::read_dir(state_dir(dir.path())).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        let mode = fs_err::metadata(again.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn an_unknown_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(state_dir(dir.path())).unwrap();
        fs_err::write(
            state_dir(dir.path()).join("state.json"),
            r#"{"schema": 99}"#,
        )
        .unwrap();
        assert!(matches!(
            Ledger::load(dir.path()),
            Err(StateError::Schema { found: 99, .. })
        ));
    }

    #[test]
    fn schema_1_daemon_facts_become_typed_records() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(state_dir(dir.path())).unwrap();
        let v1 = serde_json::json!({
            "schema": 1,
            "last_run": {"command": "stack", "outcome": "ok", "pid": 7, "started": "x"},
            "processes": {"key": record("key")},
            "facts": {
                "system-process:mysql": serde_json::to_string(&record("mysql")).unwrap(),
                "rabbit-user": "stackrabbit"
            }
        });
        fs_err::write(
            state_dir(dir.path()).join("state.json"),
            serde_json::to_string(&v1).unwrap(),
        )
        .unwrap();
        let ledger = Ledger::load(dir.path()).unwrap();
        assert_eq!(
            ledger.process(ProcessKind::Daemon, "mysql"),
            Some(&record("mysql"))
        );
        assert!(ledger.process(ProcessKind::Service, "key").is_some());
        assert_eq!(ledger.fact("rabbit-user"), Some("stackrabbit"));
        assert_eq!(ledger.fact("system-process:mysql"), None);
        assert_eq!(ledger.last_run().unwrap().outcome, Outcome::Ok);
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
