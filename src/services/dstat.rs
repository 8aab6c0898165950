//! `dstat` (DevStack's name): the machine's resource usage once a second while the
//! cloud runs, as a readable table in `$LOGDIR/dstat.log` and a CSV in
//! `$LOGDIR/dstat-csv.log` (`tools/dstat.sh`). Debian 12 ships dstat 0.7.4 itself
//! (not pcp's replacement), top-process plugins included. Started with layer 1, as
//! DevStack starts it first: the log then covers the whole stack.

use crate::context::ServiceCtx;
use crate::services::{Descriptor, Layer, Role, Service, ServiceError, daemon, oslo};

pub(crate) const NAME: &str = "dstat";

pub(crate) struct Dstat;

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    role: Role::Any,
    packages: &["dstat"],
    processes: &[NAME],
    ..Descriptor::named(NAME, Layer::Infra)
};

/// The CSV file of the second dstat.
fn csv_log(s: &crate::config::settings::Settings) -> std::path::PathBuf {
    s.path("LOGDIR").join("dstat-csv.log")
}

impl Service for Dstat {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let script = cx.host.top_dir.join("tools/dstat.sh");
        let logdir = cx.host.settings.path("LOGDIR");
        let cmd = format!("exec bash {} {}", script.display(), logdir.display());
        let record = oslo::start_process(cx.host, NAME, NAME, &cmd, &[], None)?;
        if !oslo::alive(cx.host, &record) {
            return Err(ServiceError::NotReady {
                service: NAME.into(),
                what: "dstat exited".into(),
                timeout_secs: 0,
                log: Some(record.log.clone()),
                tail: daemon::log_tail(&record.log, daemon::LOG_TAIL),
            });
        }
        cx.host.ledger.set_choice(
            NAME,
            format!(
                "resource usage each second in {} and {}",
                record.log.display(),
                csv_log(&cx.host.settings).display()
            ),
        );
        Ok(())
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        oslo::stop_processes(cx.host, NAME, DESCRIPTOR.processes)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        daemon::remove_daemon_log(&cx.host.settings, NAME);
        let _ = fs_err::remove_file(csv_log(&cx.host.settings));
        cx.host.ledger.forget_choice(NAME);
        Ok(())
    }
}
