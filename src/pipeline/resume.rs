//! A re-stack of a running, unchanged cloud: when nothing that shapes the cloud
//! changed since the last successful stack and every process it started still runs,
//! no step after the settings runs again: hooks of plugins run again from the first
//! step whose inputs changed, and none changed (the settings and the hooks that shape
//! them, override_defaults and source, still run: they are what is compared).
//! Anything else, and the steps run as on a first stack.
//!
//! A re-stack after a failure resumes: every step from the first expensive one
//! (packages) is recorded with the fingerprint of its inputs; when the last stack
//! failed and the inputs are the same, the steps it finished (hooks included) are
//! reused and the run picks up at the one that failed, or earlier when a process
//! a reused step started is no longer running.

use sha2::{Digest, Sha256};

use super::{Run, restorable};
use crate::state::{Outcome, ProcessKind, RunRecord};
use crate::system::supervisor::ProcStatus;

/// The state fact that holds the fingerprint of the last successful stack.
pub(super) const FACT: &str = "stack-fingerprint";

/// What shapes the cloud: this binary, local.conf / localrc, every shell variable
/// after the `source` hook, and the enabled plugins' hook files.
pub(super) fn fingerprint(run: &Run) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION"));
    if let Some(meta) = std::env::current_exe()
        .ok()
        .and_then(|exe| fs_err::metadata(exe).ok())
    {
        h.update(format!("{:?} {}", meta.modified().ok(), meta.len()));
    }
    for file in ["local.conf", "localrc"] {
        h.update(fs_err::read(run.host.top_dir.join(file)).unwrap_or_default());
        h.update([0]);
    }
    for (name, value) in run.host.settings.vars() {
        if restorable(name) {
            h.update(name);
            h.update([0]);
            h.update(value);
            h.update([0]);
        }
    }
    for script in &run.extras {
        h.update(script.path.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(fs_err::read(&script.path).unwrap_or_default());
        h.update([0]);
    }
    for plugin in run.plugins() {
        for file in [
            plugin.override_defaults(),
            plugin.settings(),
            plugin.plugin_sh(),
        ] {
            h.update(fs_err::read(file).unwrap_or_default());
            h.update([0]);
        }
    }
    crate::state::hex(&h.finalize())
}

/// Why a re-stack is not a no-op: `None` when the last run was a successful stack
/// with this fingerprint and every process the state records is running; else the
/// reason, said to the user (a re-stack that runs every step says why).
pub(super) fn why_not_unchanged(
    run: &Run,
    previous: Option<&RunRecord>,
    fingerprint: &str,
) -> Option<String> {
    let ledger = &run.host.ledger;
    let last_ok = previous.is_some_and(|r| r.command == "stack" && r.outcome == Outcome::Ok);
    if !last_ok {
        return Some("the last run was not a successful stack".into());
    }
    if ledger.fact(FACT) != Some(fingerprint) {
        return Some(
            "an input changed since the last stack (local.conf, a setting, a plugin or extras.d file, this binary)"
                .into(),
        );
    }
    let processes = ledger.processes(ProcessKind::Service);
    if processes.is_empty() {
        return Some("no process of the last stack is recorded".into());
    }
    let stopped: Vec<&str> = processes
        .iter()
        .filter(|record| {
            !matches!(
                run.host.supervisor.status(record),
                ProcStatus::Running { .. }
            )
        })
        .map(|record| record.name.as_str())
        .collect();
    (!stopped.is_empty()).then(|| format!("not running: {}", stopped.join(", ")))
}

/// Where a re-stack resumes: the index in `steps` (the command's steps, by title)
/// of the first step to run, when it is after `first` (the first reusable step).
/// `None`: run everything.
pub(super) fn resume_point(
    run: &Run,
    fingerprint: &str,
    steps: &[String],
    first: usize,
) -> Option<usize> {
    let previous = run.previous.as_ref()?;
    if previous.command != "stack" || previous.outcome != Outcome::Failed {
        return None;
    }
    let ledger = &run.host.ledger;
    let mut at = first;
    while at < steps.len() {
        match ledger.step(&steps[at]) {
            Some(r) if r.ok && r.fingerprint == fingerprint => at += 1,
            _ => break,
        }
    }
    if at >= steps.len() {
        return None;
    }
    // A reused step's processes must still run; else resume at that step.
    for (i, step) in steps.iter().enumerate().take(at).skip(first) {
        let Some(record) = ledger.step(step) else {
            continue;
        };
        let gone = record.started.iter().any(|name| {
            let rec = ledger
                .process(ProcessKind::Service, name)
                .or_else(|| ledger.process(ProcessKind::Daemon, name));
            !rec.is_some_and(|r| {
                matches!(run.host.supervisor.status(r), ProcStatus::Running { .. })
            })
        });
        if gone {
            at = i;
            break;
        }
    }
    (at > first).then_some(at)
}
