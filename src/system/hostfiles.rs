//! What a stack's hooks did to the host's system directories, and how clean puts it back.
//!
//! DevStack plugins write where the host keeps its configuration: a sudoers rule, an
//! AppArmor profile, a line in `/etc/exports`, a link in `/usr/local/bin`. DevStack's
//! clean leaves all of it, which is why its users reinstall machines. Here a stack
//! looks at a bounded set of directories ([`WATCHED`]: `/etc` itself and the
//! directories plugins write to, one level each) before and after every hook point,
//! by metadata only (kind, size, mtime, ctime, inode, mode, owner, link target): a
//! few hundred `lstat`s, so hooks that run many times stay cheap. What a hook point
//! created, changed or removed is recorded in the [`Book`] under the state directory;
//! a directory a hook created is watched whole from then on.
//!
//! The copy of a file before its first change must exist before the hook runs, so
//! every watched regular file up to [`COPY_LIMIT`] is copied once (the first hook of
//! the first stack: about 250 KB of /etc), and again only when its metadata moved
//! between hooks (our own services wrote it). Copies and the book are 0600 in a 0700
//! directory: /etc holds secrets.
//!
//! Decisions, and why:
//! - Only hooks: files our services write between hooks are theirs and their clean
//!   removes them; a hook's new file already gone at clean was removed by its owner
//!   (a plugin's clean phase, a service's clean) and is not reported.
//! - A new file or directory the package manager owns (`dpkg-query -S`, asked once
//!   per hook point that made new entries) came with a package a hook installed: it
//!   is left and reported, since it goes with the package (removing a conffile under
//!   an installed package breaks the package, and dpkg would not put it back).
//! - The accounts databases (`/etc/passwd`, group, shadow, ...) and caches the system
//!   regenerates are not watched: a user or group a hook or a package added is kept,
//!   as DevStack keeps it, and restoring them could take away an account made since.
//! - Nothing is removed or put back when it differs from what the hook left (the user
//!   or another program changed it since): it is left, and clean says so.
//! - Files larger than [`COPY_LIMIT`] (binaries in /usr/local/bin) are not copied: a
//!   change to one is reported, not undone.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use fs_err as fs;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::system::process::Spawner;

/// The directories a stack's hooks are watched in, one level each (relative to the
/// host's root, `/` but for tests).
pub(crate) const WATCHED: &[&str] = &[
    "etc",
    "etc/sudoers.d",
    "etc/apparmor.d",
    "etc/apparmor.d/local",
    "etc/systemd/system",
    "etc/apache2/sites-available",
    "etc/apache2/sites-enabled",
    "etc/apache2/conf-available",
    "etc/apache2/conf-enabled",
    "etc/default",
    "etc/logrotate.d",
    "etc/cron.d",
    "etc/sysctl.d",
    "etc/modprobe.d",
    "etc/modules-load.d",
    "etc/udev/rules.d",
    "etc/security/limits.d",
    "etc/profile.d",
    "etc/tmpfiles.d",
    "etc/exports.d",
    "usr/local/bin",
    "usr/local/sbin",
];

/// Files under `etc` that are never recorded: accounts (an account a hook added is
/// kept, as in DevStack) and what the system rewrites on its own.
const NOT_WATCHED: &[&str] = &[
    "passwd",
    "passwd-",
    "group",
    "group-",
    "shadow",
    "shadow-",
    "gshadow",
    "gshadow-",
    "subuid",
    "subuid-",
    "subgid",
    "subgid-",
    ".pwd.lock",
    "ld.so.cache",
    "mtab",
    "resolv.conf",
    "machine-id",
    "adjtime",
];

/// Files larger than this are not copied before a change (binaries, images).
pub(crate) const COPY_LIMIT: u64 = 1 << 20;

/// Entries listed in a directory a hook created, at most (a bound on one snapshot).
const CREATED_DIR_LIMIT: usize = 10_000;

/// The state directory's folder for the book and the copies.
const FOLDER: &str = "host-files";

#[derive(Debug, thiserror::Error)]
pub(crate) enum HostFilesError {
    #[error("could not save the record of the hooks' host files in {path}")]
    Save {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the record of the hooks' host files {path} is unreadable")]
    Load {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What one entry of a watched directory is, by metadata (contents are not read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Meta {
    kind: Kind,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    link: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    File,
    Link,
    Dir,
    Other,
}

impl Meta {
    fn of(path: &Path) -> Option<Self> {
        let m = fs::symlink_metadata(path).ok()?;
        let ft = m.file_type();
        let kind = if ft.is_symlink() {
            Kind::Link
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        let link = (kind == Kind::Link)
            .then(|| fs::read_link(path).ok())
            .flatten();
        // A directory is only "there": its times move with what is in it, which is
        // watched (or not) on its own.
        let dir = kind == Kind::Dir;
        Some(Self {
            kind,
            size: if dir { 0 } else { m.size() },
            mtime: if dir {
                (0, 0)
            } else {
                (m.mtime(), m.mtime_nsec())
            },
            ctime: if dir {
                (0, 0)
            } else {
                (m.ctime(), m.ctime_nsec())
            },
            ino: if dir { 0 } else { m.ino() },
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            link,
        })
    }
}

/// Every watched entry now.
type Snapshot = BTreeMap<PathBuf, Meta>;

/// What a hook did to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ChangeKind {
    Created,
    Changed,
    Removed,
}

/// How a path was before the first hook that touched it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Original {
    meta: Meta,
    /// The name of its copy (regular files), absent when it was too large.
    copy: Option<String>,
}

/// One path a hook created, changed or removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Change {
    kind: ChangeKind,
    /// The hook point and its scripts.
    by: String,
    original: Option<Original>,
    /// How the last hook left it: kind, link target, content hash.
    left: Option<Left>,
    /// The package that owns it (`dpkg-query -S`), for a new entry.
    package: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Left {
    kind: Kind,
    link: Option<PathBuf>,
    sha256: Option<String>,
}

impl Left {
    fn of(path: &Path) -> Option<Self> {
        let meta = Meta::of(path)?;
        let sha256 = (meta.kind == Kind::File)
            .then(|| {
                fs::read(path)
                    .ok()
                    .map(|b| crate::state::hex(&Sha256::digest(b)))
            })
            .flatten();
        Some(Self {
            kind: meta.kind,
            link: meta.link,
            sha256,
        })
    }
}

/// The record kept under the state directory until clean.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Book {
    /// The root the watched directories are under (`/`; a temporary tree in tests).
    root: PathBuf,
    /// The copy of each watched file as last seen outside a hook.
    pristine: BTreeMap<PathBuf, Original>,
    changes: BTreeMap<PathBuf, Change>,
}

/// The watcher of one stack: the book and the snapshot taken before a hook point.
pub(crate) struct HostWatch {
    dir: PathBuf,
    book: Book,
    before: Option<Snapshot>,
}

impl HostWatch {
    /// The watcher for a tree (the book of earlier stacks since the last clean is
    /// read again), watching under `root`.
    pub(crate) fn open(state_dir: &Path, root: &Path) -> Result<Self, HostFilesError> {
        let dir = state_dir.join(FOLDER);
        let mut book = load(&dir)?.unwrap_or_default();
        book.root = root.to_path_buf();
        Ok(Self {
            dir,
            book,
            before: None,
        })
    }

    /// Before a hook point: a snapshot, and a copy of each file whose copy is stale.
    pub(crate) fn before_hook(&mut self) -> Result<(), HostFilesError> {
        let now = self.snapshot();
        let mut copied = false;
        for (path, meta) in &now {
            let fresh = self
                .book
                .pristine
                .get(path)
                .is_some_and(|o| &o.meta == meta);
            if fresh || meta.kind != Kind::File {
                continue;
            }
            let copy = if meta.size <= COPY_LIMIT {
                self.copy_of(path)?
            } else {
                None
            };
            self.book.pristine.insert(
                path.clone(),
                Original {
                    meta: meta.clone(),
                    copy,
                },
            );
            copied = true;
        }
        if copied {
            self.save()?;
        }
        self.before = Some(now);
        Ok(())
    }

    /// After a hook point: what it created, changed or removed is recorded. Returns
    /// the paths it recorded.
    pub(crate) fn after_hook(
        &mut self,
        by: &str,
        spawner: &Spawner,
    ) -> Result<Vec<PathBuf>, HostFilesError> {
        let Some(before) = self.before.take() else {
            return Ok(Vec::new());
        };
        let after = self.snapshot();
        let mut touched = Vec::new();
        let mut created = Vec::new();
        for (path, meta) in &after {
            match before.get(path) {
                Some(old) if old == meta => {}
                Some(old) => {
                    let original = self.original(path, old);
                    self.note(path, ChangeKind::Changed, by, original);
                    touched.push(path.clone());
                }
                None => {
                    self.note(path, ChangeKind::Created, by, None);
                    created.push(path.clone());
                    touched.push(path.clone());
                }
            }
        }
        for (path, old) in &before {
            if !after.contains_key(path) {
                let original = self.original(path, old);
                self.note(path, ChangeKind::Removed, by, original);
                touched.push(path.clone());
            }
        }
        // New entries the package manager owns came with a package a hook installed.
        let fresh: Vec<PathBuf> = created
            .into_iter()
            .filter(|p| {
                self.book
                    .changes
                    .get(p)
                    .is_some_and(|c| c.kind == ChangeKind::Created && c.package.is_none())
            })
            .collect();
        for (path, package) in owners(&self.book.root, &fresh, spawner) {
            if let Some(change) = self.book.changes.get_mut(&path) {
                change.package = Some(package);
            }
        }
        // What a hook put inside a directory it made is new too (watched whole from
        // now on).
        for dir in &fresh {
            let made_dir = self.book.changes.get(dir).is_some_and(|c| {
                c.package.is_none() && c.left.as_ref().is_some_and(|l| l.kind == Kind::Dir)
            });
            if !made_dir {
                continue;
            }
            let mut inside = Snapshot::new();
            list_tree(dir, &mut inside);
            for path in inside.keys() {
                self.note(path, ChangeKind::Created, by, None);
                touched.push(path.clone());
            }
        }
        if !touched.is_empty() {
            self.save()?;
        }
        Ok(touched)
    }

    /// How `path` was before this hook point: the copy kept while it was `old`.
    fn original(&self, path: &Path, old: &Meta) -> Option<Original> {
        match self.book.pristine.get(path) {
            Some(o) if &o.meta == old => Some(o.clone()),
            // A link or a directory: its metadata says it all.
            _ if old.kind != Kind::File => Some(Original {
                meta: old.clone(),
                copy: None,
            }),
            _ => None,
        }
    }

    fn note(&mut self, path: &Path, kind: ChangeKind, by: &str, original: Option<Original>) {
        let left = Left::of(path);
        // Touched before: the first change's original and kind stay (a file a hook
        // created is still new; one removed and made again was changed).
        if let Some(change) = self.book.changes.get_mut(path) {
            change.left = left;
            if change.kind == ChangeKind::Removed {
                change.kind = ChangeKind::Changed;
            }
            if change.kind == ChangeKind::Created && kind == ChangeKind::Removed {
                // Made and gone again: nothing of it to undo.
                self.book.changes.remove(path);
            }
            return;
        }
        let original = if kind == ChangeKind::Created {
            None
        } else {
            original
        };
        self.book.changes.insert(
            path.to_path_buf(),
            Change {
                kind,
                by: by.to_owned(),
                original,
                left,
                package: None,
            },
        );
    }

    /// The watched directories' entries now, and the whole of each directory a hook
    /// created (not a package's).
    fn snapshot(&self) -> Snapshot {
        let mut out = Snapshot::new();
        for rel in WATCHED {
            let dir = self.book.root.join(rel);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if *rel == "etc"
                    && NOT_WATCHED.contains(&entry.file_name().to_string_lossy().as_ref())
                {
                    continue;
                }
                if let Some(meta) = Meta::of(&path) {
                    out.insert(path, meta);
                }
            }
        }
        for (path, change) in &self.book.changes {
            let made_dir = change.kind == ChangeKind::Created
                && change.package.is_none()
                && change.left.as_ref().is_some_and(|l| l.kind == Kind::Dir);
            if made_dir {
                list_tree(path, &mut out);
            }
        }
        out
    }

    fn copy_of(&self, path: &Path) -> Result<Option<String>, HostFilesError> {
        let Ok(bytes) = fs::read(path) else {
            return Ok(None);
        };
        // Named by content: a copy a change refers to is never overwritten by a later
        // one of the same path.
        let name = crate::state::hex(&Sha256::digest(&bytes));
        let copy = self.dir.join("copies").join(&name);
        make_private_dir(&self.dir.join("copies"))?;
        crate::state::write_atomic(&copy, &bytes, 0o600).map_err(|source| {
            HostFilesError::Save {
                path: copy.display().to_string(),
                source,
            }
        })?;
        Ok(Some(name))
    }

    fn save(&self) -> Result<(), HostFilesError> {
        make_private_dir(&self.dir)?;
        let path = self.dir.join("book.json");
        let bytes = serde_json::to_vec(&self.book).unwrap_or_default();
        crate::state::write_atomic(&path, &bytes, 0o600).map_err(|source| HostFilesError::Save {
            path: path.display().to_string(),
            source,
        })
    }
}

fn make_private_dir(dir: &Path) -> Result<(), HostFilesError> {
    use std::os::unix::fs::PermissionsExt as _;
    let err = |source| HostFilesError::Save {
        path: dir.display().to_string(),
        source,
    };
    fs::create_dir_all(dir).map_err(err)?;
    fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

fn load(dir: &Path) -> Result<Option<Book>, HostFilesError> {
    let path = dir.join("book.json");
    let Ok(bytes) = fs::read(&path) else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| HostFilesError::Load {
            path: path.display().to_string(),
            source,
        })
}

/// Every entry under `dir`, bounded.
fn list_tree(dir: &Path, out: &mut Snapshot) {
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            seen += 1;
            if seen > CREATED_DIR_LIMIT {
                return;
            }
            let path = entry.path();
            if let Some(meta) = Meta::of(&path) {
                if meta.kind == Kind::Dir {
                    stack.push(path.clone());
                }
                out.insert(path, meta);
            }
        }
    }
}

/// The packages that own these paths, by `dpkg-query -S` (one call): each path as
/// it is on the host (under `root`, the host's root in tests).
fn owners(root: &Path, paths: &[PathBuf], spawner: &Spawner) -> Vec<(PathBuf, String)> {
    if paths.is_empty() || crate::system::process::which("dpkg-query").is_none() {
        return Vec::new();
    }
    let host_path = |p: &Path| Path::new("/").join(p.strip_prefix(root).unwrap_or(p));
    let asked: BTreeMap<PathBuf, &PathBuf> = paths.iter().map(|p| (host_path(p), p)).collect();
    let out = spawner
        .cmd("dpkg-query")
        .arg("-S")
        .args(asked.keys())
        .capture()
        .allow_failure()
        .run();
    let Ok(out) = out else {
        return Vec::new();
    };
    // "pkg1, pkg2: /path" for each path a package owns; unknown ones go to stderr.
    out.stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(packages, path)| {
            let ours = asked.get(Path::new(path.trim()))?;
            Some(((*ours).clone(), packages.trim().to_owned()))
        })
        .collect()
}

/// What clean did with one path, said in its output and its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Removed,
    Restored,
    /// Left as it is, and why.
    Left(String),
}

/// One line of clean's account of the host.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub path: PathBuf,
    pub by: String,
    pub outcome: Outcome,
}

impl Done {
    pub(crate) fn line(&self) -> String {
        match &self.outcome {
            Outcome::Removed => format!(
                "removed {} (a hook made it: {})",
                self.path.display(),
                self.by
            ),
            Outcome::Restored => format!(
                "put back {} as it was before the stack (a hook changed it: {})",
                self.path.display(),
                self.by
            ),
            Outcome::Left(why) => format!("left {}: {why} ({})", self.path.display(), self.by),
        }
    }
}

/// clean: removes what hooks created and puts back what they changed or removed,
/// unless it changed since; then forgets the book. Deepest paths first, so a
/// directory a hook made is emptied before it is removed.
pub(crate) fn restore(state_dir: &Path) -> Result<Vec<Done>, HostFilesError> {
    let dir = state_dir.join(FOLDER);
    let Some(book) = load(&dir)? else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<&PathBuf> = book.changes.keys().collect();
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut done = Vec::new();
    for path in paths {
        let change = &book.changes[path];
        if let Some(outcome) = undo(&dir, path, change) {
            done.push(Done {
                path: path.clone(),
                by: change.by.clone(),
                outcome,
            });
        }
    }
    let _ = fs::remove_dir_all(&dir);
    Ok(done)
}

/// Undoes one change; `None` when there was nothing to do (its owner removed it).
fn undo(dir: &Path, path: &Path, change: &Change) -> Option<Outcome> {
    let now = Left::of(path);
    if let Some(package) = &change.package {
        return now.map(|_| {
            Outcome::Left(format!(
                "package {package} installed it; it goes with the package"
            ))
        });
    }
    match change.kind {
        ChangeKind::Created => {
            let now = now?;
            if now.kind == Kind::Dir {
                return Some(match fs::remove_dir(path) {
                    Ok(()) => Outcome::Removed,
                    Err(_) => Outcome::Left(
                        "it holds files no hook made, or that changed since the stack".into(),
                    ),
                });
            }
            if Some(&now) != change.left.as_ref() {
                return Some(Outcome::Left(
                    "it changed since the stack; remove it yourself if it is not needed".into(),
                ));
            }
            Some(match fs::remove_file(path) {
                Ok(()) => Outcome::Removed,
                Err(e) => Outcome::Left(format!("could not remove it: {e}")),
            })
        }
        ChangeKind::Changed | ChangeKind::Removed => {
            if now != change.left {
                return Some(Outcome::Left(
                    "it changed since the stack; the version from before the stack was not put back"
                        .into(),
                ));
            }
            let Some(original) = &change.original else {
                return Some(Outcome::Left(format!(
                    "no copy was kept (larger than {} KiB or unreadable); it was not put back",
                    COPY_LIMIT / 1024
                )));
            };
            Some(match put_back(dir, path, original) {
                Ok(()) => Outcome::Restored,
                Err(e) => Outcome::Left(format!("could not put it back: {e}")),
            })
        }
    }
}

/// Writes the original at `path` again: content (or link target), mode, owner.
fn put_back(dir: &Path, path: &Path, original: &Original) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = &original.meta;
    match meta.kind {
        Kind::Link => {
            let target = meta.link.clone().unwrap_or_default();
            let _ = fs::remove_file(path);
            std::os::unix::fs::symlink(&target, path)?;
            let _ = std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid));
            Ok(())
        }
        Kind::File => {
            let Some(copy) = &original.copy else {
                return Err(std::io::Error::other("no copy was kept"));
            };
            let bytes = fs::read(dir.join("copies").join(copy))?;
            crate::state::write_atomic(path, &bytes, meta.mode)?;
            std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid))?;
            fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
        }
        // A directory's contents were not kept: only what it was (mode, owner) comes back.
        Kind::Dir => {
            if !path.is_dir() {
                return Err(std::io::Error::other(
                    "a hook removed this directory; its contents were not kept",
                ));
            }
            std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid))?;
            fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode))
        }
        Kind::Other => Err(std::io::Error::other("not a file, link or directory")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::system::process::{LineSink, Stream};

    struct Quiet;
    impl LineSink for Quiet {
        fn line(&self, _source: &str, _stream: Stream, _line: &str) {}
    }

    /// A fake host with a user's file in `etc`, and a watcher on it.
    fn host() -> (tempfile::TempDir, PathBuf, HostWatch, Spawner) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc/sudoers.d")).unwrap();
        fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        let watch = HostWatch::open(&dir.path().join("state"), &root).unwrap();
        (dir, root, watch, Spawner::new(Arc::new(Quiet)))
    }

    fn hook(watch: &mut HostWatch, spawner: &Spawner, f: impl FnOnce()) -> Vec<PathBuf> {
        watch.before_hook().unwrap();
        f();
        watch
            .after_hook("hook stack install: plugin t", spawner)
            .unwrap()
    }

    #[test]
    fn a_users_file_a_hook_removed_is_put_back_with_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let (dir, root, mut watch, spawner) = host();
        let hosts = root.join("etc/hosts");
        fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o640)).unwrap();
        let touched = hook(&mut watch, &spawner, || fs::remove_file(&hosts).unwrap());
        assert_eq!(touched, vec![hosts.clone()]);
        let done = restore(&dir.path().join("state")).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].outcome, Outcome::Restored);
        assert_eq!(fs::read_to_string(&hosts).unwrap(), "127.0.0.1 localhost\n");
        assert_eq!(fs::metadata(&hosts).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn accounts_are_not_watched_and_a_change_between_hooks_is_not_a_hooks() {
        let (dir, root, mut watch, spawner) = host();
        let passwd = root.join("etc/passwd");
        let touched = hook(&mut watch, &spawner, || {
            fs::write(&passwd, "svc:x:999:999::/:/bin/false\n").unwrap();
        });
        assert!(touched.is_empty(), "{touched:?}");
        // Our own service writes between hook points: not recorded, and the copy a
        // later hook's change is undone to is the file as the service left it.
        let hosts = root.join("etc/hosts");
        fs::write(&hosts, "10.0.0.1 controller\n").unwrap();
        hook(&mut watch, &spawner, || {
            fs::write(&hosts, "10.0.0.1 controller\n10.0.0.2 hook\n").unwrap();
        });
        let done = restore(&dir.path().join("state")).unwrap();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(fs::read_to_string(&hosts).unwrap(), "10.0.0.1 controller\n");
        assert!(passwd.is_file());
    }

    #[test]
    fn a_large_file_a_hook_changed_is_left_and_said_without_a_copy() {
        let (dir, root, mut watch, spawner) = host();
        let big = root.join("etc/big.db");
        let size = usize::try_from(COPY_LIMIT).unwrap() + 1;
        fs::write(&big, vec![b'a'; size]).unwrap();
        hook(&mut watch, &spawner, || fs::write(&big, b"small").unwrap());
        let done = restore(&dir.path().join("state")).unwrap();
        assert!(
            matches!(&done[0].outcome, Outcome::Left(why) if why.contains("no copy was kept")),
            "{done:?}"
        );
        assert_eq!(fs::read(&big).unwrap(), b"small");
    }
}
