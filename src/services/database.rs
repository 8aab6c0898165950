//! What the database backends share (DevStack's lib/database): the backend choice
//! (`DATABASE_TYPE`), connection URLs, admin SQL, `recreate_database`; and the helpers
//! every layer-1 daemon uses: start under our supervisor (recorded in the state as a
//! system service), refuse a port a foreign program holds, wait until a real client
//! round trip works, stop.
//!
//! Secrets never reach a command line: admin SQL that carries a password goes through a
//! file of mode 0600 read by a shell redirection, client passwords through the
//! environment (`MYSQL_PWD`, `PGPASSWORD`).

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::OpenOptionsExt as _;
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

/// Each readiness probe gets this long (the whole wait gets SERVICE_TIMEOUT).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_INTERVAL: Duration = Duration::from_millis(150);
/// Lines of a server's own log shown when it does not come up.
pub const LOG_TAIL: usize = 15;

/// The two backends DevStack knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Mysql,
    Postgresql,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Postgresql => "postgresql",
        }
    }

    /// DevStack's choice: the enabled backend service wins; else `DATABASE_TYPE`.
    pub fn from_settings(s: &Settings) -> Self {
        let pg = s.is_enabled(&["postgresql"]);
        let my = s.is_enabled(&["mysql"]);
        match (my, pg) {
            (false, true) => Self::Postgresql,
            (true, false) => Self::Mysql,
            _ if s.str("DATABASE_TYPE") == "postgresql" => Self::Postgresql,
            _ => Self::Mysql,
        }
    }
}

/// DevStack's `database_connection_url NAME`.
pub fn connection_url(s: &Settings, db: &str) -> String {
    let user = s.get_or("DATABASE_USER", "root");
    let pass = s.str("DATABASE_PASSWORD");
    let host = s.get_or("DATABASE_HOST", "127.0.0.1");
    match Backend::from_settings(s) {
        Backend::Mysql => format!("mysql+pymysql://{user}:{pass}@{host}/{db}?charset=utf8"),
        Backend::Postgresql => {
            format!("postgresql://{user}:{pass}@{host}/{db}?client_encoding=utf8")
        }
    }
}

/// Names that may go into SQL unquoted (DevStack's service databases and users).
pub fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A SQL string literal (passwords are letters and digits, but a user may set any).
pub fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Users the system owns; never created, recorded or dropped by us.
pub fn is_system_user(name: &str) -> bool {
    matches!(
        name,
        "root" | "postgres" | "mysql" | "debian-sys-maint" | "mariadb.sys"
    )
}

fn privileged(program: &str) -> Vec<String> {
    if nix::unistd::geteuid().is_root() {
        vec![program.to_owned()]
    } else {
        vec!["sudo".into(), "-n".into(), program.to_owned()]
    }
}

/// The directory for the 0600 files that carry secrets to clients.
fn private_dir(host: &Host) -> PathBuf {
    let data = host.settings.path("DATA_DIR");
    let base = if data.as_os_str().is_empty() {
        std::env::temp_dir()
    } else {
        data
    };
    base.join("devstack-rs").join("private")
}

/// Runs SQL as the database's administrator (root over MariaDB's socket, the
/// postgres user over peer auth): the text goes through a 0600 file, never argv.
pub fn admin_sql(host: &Host, backend: Backend, sql: &str) -> Result<String, ServiceError> {
    let service = backend.name();
    let dir = private_dir(host);
    let io = |source, path: &Path| ServiceError::Io {
        service: service.into(),
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
    let file = dir.join(format!("sql.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&file)
            .map_err(|e| io(e, &file))?;
        f.write_all(sql.as_bytes()).map_err(|e| io(e, &file))?;
    }
    let client = match backend {
        Backend::Mysql => {
            let mut c = privileged("mariadb");
            c.extend(["--batch", "--skip-column-names", "-u", "root"].map(String::from));
            c
        }
        Backend::Postgresql => {
            let mut c = privileged("runuser");
            c.extend(
                [
                    "-u",
                    "postgres",
                    "--",
                    "psql",
                    "-X",
                    "-q",
                    "-tA",
                    "-v",
                    "ON_ERROR_STOP=1",
                ]
                .map(String::from),
            );
            c
        }
    };
    let result = host
        .cmd("bash")
        .args(["-c", "exec \"$@\" <\"$DS_SQL_FILE\"", "bash"])
        .args(client)
        .env("DS_SQL_FILE", &file)
        .current_dir("/")
        .label(service)
        .capture()
        .timeout(Duration::from_secs(60))
        .run();
    let _ = std::fs::remove_file(&file);
    result
        .map(|o| o.stdout)
        .map_err(|source| ServiceError::Process {
            service: service.into(),
            what: "admin SQL failed".into(),
            source,
        })
}

/// DevStack's `recreate_database NAME`: drop it if it exists, create it (utf8), let
/// `DATABASE_USER` use it; recorded so clean drops it.
pub fn recreate_database(host: &mut Host, db: &str) -> Result<(), ServiceError> {
    let backend = Backend::from_settings(&host.settings);
    if !valid_identifier(db) {
        return Err(ServiceError::failed(
            backend.name(),
            format!("'{db}' is not a valid database name"),
        ));
    }
    let user = host.settings.get_or("DATABASE_USER", "root").to_owned();
    let sql = match backend {
        Backend::Mysql => {
            format!("DROP DATABASE IF EXISTS `{db}`;\nCREATE DATABASE `{db}` CHARACTER SET utf8;\n")
        }
        Backend::Postgresql => {
            let owner = if valid_identifier(&user) {
                format!(" OWNER \"{user}\"")
            } else {
                String::new()
            };
            format!(
                "DROP DATABASE IF EXISTS \"{db}\";\nCREATE DATABASE \"{db}\"{owner} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;\n"
            )
        }
    };
    admin_sql(host, backend, &sql)?;
    host.ledger.record_database(backend.name(), db);
    host.checkpoint();
    Ok(())
}

/// Drops every database and user the state says this backend created (clean).
pub fn drop_created(host: &mut Host, backend: Backend) -> Result<(), ServiceError> {
    let dbs: Vec<String> = host
        .ledger
        .databases(backend.name())
        .into_iter()
        .filter(|d| valid_identifier(d))
        .collect();
    let users: Vec<String> = host
        .ledger
        .db_users(backend.name())
        .into_iter()
        .filter(|u| valid_identifier(u) && !is_system_user(u))
        .collect();
    if dbs.is_empty() && users.is_empty() {
        return Ok(());
    }
    let mut sql = String::new();
    for db in &dbs {
        match backend {
            Backend::Mysql => {
                let _ = writeln!(sql, "DROP DATABASE IF EXISTS `{db}`;");
            }
            Backend::Postgresql => {
                let _ = writeln!(sql, "DROP DATABASE IF EXISTS \"{db}\";");
            }
        }
    }
    for user in &users {
        match backend {
            Backend::Mysql => {
                let _ = writeln!(
                    sql,
                    "DROP USER IF EXISTS '{user}'@'%';\nDROP USER IF EXISTS '{user}'@'localhost';"
                );
            }
            Backend::Postgresql => {
                let _ = writeln!(sql, "DROP ROLE IF EXISTS \"{user}\";");
            }
        }
    }
    admin_sql(host, backend, &sql)?;
    for db in dbs {
        host.ledger.forget_database(backend.name(), &db);
    }
    for user in users {
        host.ledger.forget_db_user(backend.name(), &user);
    }
    host.checkpoint();
    Ok(())
}

// ---------------------------------------------------------------------------------
// Layer-1 daemons

/// The record of a daemon we started, if the ledger has one (layer-1 daemons are
/// not the cloud's processes: plain unstack must leave them running).
pub fn recorded(host: &Host, name: &str) -> Option<ProcessRecord> {
    host.ledger.process(ProcessKind::Daemon, name).cloned()
}

/// Our daemon `name`, when it is recorded and still running.
pub fn running(host: &Host, name: &str) -> Option<ProcessRecord> {
    recorded(host, name).filter(|r| {
        matches!(
            OwnSupervisor::default().status(r),
            ProcStatus::Running { .. }
        )
    })
}

/// Does something accept connections on HOST:PORT?
pub fn port_taken(host: &str, port: u16) -> bool {
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_millis(500)).is_ok())
}

/// Fails with PortInUse when a foreign program holds one of the ports.
pub fn check_ports(service: &str, host: &str, ports: &[u16]) -> Result<(), ServiceError> {
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
pub fn launch(
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
pub fn start_unit_or_reuse(
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
pub fn stop_daemon(
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
pub fn remove_daemon_log(s: &Settings, name: &str) {
    let log = daemon_log(s, name);
    let _ = std::fs::remove_file(crate::system::supervisor::pidfile(&log, name));
    let _ = std::fs::remove_file(log);
}

/// `DATABASE_USER`, refused unless it may go into SQL unquoted.
pub fn plain_user(s: &Settings, backend: Backend) -> Result<String, ServiceError> {
    let user = s.get_or("DATABASE_USER", "root").to_owned();
    if valid_identifier(&user) {
        Ok(user)
    } else {
        Err(ServiceError::failed(
            backend.name(),
            format!("DATABASE_USER '{user}' is not a plain name"),
        ))
    }
}

/// After `user` was created (or updated): recorded for clean when it is new and no
/// system user; then `probe` must log in with it within [`PROBE_TIMEOUT`].
pub fn user_ready(
    host: &mut Host,
    backend: Backend,
    user: &str,
    existed: bool,
    probe: impl Fn(&Host) -> Result<(), String>,
) -> Result<(), ServiceError> {
    let service = backend.name();
    if !existed && !is_system_user(user) {
        host.ledger.record_db_user(service, user);
    }
    host.checkpoint();
    let log = daemon_log(&host.settings, service);
    wait_ready(
        service,
        None,
        &log,
        PROBE_TIMEOUT,
        "login as DATABASE_USER over TCP",
        || probe(host),
    )
}

/// clean of a database backend: drops what the state says stack created in it.
/// When our server is down (and the port free), it is started for this and stopped
/// again.
pub fn drop_left(
    host: &mut Host,
    backend: Backend,
    addr: &str,
    port: u16,
    start: fn(&mut Host) -> Result<(), ServiceError>,
    stop: fn(&mut Host) -> Result<(), ServiceError>,
) -> Result<(), ServiceError> {
    let left = !host.ledger.databases(backend.name()).is_empty()
        || !host.ledger.db_users(backend.name()).is_empty();
    if !left {
        return Ok(());
    }
    if use_systemctl() || port_taken(addr, port) {
        return drop_created(host, backend);
    }
    start(host)?;
    let r = drop_created(host, backend);
    stop(host)?;
    r
}

/// Stops our daemon `name` (if recorded) and forgets it.
pub fn halt(host: &mut Host, service: &str, name: &str) -> Result<(), ServiceError> {
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
pub fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// SERVICE_TIMEOUT as a duration.
pub fn service_timeout(s: &Settings) -> Duration {
    Duration::from_secs(s.number("SERVICE_TIMEOUT", 60).max(1))
}

/// Polls `probe` until it succeeds or `timeout` passes. When the daemon exits on the
/// way, fails at once. Either failure carries the tail of the daemon's own log.
/// Starts a server under our supervisor and waits until `probe` answers (with the
/// tail of the server's own log when it does not).
pub fn launch_ready(
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

pub fn wait_ready(
    service: &str,
    record: Option<&ProcessRecord>,
    log: &Path,
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<(), String>,
) -> Result<(), ServiceError> {
    let t0 = Instant::now();
    loop {
        let last = match probe() {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let died = record.is_some_and(|r| {
            !matches!(
                OwnSupervisor::default().status(r),
                ProcStatus::Running { .. }
            )
        });
        if died || t0.elapsed() >= timeout {
            let mut tail = log_tail(log, LOG_TAIL);
            if !last.is_empty() {
                tail.push(format!("(last probe: {last})"));
            }
            return Err(ServiceError::NotReady {
                service: service.into(),
                what: if died {
                    format!("{what}; the server exited")
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

/// A probe by a client program: succeeds when it exits 0 within [`PROBE_TIMEOUT`].
pub fn probe_cmd(cmd: &Cmd) -> Result<(), String> {
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

/// `start_service`/`stop_service` on a systemd machine: the distro's unit.
pub fn systemctl(host: &Host, service: &str, action: &str, unit: &str) -> Result<(), ServiceError> {
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
pub fn use_systemctl() -> bool {
    systemd_is_pid1()
}

/// Makes a directory owned by a system user (e.g. /run/mysqld), as the init scripts do.
pub fn ensure_owned_dir(service: &str, dir: &Path, user: &str) -> Result<(), ServiceError> {
    std::fs::create_dir_all(dir).map_err(|source| ServiceError::Io {
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
pub fn daemon_log(s: &Settings, name: &str) -> PathBuf {
    s.path("LOGDIR").join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn urls_follow_devstack() {
        let s = settings(&[
            ("ENABLED_SERVICES", "mysql,key"),
            ("DATABASE_USER", "root"),
            ("DATABASE_PASSWORD", "pw"),
            ("DATABASE_HOST", "10.0.0.1"),
        ]);
        assert_eq!(
            connection_url(&s, "keystone"),
            "mysql+pymysql://root:pw@10.0.0.1/keystone?charset=utf8"
        );
        let s = settings(&[
            ("ENABLED_SERVICES", "postgresql,key"),
            ("DATABASE_TYPE", "mysql"),
            ("DATABASE_USER", "u"),
            ("DATABASE_PASSWORD", "pw"),
            ("DATABASE_HOST", "h"),
        ]);
        assert_eq!(
            connection_url(&s, "nova"),
            "postgresql://u:pw@h/nova?client_encoding=utf8"
        );
    }

    #[test]
    fn backend_follows_the_enabled_service_then_database_type() {
        assert_eq!(
            Backend::from_settings(&settings(&[("DATABASE_TYPE", "postgresql")])),
            Backend::Postgresql
        );
        assert_eq!(Backend::from_settings(&settings(&[])), Backend::Mysql);
        assert_eq!(
            Backend::from_settings(&settings(&[
                ("ENABLED_SERVICES", "mysql"),
                ("DATABASE_TYPE", "postgresql")
            ])),
            Backend::Mysql
        );
    }

    #[test]
    fn identifiers_and_literals_are_safe() {
        assert!(valid_identifier("nova_api"));
        assert!(!valid_identifier("x; DROP"));
        assert!(!valid_identifier(""));
        assert_eq!(sql_literal("a'b\\c"), "'a''b\\\\c'");
    }

    #[test]
    fn a_server_that_exits_is_reported_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        std::fs::write(&log, "line 1\nfatal: cannot bind\n").unwrap();
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
}
