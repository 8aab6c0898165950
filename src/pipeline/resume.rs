//! A re-stack of a running, unchanged cloud: when nothing that shapes the cloud
//! changed since the last successful stack and every process it started still runs,
//! the initialisation and start steps are skipped (hooks still run: plugins expect
//! their calls). Anything else, and the steps run as on a first stack.

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

/// True when the last run was a successful stack with this fingerprint and every
/// process the state records is running.
pub(super) fn unchanged_and_running(
    run: &Run,
    previous: Option<&RunRecord>,
    fingerprint: &str,
) -> bool {
    let ledger = &run.host.ledger;
    let last_ok = previous.is_some_and(|r| r.command == "stack" && r.outcome == Outcome::Ok);
    let processes = ledger.processes(ProcessKind::Service);
    if !last_ok || ledger.fact(FACT) != Some(fingerprint) || processes.is_empty() {
        return false;
    }
    processes.iter().all(|record| {
        matches!(
            run.host.supervisor.status(record),
            ProcStatus::Running { .. }
        )
    })
}
