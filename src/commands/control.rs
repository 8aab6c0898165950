//! `devstack restart|stop|start NAME...`: the developer's daily loop on a stacked
//! cloud. NAME is a process as the state records it, by DevStack's service names
//! (`n-cpu`, `q-svc`, `c-vol`, `key`, a plugin's `run_process` name; `n-*` matches
//! several). Each is driven by the supervisor that started it: ours (stopped and
//! started again exactly as the record says: command, environment, user, working
//! directory) or systemd (`systemctl restart devstack@NAME.service`). The code and
//! config a restarted process reads are what is on disk now, so an edit to an
//! editable checkout (`NOVA_REPO=/path`, `LIBS_FROM_GIT`, a plugin's
//! `setup_develop`) is live after the restart.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::state::{Backend, Ledger, ProcessKind, ProcessRecord, RunLock};
use crate::system::supervisor::{
    OwnSupervisor, ProcStatus, ProcessSpec, Supervisor, SystemdSupervisor,
};
use crate::ui::report::Report;

/// What to do to each named process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Restart,
    Stop,
    Start,
}

impl Action {
    fn done(self) -> &'static str {
        match self {
            Self::Restart => "restarted",
            Self::Stop => "stopped",
            Self::Start => "started",
        }
    }
}

/// How long a started process must stay up before it counts as started (a crash
/// on import or on a bad config shows within this).
const SETTLE: Duration = Duration::from_secs(2);
/// How long a process that records where it listens gets to listen there again
/// (DevStack's SERVICE_TIMEOUT is 60 s; a loaded 2-core machine needs more).
const LISTEN_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    #[error("{name} did not stay up after it was {done}")]
    Died {
        name: String,
        done: &'static str,
        log: String,
        tail: Vec<String>,
    },
    #[error("{name} was {done} but does not listen on {address} after {secs} s")]
    NotListening {
        name: String,
        done: &'static str,
        address: String,
        secs: u64,
    },
}

fn supervisor_for(record: &ProcessRecord) -> Box<dyn Supervisor> {
    match record.backend {
        Backend::Own => Box::new(OwnSupervisor::default()),
        Backend::Systemd => Box::new(SystemdSupervisor::default()),
    }
}

/// `pattern` with `*` matching any run of characters (DevStack's `n-*`).
fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The recorded processes the names select, each once, in the order given.
fn select(ledger: &Ledger, names: &[String]) -> Result<Vec<(ProcessKind, ProcessRecord)>, Report> {
    let mut all: Vec<(ProcessKind, ProcessRecord)> = Vec::new();
    for kind in [ProcessKind::Daemon, ProcessKind::Service] {
        all.extend(ledger.processes(kind).into_iter().map(|r| (kind, r)));
    }
    let mut chosen: Vec<(ProcessKind, ProcessRecord)> = Vec::new();
    let mut unknown = Vec::new();
    for name in names {
        let found: Vec<&(ProcessKind, ProcessRecord)> =
            all.iter().filter(|(_, r)| matches(name, &r.name)).collect();
        if found.is_empty() {
            unknown.push(name.as_str());
        }
        for (kind, record) in found {
            if !chosen.iter().any(|(_, r)| r.name == record.name) {
                chosen.push((*kind, record.clone()));
            }
        }
    }
    if unknown.is_empty() {
        return Ok(chosen);
    }
    let known: Vec<&str> = all.iter().map(|(_, r)| r.name.as_str()).collect();
    Err(Report {
        headline: format!("no recorded process named {}", unknown.join(", ")),
        details: vec![(
            "known".into(),
            if known.is_empty() {
                "none: nothing is stacked here".into()
            } else {
                known.join(" ")
            },
        )],
        tail: Vec::new(),
        hint: Some("use DevStack's service names as `devstack status` lists them".into()),
    })
}

/// Has the process come back: still running after [`SETTLE`], and listening where
/// it records that it listens (a TCP `host:port` or a uWSGI socket path)?
fn check_up(
    sup: &dyn Supervisor,
    record: &ProcessRecord,
    action: Action,
) -> Result<(), ControlError> {
    let died = || ControlError::Died {
        name: record.name.clone(),
        done: action.done(),
        log: record.log.display().to_string(),
        tail: crate::services::daemon::log_tail(&record.log, 10),
    };
    let t0 = Instant::now();
    while t0.elapsed() < SETTLE {
        if !matches!(sup.status(record), ProcStatus::Running { .. }) {
            return Err(died());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(address) = record.address.as_deref() else {
        return Ok(());
    };
    while !listens(address) {
        if !matches!(sup.status(record), ProcStatus::Running { .. }) {
            return Err(died());
        }
        if t0.elapsed() >= LISTEN_TIMEOUT {
            return Err(ControlError::NotListening {
                name: record.name.clone(),
                done: action.done(),
                address: address.to_owned(),
                secs: LISTEN_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok(())
}

fn listens(address: &str) -> bool {
    if address.starts_with('/') {
        return UnixStream::connect(address).is_ok();
    }
    crate::system::net::connect(address, Duration::from_secs(2)).is_ok()
}

fn report(err: &ControlError) -> Report {
    match err {
        ControlError::Died { log, tail, .. } => Report {
            headline: err.to_string(),
            details: vec![("log".into(), log.clone())],
            tail: tail.clone(),
            hint: Some("fix what its log says, then `devstack start NAME`".into()),
        },
        ControlError::NotListening { .. } => Report {
            headline: err.to_string(),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some("`devstack logs NAME` shows what it is doing".into()),
        },
    }
}

/// Runs `action` on every process `names` select; the state records the new pids.
pub(crate) fn control(
    top_dir: &Path,
    action: Action,
    names: &[String],
) -> anyhow::Result<ExitCode> {
    // Not while a stack, unstack or clean of this tree runs: they own the processes.
    let _lock = RunLock::acquire(top_dir)?;
    let mut ledger = Ledger::load(top_dir)?;
    let chosen = select(&ledger, names)?;
    let mut failures = Vec::new();
    for (kind, record) in chosen {
        let sup = supervisor_for(&record);
        let running = matches!(sup.status(&record), ProcStatus::Running { .. });
        let result = match action {
            Action::Stop => sup.stop(&record).map(|()| ProcessRecord {
                pid: None,
                ..record.clone()
            }),
            Action::Start if running => {
                println!("{}: already running", record.name);
                continue;
            }
            Action::Restart if running => sup.restart(&record),
            Action::Start | Action::Restart => {
                ProcessSpec::of_record(&record).and_then(|spec| sup.start(&spec))
            }
        };
        let new = match result {
            Ok(new) => new,
            Err(e) => {
                failures.push(anyhow::Error::new(e));
                continue;
            }
        };
        ledger.record_process(kind, new.clone());
        ledger.save()?;
        if action != Action::Stop
            && let Err(e) = check_up(sup.as_ref(), &new, action)
        {
            failures.push(anyhow::Error::new(report(&e)));
            continue;
        }
        let pid = new.pid.map_or_else(|| "-".into(), |p| p.to_string());
        let log = match new.backend {
            Backend::Own => new.log.display().to_string(),
            Backend::Systemd => {
                format!("journalctl -u {}", new.unit.as_deref().unwrap_or(&new.name))
            }
        };
        println!("{}: {} (pid {pid}; log {log})", new.name, action.done());
    }
    let count = failures.len();
    let mut failures = failures.into_iter();
    match failures.next() {
        None => Ok(ExitCode::SUCCESS),
        Some(first) if count == 1 => Err(first),
        Some(first) => {
            for other in failures {
                crate::ui::report::print_error(&other);
            }
            Err(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_devstacks_service_groups() {
        assert!(matches("n-cpu", "n-cpu"));
        assert!(!matches("n-cpu", "n-cpu2"));
        assert!(matches("n-*", "n-cpu"));
        assert!(matches("n-*", "n-api-meta"));
        assert!(!matches("n-*", "q-svc"));
        assert!(matches("*-api", "c-api"));
        assert!(!matches("*-api", "n-api-meta"));
        assert!(matches("q-*-agent", "q-ovn-metadata-agent"));
        assert!(matches("*", "anything"));
        assert!(!matches("c-*-x", "c-x"));
    }
}
