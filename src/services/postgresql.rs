//! `postgresql`: Debian's PostgreSQL cluster (`/etc/postgresql/VER/main`), listening
//! on `DATABASE_HOST` only, started by us as the postgres user, waited for until a
//! query works, with `DATABASE_USER` a password login role (DevStack: SUPERUSER).

use std::path::{Path, PathBuf};

use crate::config::settings::Settings;
use crate::host::Host;
use crate::pipeline::{Kind, Run};
use crate::services::database::{self, Backend};
use crate::services::{Layer, Service, ServiceError};
use crate::system::supervisor::ProcessSpec;

pub const NAME: &str = "postgresql";
pub const PORT: u16 = 5432;
const SYSTEMD_UNIT: &str = "postgresql";

pub struct Postgresql;

fn host_addr(s: &Settings) -> String {
    s.get_or("DATABASE_HOST", "127.0.0.1").to_owned()
}

/// The newest installed server version (`/usr/lib/postgresql/VER/bin/postgres`).
fn version() -> Option<String> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.path().join("bin/postgres").is_file())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect();
    versions.sort_unstable();
    versions.last().map(u32::to_string)
}

fn admin_probe(host: &Host) -> Result<(), String> {
    database::admin_sql(host, Backend::Postgresql, "SELECT 1;")
        .map(|_| ())
        .map_err(|e| {
            let tail = e.tail().last().cloned().unwrap_or_default();
            format!("{e} {tail}")
        })
}

/// `SELECT 1` as DATABASE_USER over TCP (password in PGPASSWORD).
pub fn user_probe(host: &Host) -> Result<(), String> {
    let s = &host.settings;
    database::probe_cmd(
        &host
            .cmd("psql")
            .args(["-X", "-tA", "-h", &host_addr(s), "-p", &PORT.to_string()])
            .args([
                "-U",
                s.get_or("DATABASE_USER", "root"),
                "-d",
                "postgres",
                "-c",
                "SELECT 1",
            ])
            .env("PGPASSWORD", s.str("DATABASE_PASSWORD"))
            .env("PGCONNECT_TIMEOUT", "3")
            .label("psql-probe"),
    )
}

pub fn start_server(host: &mut Host) -> Result<(), ServiceError> {
    let addr = host_addr(&host.settings);
    let timeout = database::service_timeout(&host.settings);
    let log = database::daemon_log(&host.settings, NAME);
    if database::use_systemctl() {
        database::systemctl(host, NAME, "start", SYSTEMD_UNIT)?;
        host.state.state.system_services.insert(NAME.into());
        return database::wait_ready(NAME, None, &log, timeout, "psql SELECT 1", || {
            admin_probe(host)
        });
    }
    if let Some(record) = database::running(host, NAME) {
        host.log
            .note("postgresql: our PostgreSQL is already running; reusing it");
        return database::wait_ready(NAME, Some(&record), &log, timeout, "psql SELECT 1", || {
            admin_probe(host)
        });
    }
    database::check_ports(NAME, &addr, &[PORT])?;
    let ver = version().ok_or_else(|| {
        ServiceError::failed(NAME, "no PostgreSQL server under /usr/lib/postgresql")
    })?;
    let conf_dir = PathBuf::from(format!("/etc/postgresql/{ver}/main"));
    let data_dir = PathBuf::from(format!("/var/lib/postgresql/{ver}/main"));
    if !conf_dir.join("postgresql.conf").is_file() {
        // No cluster (the package's postinst made none): Debian's tool makes one.
        host.cmd("pg_createcluster")
            .args([ver.as_str(), "main"])
            .timeout(timeout * 2)
            .run()
            .map_err(|source| ServiceError::Process {
                service: NAME.into(),
                what: "pg_createcluster failed".into(),
                source,
            })?;
        host.state.state.dirs.insert(conf_dir.clone());
        host.state.state.dirs.insert(data_dir.clone());
    }
    database::ensure_owned_dir(NAME, Path::new("/var/run/postgresql"), "postgres")?;
    let command = format!(
        "exec /usr/lib/postgresql/{ver}/bin/postgres -D {} -c config_file={} -c listen_addresses={addr} -c port={PORT} -c max_connections=200 -c ssl=off",
        data_dir.display(),
        conf_dir.join("postgresql.conf").display()
    );
    let spec = ProcessSpec {
        name: NAME.into(),
        command,
        user: Some("postgres".into()),
        log: log.clone(),
        workdir: Some("/".into()),
        address: Some(format!("{addr}:{PORT}")),
        ..ProcessSpec::default()
    };
    let record = database::launch(host, NAME, &spec)?;
    database::wait_ready(NAME, Some(&record), &log, timeout, "psql SELECT 1", || {
        admin_probe(host)
    })
}

fn ensure_user(host: &mut Host) -> Result<(), ServiceError> {
    if user_probe(host).is_ok() {
        return Ok(());
    }
    let user = host.settings.get_or("DATABASE_USER", "root").to_owned();
    if !database::valid_identifier(&user) {
        return Err(ServiceError::failed(
            NAME,
            format!("DATABASE_USER '{user}' is not a plain name"),
        ));
    }
    let pw = database::sql_literal(host.settings.str("DATABASE_PASSWORD"));
    let existed = database::admin_sql(
        host,
        Backend::Postgresql,
        &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{user}';"),
    )?
    .trim()
        != "0";
    let verb = if existed { "ALTER" } else { "CREATE" };
    database::admin_sql(
        host,
        Backend::Postgresql,
        &format!("{verb} ROLE \"{user}\" WITH SUPERUSER LOGIN PASSWORD {pw};\n"),
    )?;
    if !existed && !database::is_system_user(&user) {
        host.state.state.db_users.insert(format!("{NAME}:{user}"));
    }
    let _ = host.save_state();
    let log = database::daemon_log(&host.settings, NAME);
    database::wait_ready(
        NAME,
        None,
        &log,
        database::PROBE_TIMEOUT,
        "login as DATABASE_USER over TCP",
        || user_probe(host),
    )
}

pub fn stop_server(host: &mut Host) -> Result<(), ServiceError> {
    if database::use_systemctl() {
        if host.state.state.system_services.remove(NAME) {
            database::systemctl(host, NAME, "stop", SYSTEMD_UNIT)?;
        }
        return Ok(());
    }
    database::halt(host, NAME, NAME)?;
    host.state.state.system_services.remove(NAME);
    let _ = host.save_state();
    Ok(())
}

impl Service for Postgresql {
    fn name(&self) -> &'static str {
        NAME
    }
    fn layer(&self) -> Layer {
        Layer::Infra
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        settings.is_enabled(&[NAME])
    }
    fn packages(&self, _settings: &Settings) -> Vec<String> {
        vec!["postgresql".into(), "postgresql-client".into()]
    }
    fn start(&self, run: &mut Run) -> Result<(), ServiceError> {
        start_server(&mut run.host)?;
        ensure_user(&mut run.host)
    }
    fn stop(&self, run: &mut Run, all: bool) -> Result<(), ServiceError> {
        if !all || !run.host.state.state.system_services.contains(NAME) {
            return Ok(());
        }
        if run.kind == Kind::Clean && database::running(&run.host, NAME).is_some() {
            if let Err(e) = database::drop_created(&mut run.host, Backend::Postgresql) {
                run.host.warn(&e.to_string());
            }
        }
        stop_server(&mut run.host)
    }
    fn clean(&self, run: &mut Run) -> Result<(), ServiceError> {
        let left = run
            .host
            .state
            .state
            .databases
            .iter()
            .chain(run.host.state.state.db_users.iter())
            .any(|d| d.starts_with("postgresql:"));
        if left
            && !database::use_systemctl()
            && !database::port_taken(&host_addr(&run.host.settings), PORT)
        {
            start_server(&mut run.host)?;
            let r = database::drop_created(&mut run.host, Backend::Postgresql);
            stop_server(&mut run.host)?;
            r?;
        } else if left {
            database::drop_created(&mut run.host, Backend::Postgresql)?;
        }
        let log = database::daemon_log(&run.host.settings, NAME);
        let _ = std::fs::remove_file(crate::system::supervisor::pidfile(&log, NAME));
        let _ = std::fs::remove_file(log);
        Ok(())
    }
}
