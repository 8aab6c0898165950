//! Host daemons: the servers a cloud needs on the machine (MariaDB, PostgreSQL,
//! RabbitMQ, memcached today; libvirtd, virtlogd, the OVS and OVN daemons and an
//! iSCSI target next). Each is data plus a probe ([`Daemon`]): its unit, its ports,
//! how to run it, how to know it answers. [`start`] and [`stop`] do the rest the
//! same way for all: the distro's unit when systemd is PID 1; otherwise ours under
//! the supervisor (recorded in the ledger as a daemon and a system service), a
//! foreign program on its port refused, a running one of ours reused, and a wait
//! until a real client round trip works.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::settings::Settings;
use crate::context::Host;
use crate::services::ServiceError;
use crate::state::{ProcessKind, ProcessRecord};
use crate::system::process::Cmd;
use crate::system::supervisor::{
    OwnSupervisor, ProcStatus, ProcessSpec, Supervisor, systemd_is_pid1,
};

/// A daemon's names.
#[derive(Debug)]
pub(crate) struct Names {
    /// Its name in the ledger, `status` and `logs` (mysql, rabbit, libvirtd).
    pub(crate) name: &'static str,
    /// The distro's systemd unit (used when systemd is PID 1).
    pub(crate) unit: &'static str,
    /// What [`Daemon::probe`] checks, for messages ("mariadb SELECT 1").
    pub(crate) probe_what: &'static str,
}

/// One host daemon: what differs between them.
pub(crate) trait Daemon: Sync {
    fn names(&self) -> &'static Names;
    /// The address it listens on and its ports: a foreign program there is refused.
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>);
    /// Before the first launch: data and runtime directories, helper daemons.
    fn prepare(&self, _host: &mut Host) -> Result<(), ServiceError> {
        Ok(())
    }
    /// How our supervisor runs it (command, user, log, address).
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError>;
    /// Under systemd, before the distro's unit starts: write into the distro's config
    /// what our own launch gives on the command line (the unit reads only its config).
    /// True when the config changed, so a unit already running is restarted.
    fn configure_unit(&self, _host: &mut Host) -> Result<bool, ServiceError> {
        Ok(false)
    }
    /// A real client round trip, with its own short timeout.
    fn probe(&self, host: &Host) -> Result<(), String>;
    /// How long its first answer may take (libvirtd probes QEMU on its first start).
    fn ready_timeout(&self, settings: &Settings) -> Duration {
        service_timeout(settings)
    }
    /// Its processes under our supervisor, in stop order (rabbit before its epmd).
    fn processes(&self) -> Vec<&'static str> {
        vec![self.names().name]
    }
}

/// Starts `daemon` unless ours already runs (or, under systemd, its unit), and waits
/// until its probe answers.
pub(crate) fn start(host: &mut Host, daemon: &dyn Daemon) -> Result<(), ServiceError> {
    let Names {
        name,
        unit,
        probe_what,
    } = daemon.names();
    let probe = |h: &Host| daemon.probe(h);
    // Debian's maintainer scripts started the unit at install, with the distro's
    // config: `start` alone would keep that one.
    if use_systemctl() && daemon.configure_unit(host)? {
        systemctl(host, name, "restart", unit)?;
    }
    if start_unit_or_reuse(host, name, unit, probe_what, probe)? {
        return Ok(());
    }
    let (addr, ports) = daemon.listen(&host.settings);
    check_ports(name, &addr, &ports)?;
    daemon.prepare(host)?;
    let spec = daemon.spec(host)?;
    let timeout = daemon.ready_timeout(&host.settings);
    launch_ready(host, name, &spec, timeout, probe_what, probe)
}

/// Stops `daemon`: its unit under systemd (when we started it), else our processes.
pub(crate) fn stop(host: &mut Host, daemon: &dyn Daemon) -> Result<(), ServiceError> {
    let names = daemon.names();
    stop_daemon(host, names.name, names.unit, &daemon.processes())
}

/// Each readiness probe gets this long (the whole wait gets SERVICE_TIMEOUT).
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_INTERVAL: Duration = Duration::from_millis(150);
/// Lines of a server's own log shown when it does not come up.
pub(crate) const LOG_TAIL: usize = 15;

/// The record of a daemon we started, if the ledger has one (layer-1 daemons are
/// not the cloud's processes: plain unstack must leave them running).
pub(crate) fn recorded(host: &Host, name: &str) -> Option<ProcessRecord> {
    host.ledger.process(ProcessKind::Daemon, name).cloned()
}

/// Our daemon `name`, when it is recorded and still running.
pub(crate) fn running(host: &Host, name: &str) -> Option<ProcessRecord> {
    recorded(host, name).filter(|r| {
        matches!(
            OwnSupervisor::default().status(r),
            ProcStatus::Running { .. }
        )
    })
}

/// Does something accept connections on HOST:PORT?
pub(crate) fn port_taken(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// Fails with PortInUse when a foreign program holds one of the ports.
pub(crate) fn check_ports(service: &str, host: &str, ports: &[u16]) -> Result<(), ServiceError> {
    for &port in ports {
        if port_taken(host, port) {
            return Err(ServiceError::PortInUse {
                service: service.into(),
                host: host.into(),
                port,
            });
        }
    }
    Ok(())
}

/// Starts a daemon under our supervisor and records it as a system service.
pub(crate) fn launch(
    host: &mut Host,
    service: &str,
    spec: &ProcessSpec,
) -> Result<ProcessRecord, ServiceError> {
    host.log.note(&format!(
        "{service}: starting {} (log {})",
        spec.name,
        spec.log.display()
    ));
    let record = OwnSupervisor::default()
        .start(spec)
        .map_err(|e| ServiceError::caused(service, format!("starting {}", spec.name), e))?;
    host.ledger
        .record_process(ProcessKind::Daemon, record.clone());
    host.ledger.record_system_service(service);
    host.checkpoint();
    Ok(record)
}

/// The first step of starting a layer-1 daemon `service`: on a systemd machine the
/// distro's `unit` is started (and recorded); else ours, when it still runs, is
/// reused. Either is waited for with `probe` (`what` names it). False: neither, so
/// launch it.
pub(crate) fn start_unit_or_reuse(
    host: &mut Host,
    service: &str,
    unit: &str,
    what: &str,
    probe: impl Fn(&Host) -> Result<(), String>,
) -> Result<bool, ServiceError> {
    let timeout = service_timeout(&host.settings);
    let log = daemon_log(&host.settings, service);
    let record = if use_systemctl() {
        systemctl(host, service, "start", unit)?;
        host.ledger.record_system_service(service);
        None
    } else if let Some(record) = running(host, service) {
        host.log
            .note(&format!("{service}: ours is already running; reusing it"));
        Some(record)
    } else {
        return Ok(false);
    };
    wait_ready(service, record.as_ref(), &log, timeout, what, || {
        probe(host)
    })?;
    Ok(true)
}

/// Stops a layer-1 daemon `service`: the distro's `unit` on a systemd machine (when
/// we started it), else our processes `names`, in order.
pub(crate) fn stop_daemon(
    host: &mut Host,
    service: &str,
    unit: &str,
    names: &[&str],
) -> Result<(), ServiceError> {
    if use_systemctl() {
        if host.ledger.forget_system_service(service) {
            systemctl(host, service, "stop", unit)?;
        }
        return Ok(());
    }
    for name in names {
        halt(host, service, name)?;
    }
    host.ledger.forget_system_service(service);
    host.checkpoint();
    Ok(())
}

/// Removes a daemon's own log and its pidfile (clean).
pub(crate) fn remove_daemon_log(s: &Settings, name: &str) {
    let log = daemon_log(s, name);
    let _ = fs_err::remove_file(crate::system::supervisor::pidfile(&log, name));
    let _ = fs_err::remove_file(log);
}

/// Stops our daemon `name` (if recorded) and forgets it.
pub(crate) fn halt(host: &mut Host, service: &str, name: &str) -> Result<(), ServiceError> {
    if let Some(record) = recorded(host, name) {
        host.log.note(&format!("{service}: stopping {name}"));
        OwnSupervisor::default()
            .stop(&record)
            .map_err(|e| ServiceError::caused(service, format!("stopping {name}"), e))?;
        host.ledger.forget_process(ProcessKind::Daemon, name);
    }
    host.checkpoint();
    Ok(())
}

/// The last lines of a log file.
pub(crate) fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = fs_err::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// Runs a readiness wait now, or, during the start step, leaves it for the step's
/// end (see [`Host::deferred_waits`]): what needs the service ready comes after it.
pub(crate) fn wait_or_defer(
    host: &mut Host,
    service: &str,
    wait: impl FnOnce(&mut Host) -> Result<(), ServiceError> + 'static,
) -> Result<(), ServiceError> {
    match host.deferred_waits.as_mut() {
        Some(waits) => {
            waits.push((
                service.to_owned(),
                Box::new(move |host: &mut Host| wait(host).map_err(Into::into)),
            ));
            Ok(())
        }
        None => wait(host),
    }
}

/// SERVICE_TIMEOUT as a duration.
pub(crate) fn service_timeout(s: &Settings) -> Duration {
    Duration::from_secs(s.number("SERVICE_TIMEOUT", 60).max(1))
}

/// The one readiness loop: polls `probe` every [`PROBE_INTERVAL`] until it answers,
/// `died` says the process is gone, or `timeout` passes; the failure carries the
/// last lines of `log` and the last probe's answer. Returns how long it took.
pub(crate) fn wait_until(
    service: &str,
    what: &str,
    log: &Path,
    timeout: Duration,
    probe: impl FnMut() -> Result<(), String>,
    died: impl Fn() -> bool,
) -> Result<Duration, ServiceError> {
    crate::timing::timed(crate::timing::Bucket::WaitForService, || {
        poll_until(service, what, log, timeout, probe, died)
    })
}

/// [`wait_until`]'s loop.
fn poll_until(
    service: &str,
    what: &str,
    log: &Path,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<(), String>,
    died: impl Fn() -> bool,
) -> Result<Duration, ServiceError> {
    let t0 = Instant::now();
    loop {
        let last = match probe() {
            Ok(()) => return Ok(t0.elapsed()),
            Err(e) => e,
        };
        let died = died();
        if died || t0.elapsed() >= timeout {
            let mut tail = log_tail(log, LOG_TAIL);
            if !last.is_empty() {
                tail.push(format!("(last probe: {last})"));
            }
            return Err(ServiceError::NotReady {
                service: service.into(),
                what: if died {
                    format!("{what}; the process exited")
                } else {
                    what.into()
                },
                timeout_secs: timeout.as_secs(),
                log: Some(log.to_path_buf()),
                tail,
            });
        }
        std::thread::sleep(PROBE_INTERVAL);
    }
}

/// Polls `probe` until it succeeds or `timeout` passes. When the daemon exits on the
/// way, fails at once. Either failure carries the tail of the daemon's own log.
/// Starts a server under our supervisor and waits until `probe` answers (with the
/// tail of the server's own log when it does not).
pub(crate) fn launch_ready(
    host: &mut Host,
    service: &str,
    spec: &ProcessSpec,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut(&Host) -> Result<(), String>,
) -> Result<(), ServiceError> {
    let record = launch(host, service, spec)?;
    let host = &*host;
    wait_ready(service, Some(&record), &spec.log, timeout, what, || {
        probe(host)
    })
}

pub(crate) fn wait_ready(
    service: &str,
    record: Option<&ProcessRecord>,
    log: &Path,
    timeout: Duration,
    what: &str,
    probe: impl FnMut() -> Result<(), String>,
) -> Result<(), ServiceError> {
    let died = || {
        record.is_some_and(|r| {
            !matches!(
                OwnSupervisor::default().status(r),
                ProcStatus::Running { .. }
            )
        })
    };
    wait_until(service, what, log, timeout, probe, died).map(|_| ())
}

/// A probe by a client program: succeeds when it exits 0 within [`PROBE_TIMEOUT`].
pub(crate) fn probe_cmd(cmd: &Cmd) -> Result<(), String> {
    cmd.clone()
        .timeout(PROBE_TIMEOUT)
        .capture()
        .run()
        .map(|_| ())
        .map_err(|e| {
            let tail = e.tail().last().cloned().unwrap_or_default();
            format!("{e} {tail}")
        })
}

/// A layer-1 server's `Service::stop`: DevStack stops layer 1 only with `unstack
/// --all`, and only a server this stack started (`ours`). clean first removes what
/// stack made inside it (`drop_created`; a failure is a warning) while it still runs.
pub(crate) fn stop_layer1(
    host: &mut Host,
    daemon: &dyn Daemon,
    all: bool,
    ours: bool,
    drop_created: impl FnOnce(&mut Host) -> Result<(), ServiceError>,
) -> Result<(), ServiceError> {
    if !all || !ours {
        return Ok(());
    }
    if host.mode == crate::context::Mode::Clean && running(host, daemon.names().name).is_some() {
        if let Err(e) = drop_created(host) {
            host.warn(&e.to_string());
        }
    }
    stop(host, daemon)
}

/// Each ovs-vsctl/ovn-*ctl call gets this long.
pub(crate) const CTL_TIMEOUT: Duration = Duration::from_secs(10);

/// A daemon's control client (`ovs-vsctl`, `ovn-nbctl` ...) bounded twice: its own
/// `--timeout` against a daemon that does not answer, ours a second later.
pub(crate) fn ctl(host: &Host, program: &str, timeout: Duration) -> Cmd {
    host.cmd(program)
        .arg(format!("--timeout={}", timeout.as_secs()))
        .timeout(timeout + Duration::from_secs(1))
        .label(program)
}

/// `program`'s argv as root: itself when we are root, else through `sudo -n`.
pub(crate) fn privileged(program: &str) -> Vec<String> {
    if nix::unistd::geteuid().is_root() {
        vec![program.to_owned()]
    } else {
        vec!["sudo".into(), "-n".into(), program.to_owned()]
    }
}

/// `start_service`/`stop_service` on a systemd machine: the distro's unit.
pub(crate) fn systemctl(
    host: &Host,
    service: &str,
    action: &str,
    unit: &str,
) -> Result<(), ServiceError> {
    let mut argv = privileged("systemctl");
    argv.extend([action.to_owned(), unit.to_owned()]);
    host.cmd(&argv[0])
        .args(&argv[1..])
        .timeout(Duration::from_secs(180))
        .run()
        .map(|_| ())
        .map_err(|source| ServiceError::Process {
            service: service.into(),
            what: format!("systemctl {action} {unit}"),
            source,
        })
}

/// Is this a systemd machine (system services go through systemctl)?
pub(crate) fn use_systemctl() -> bool {
    systemd_is_pid1()
}

/// Makes a directory owned by a system user (e.g. /run/mysqld), as the init scripts do.
pub(crate) fn ensure_owned_dir(service: &str, dir: &Path, user: &str) -> Result<(), ServiceError> {
    fs_err::create_dir_all(dir).map_err(|source| ServiceError::Io {
        service: service.into(),
        path: dir.to_path_buf(),
        source,
    })?;
    if let Ok(Some(u)) = nix::unistd::User::from_name(user) {
        let _ = nix::unistd::chown(dir, Some(u.uid), Some(u.gid));
    }
    Ok(())
}

/// Where a daemon's own log goes: `$LOGDIR/NAME.log`.
pub(crate) fn daemon_log(s: &Settings, name: &str) -> PathBuf {
    s.path("LOGDIR").join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        fs_err::write(&log, "line 1\nfatal: cannot bind\n").unwrap();
        let err = wait_ready(
            "x",
            None,
            &log,
            Duration::from_millis(300),
            "x ping",
            || Err("refused".into()),
        )
        .unwrap_err();
        let ServiceError::NotReady { tail, .. } = &err else {
            panic!("{err}")
        };
        assert!(tail.iter().any(|l| l.contains("cannot bind")), "{tail:?}");
    }

    #[test]
    fn a_listening_port_is_taken() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(matches!(
            check_ports("x", "127.0.0.1", &[port]),
            Err(ServiceError::PortInUse { port: p, .. }) if p == port
        ));
        drop(l);
        assert!(!port_taken("127.0.0.1", port));
    }
    #[test]
    fn a_wait_left_for_the_start_step_s_end_runs_when_drained_and_at_once_otherwise() {
        let (_dir, mut host) =
            crate::context::test_host(crate::config::settings::Settings::default());
        let ran = std::rc::Rc::new(std::cell::Cell::new(0));
        let r = ran.clone();
        super::wait_or_defer(&mut host, "svc", move |_| {
            r.set(r.get() + 1);
            Ok(())
        })
        .unwrap();
        assert_eq!(ran.get(), 1, "outside the start step a wait runs at once");
        host.deferred_waits = Some(Vec::new());
        let r = ran.clone();
        super::wait_or_defer(&mut host, "svc", move |_| {
            r.set(r.get() + 1);
            Err(ServiceError::failed("svc", "not ready"))
        })
        .unwrap();
        assert_eq!(ran.get(), 1, "during the start step it waits for the end");
        let waits = host.deferred_waits.take().unwrap();
        assert_eq!(waits.len(), 1);
        for (service, wait) in waits {
            assert_eq!(service, "svc");
            let err = wait(&mut host).unwrap_err();
            assert!(
                err.downcast::<ServiceError>().is_ok(),
                "the service's error comes back"
            );
        }
        assert_eq!(ran.get(), 2);
    }
}
