//! Where a run's time went by kind of work, in DevStack's own timing buckets
//! (`run_process`, `pip_install`, `apt-get`, `dbsync`, `osc`, `wait_for_service`):
//! DevStack prints the same table at the end of stack.sh, so a run of ours can be put
//! beside a DevStack log line by line. Child processes are sorted into buckets by
//! what they run; REST calls, process starts and readiness waits are timed where they
//! happen. Process-wide: one run per process.

use std::ffi::OsString;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One of DevStack's timing buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bucket {
    RunProcess,
    PipInstall,
    AptGet,
    DbSync,
    /// DevStack's `osc` (the openstack client); ours are mostly REST calls.
    Osc,
    WaitForService,
}

impl Bucket {
    const ALL: [Self; 6] = [
        Self::RunProcess,
        Self::PipInstall,
        Self::AptGet,
        Self::DbSync,
        Self::Osc,
        Self::WaitForService,
    ];

    /// DevStack's name of the bucket.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::RunProcess => "run_process",
            Self::PipInstall => "pip_install",
            Self::AptGet => "apt-get",
            Self::DbSync => "dbsync",
            Self::Osc => "osc",
            Self::WaitForService => "wait_for_service",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|b| *b == self).unwrap_or(0)
    }
}

/// Time and count per bucket.
static TOTALS: Mutex<[(Duration, u32); 6]> = Mutex::new([(Duration::ZERO, 0); 6]);

/// Adds one piece of work that took `took` to `bucket`.
fn add(bucket: Bucket, took: Duration) {
    if let Ok(mut totals) = TOTALS.lock() {
        let slot = &mut totals[bucket.index()];
        slot.0 += took;
        slot.1 += 1;
    }
}

thread_local! {
    /// How deep in timed work this thread is: only the outermost piece counts, so no
    /// second is counted twice (a readiness wait's own REST calls are the wait's).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `f`, adding its time to `bucket` (unless it runs inside other timed work).
pub(crate) fn timed<T>(bucket: Bucket, f: impl FnOnce() -> T) -> T {
    let depth = DEPTH.with(|d| {
        let depth = d.get();
        d.set(depth + 1);
        depth
    });
    let start = Instant::now();
    let out = f();
    DEPTH.with(|d| d.set(depth));
    if depth == 0 {
        add(bucket, start.elapsed());
    }
    out
}

/// Every bucket with its time and count so far, in DevStack's order.
pub(crate) fn totals() -> Vec<(Bucket, Duration, u32)> {
    let totals = TOTALS.lock().map(|t| *t).unwrap_or_default();
    Bucket::ALL
        .into_iter()
        .map(|b| (b, totals[b.index()].0, totals[b.index()].1))
        .collect()
}

/// The bucket of a child process, by what it runs: apt and dpkg, pip (and uv's pip),
/// a project's schema migration (`*-manage db sync`, `db_sync`, `alembic upgrade`,
/// `*-db-manage upgrade`), the openstack client. `None`: other work.
pub(crate) fn of_command(program: &OsString, args: &[OsString]) -> Option<Bucket> {
    let base = std::path::Path::new(program)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_default();
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // `sudo -u USER prog ...`, `env A=B prog ...`: what runs is the first word after
    // the wrapper's options and assignments.
    if matches!(base.as_str(), "sudo" | "env" | "nice" | "ionice") {
        let at = args
            .iter()
            .position(|a| !a.starts_with('-') && !a.contains('=') && !is_sudo_user(&args, a))?;
        let rest: Vec<OsString> = args[at + 1..].iter().map(OsString::from).collect();
        return of_command(&OsString::from(&args[at]), &rest);
    }
    let has = |word: &str| args.iter().any(|a| a == word);
    match base.as_str() {
        "apt-get" | "apt" | "dpkg" | "apt-cache" => Some(Bucket::AptGet),
        "pip" | "pip3" => Some(Bucket::PipInstall),
        "uv" if has("pip") => Some(Bucket::PipInstall),
        b if b.starts_with("python") && has("pip") => Some(Bucket::PipInstall),
        "openstack" => Some(Bucket::Osc),
        "alembic" if has("upgrade") => Some(Bucket::DbSync),
        b if b.ends_with("-manage") && (has("db_sync") || (has("db") && has("sync"))) => {
            Some(Bucket::DbSync)
        }
        b if b.ends_with("-manage") && has("api_db") && has("sync") => Some(Bucket::DbSync),
        b if b.ends_with("-db-manage") && has("upgrade") => Some(Bucket::DbSync),
        _ => None,
    }
}

/// Is `word` the value of a `-u`/`-g` option of sudo in `args`?
fn is_sudo_user(args: &[String], word: &str) -> bool {
    args.windows(2)
        .any(|w| matches!(w[0].as_str(), "-u" | "-g") && w[1] == word)
}

/// DevStack's "component timing" table for the summary: buckets that saw work, with
/// their count, and the time no bucket accounts for.
pub(crate) fn table(total: Duration) -> String {
    use std::fmt::Write as _;
    let totals = totals();
    let accounted: Duration = totals.iter().map(|(_, took, _)| *took).sum();
    let mut text = String::new();
    for (bucket, took, count) in totals.iter().filter(|(_, _, count)| *count > 0) {
        let _ = writeln!(
            text,
            "  {:<18} {:>7.1} s  ({count})",
            bucket.name(),
            took.as_secs_f64()
        );
    }
    if text.is_empty() {
        return text;
    }
    // Work done in parallel (the database syncs) counts once per thread: then the
    // buckets add up to more than the wall time and nothing is left unaccounted.
    if accounted <= total {
        let _ = writeln!(
            text,
            "  {:<18} {:>7.1} s",
            "unaccounted",
            total.saturating_sub(accounted).as_secs_f64()
        );
    } else {
        let _ = writeln!(
            text,
            "  (work done in parallel counts in full: {:.1} s in all, in {:.1} s of wall time)",
            accounted.as_secs_f64(),
            total.as_secs_f64()
        );
    }
    format!("component timing (DevStack's buckets):\n{text}")
}

#[cfg(test)]
mod tests {
    use super::{Bucket, of_command};
    use std::ffi::OsString;

    fn bucket(line: &str) -> Option<Bucket> {
        let mut words = line.split_whitespace().map(OsString::from);
        let program = words.next().unwrap();
        let args: Vec<OsString> = words.collect();
        of_command(&program, &args)
    }

    #[test]
    fn child_processes_fall_in_devstack_s_buckets_by_what_they_run() {
        assert_eq!(
            bucket("apt-get install -y mariadb-server"),
            Some(Bucket::AptGet)
        );
        assert_eq!(
            bucket("/usr/bin/uv pip install nova"),
            Some(Bucket::PipInstall)
        );
        assert_eq!(bucket("uv venv /opt/stack/data/venv"), None);
        assert_eq!(
            bucket("/opt/venv/bin/python -m pip install x"),
            Some(Bucket::PipInstall)
        );
        assert_eq!(
            bucket("sudo -u stack /opt/venv/bin/nova-manage api_db sync"),
            Some(Bucket::DbSync)
        );
        assert_eq!(bucket("/v/bin/nova-manage db sync"), Some(Bucket::DbSync));
        assert_eq!(bucket("keystone-manage db_sync"), Some(Bucket::DbSync));
        assert_eq!(bucket("keystone-manage fernet_setup"), None);
        assert_eq!(
            bucket("neutron-db-manage --config-file /etc/neutron/neutron.conf upgrade head"),
            Some(Bucket::DbSync)
        );
        assert_eq!(
            bucket("env OS_CLOUD=devstack-admin openstack image list"),
            Some(Bucket::Osc)
        );
        assert_eq!(bucket("mariadb -e select"), None);
    }
}
