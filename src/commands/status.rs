//! `devstack status` and `devstack logs`.
//!
//! What "enabled" means here: what the last stack started, as the state records it
//! (layer-1 servers and every `run_process` process). A recorded one that does not
//! run makes the exit status non-zero.

use std::fmt::Write as _;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::state::{Backend, Ledger, ProcessRecord};
use crate::system::supervisor::{OwnSupervisor, ProcStatus, Supervisor, SystemdSupervisor};

fn status_of(record: &ProcessRecord) -> ProcStatus {
    if record.backend == Backend::Systemd {
        SystemdSupervisor::default().status(record)
    } else {
        OwnSupervisor::default().status(record)
    }
}

/// One line per recorded process.
pub(crate) fn render(ledger: &Ledger) -> (String, bool) {
    let mut text = String::new();
    let mut all_ok = true;
    let recs = ledger.all_processes();
    let width = recs.iter().map(|r| r.name.len()).max().unwrap_or(4).max(7);
    let _ = writeln!(
        text,
        "{:<width$}  {:<7}  {:>7}  {:<21}  LOG",
        "SERVICE", "STATUS", "PID", "ADDRESS"
    );
    for r in &recs {
        let (word, pid) = match status_of(r) {
            ProcStatus::Running { pid } => ("running", pid.to_string()),
            ProcStatus::Stopped => {
                all_ok = false;
                ("stopped", "-".into())
            }
            ProcStatus::Failed { .. } => {
                all_ok = false;
                ("failed", "-".into())
            }
        };
        // Under systemd a unit's output goes to journald; $LOGDIR/NAME.log is never written.
        let log = if r.backend == Backend::Systemd {
            let unit = r
                .unit
                .clone()
                .unwrap_or_else(|| crate::system::supervisor::unit_name(&r.name));
            format!("journalctl -u {unit}")
        } else {
            r.log.display().to_string()
        };
        let _ = writeln!(
            text,
            "{:<width$}  {word:<7}  {pid:>7}  {:<21}  {log}",
            r.name,
            r.address.as_deref().unwrap_or("-"),
        );
    }
    // System services managed by systemctl have no record of ours.
    for svc in &ledger.system_services() {
        if !recs.iter().any(|r| &r.name == svc)
            && !recs.iter().any(|r| r.name.starts_with(svc.as_str()))
        {
            let _ = writeln!(
                text,
                "{svc:<width$}  {:<7}  {:>7}  {:<21}  (systemd journal)",
                "system", "-", "-"
            );
        }
    }
    // Which Open vSwitch datapath the stack chose (the userspace one where the
    // kernel has no openvswitch module).
    if let Some(dp) = ledger.fact("ovs-datapath") {
        let what = if dp == "netdev" {
            "userspace, no openvswitch kernel module"
        } else {
            "kernel"
        };
        let _ = writeln!(text, "Open vSwitch datapath: {dp} ({what})");
    }
    if let Some(virt) = ledger.fact(crate::services::libvirt::IN_USE_FACT) {
        let _ = writeln!(text, "hypervisor: libvirt, virt_type {virt}");
    }
    (text, all_ok)
}

pub(crate) fn status(top_dir: &Path) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::load(top_dir)?;
    if ledger.is_empty() {
        println!("nothing recorded: no stack has started a service here");
        return Ok(ExitCode::SUCCESS);
    }
    let (text, ok) = render(&ledger);
    print!("{text}");
    let choices = ledger.choices();
    if !choices.is_empty() {
        println!();
        for (service, choice) in choices {
            println!("{service}: {choice}");
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Prints a service's log; with `follow`, keeps printing as it grows (until killed).
pub(crate) fn logs(top_dir: &Path, service: &str, follow: bool) -> anyhow::Result<ExitCode> {
    let recs = Ledger::load(top_dir)?.all_processes();
    let Some(record) = recs.iter().find(|r| r.name == service) else {
        let names: Vec<&str> = recs.iter().map(|r| r.name.as_str()).collect();
        anyhow::bail!(
            "no log recorded for '{service}' (known: {})",
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    };
    if record.backend == Backend::Systemd {
        return journal(record, follow);
    }
    let mut file = fs_err::File::open(&record.log)?;
    let mut out = std::io::stdout().lock();
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;
    out.write_all(&buf)?;
    out.flush()?;
    if !follow {
        return Ok(ExitCode::SUCCESS);
    }
    let mut pos = file.stream_position()?;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let len = fs_err::metadata(&record.log).map_or(pos, |m| m.len());
        if len < pos {
            // Truncated or replaced: start again from the top.
            file = fs_err::File::open(&record.log)?;
            pos = 0;
        }
        file.seek(SeekFrom::Start(pos))?;
        buf.clear();
        file.read_to_end(&mut buf)?;
        if !buf.is_empty() {
            out.write_all(&buf)?;
            out.flush()?;
            pos += buf.len() as u64;
        }
    }
}

/// Prints each line of a child's output as it comes.
struct Print;

impl crate::system::process::LineSink for Print {
    fn line(&self, _source: &str, _stream: crate::system::process::Stream, line: &str) {
        println!("{line}");
    }
}

/// A systemd unit logs to the journal: `journalctl -u devstack@NAME.service [-f]`,
/// as DevStack's documentation says. Ctrl-C stops journalctl's group with us.
fn journal(record: &ProcessRecord, follow: bool) -> anyhow::Result<ExitCode> {
    crate::system::interrupt::install();
    let unit = record
        .unit
        .clone()
        .unwrap_or_else(|| crate::system::supervisor::unit_name(&record.name));
    let mut cmd = crate::system::process::Cmd::new("journalctl")
        .args(["--no-pager", "-u", unit.as_str()])
        .sink(std::sync::Arc::new(Print))
        .label("journalctl");
    if follow {
        cmd = cmd.arg("-f");
    }
    cmd.run()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_process_that_is_gone_fails_the_status() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::empty(dir.path());
        ledger.record_process(
            crate::state::ProcessKind::Service,
            ProcessRecord {
                name: "p".into(),
                backend: Backend::Own,
                pid: Some(u32::MAX - 2),
                command: "sleep".into(),
                log: "/nonexistent/p.log".into(),
                unit: None,
                address: Some("127.0.0.1:1".into()),
                launch: None,
            },
        );
        let (text, ok) = render(&ledger);
        assert!(!ok);
        assert!(text.lines().nth(1).unwrap().starts_with("p "), "{text}");
        assert!(
            text.contains("stopped")
                && text.contains("127.0.0.1:1")
                && text.contains("/nonexistent/p.log"),
            "{text}"
        );
    }

    #[test]
    fn a_systemd_units_log_is_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::empty(dir.path());
        ledger.record_process(
            crate::state::ProcessKind::Service,
            ProcessRecord {
                name: "n-cond".into(),
                backend: Backend::Systemd,
                pid: None,
                command: "/opt/stack/venv/bin/nova-conductor".into(),
                log: "/opt/stack/logs/n-cond.log".into(),
                unit: Some("devstack@n-cond.service".into()),
                address: None,
                launch: None,
            },
        );
        let (text, _) = render(&ledger);
        assert!(
            text.contains("journalctl -u devstack@n-cond.service")
                && !text.contains("/opt/stack/logs/n-cond.log"),
            "{text}"
        );
    }

    #[test]
    fn the_libvirt_virt_type_in_use_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        let mut ledger = Ledger::empty(dir.path());
        let (text, _) = render(&ledger);
        assert!(!text.contains("hypervisor:"), "{text}");
        ledger.set_fact(
            crate::services::libvirt::IN_USE_FACT,
            "qemu, cpu_mode none (KVM failed: KVM internal error)",
        );
        let (text, ok) = render(&ledger);
        assert!(ok);
        assert!(
            text.contains("hypervisor: libvirt, virt_type qemu, cpu_mode none (KVM failed"),
            "{text}"
        );
    }
}
