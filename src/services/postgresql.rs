//! `postgresql`: Debian's PostgreSQL cluster (`/etc/postgresql/VER/main`), listening
//! on `DATABASE_HOST` only, started by us as the postgres user, waited for until a
//! query works, with `DATABASE_USER` a password login role (DevStack: SUPERUSER).

use std::path::{Path, PathBuf};

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::services::daemon::{self, Daemon};
use crate::services::database::{self, Backend};
use crate::services::{Descriptor, Layer, Service, ServiceError};
use crate::system::supervisor::ProcessSpec;

pub(crate) const NAME: &str = "postgresql";
pub(crate) const PORT: u16 = 5432;
const SYSTEMD_UNIT: &str = "postgresql";

pub(crate) struct Postgresql;

fn host_addr(s: &Settings) -> String {
    s.get_or("DATABASE_HOST", "127.0.0.1").to_owned()
}

/// The newest installed server version (`/usr/lib/postgresql/VER/bin/postgres`).
fn version() -> Option<String> {
    let mut versions: Vec<u32> = fs_err::read_dir("/usr/lib/postgresql")
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
pub(crate) fn user_probe(host: &Host) -> Result<(), String> {
    let s = &host.settings;
    daemon::probe_cmd(
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

/// The server's version, its config and data directories (Debian's layout).
fn cluster() -> Result<(String, PathBuf, PathBuf), ServiceError> {
    let ver = version().ok_or_else(|| {
        ServiceError::failed(NAME, "no PostgreSQL server under /usr/lib/postgresql")
    })?;
    let conf_dir = PathBuf::from(format!("/etc/postgresql/{ver}/main"));
    let data_dir = PathBuf::from(format!("/var/lib/postgresql/{ver}/main"));
    Ok((ver, conf_dir, data_dir))
}

impl Daemon for Postgresql {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: NAME,
            unit: SYSTEMD_UNIT,
            probe_what: "psql SELECT 1",
        }
    }
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>) {
        (host_addr(settings), vec![PORT])
    }
    fn prepare(&self, host: &mut Host) -> Result<(), ServiceError> {
        let (ver, conf_dir, data_dir) = cluster()?;
        if !conf_dir.join("postgresql.conf").is_file() {
            // No cluster (the package's postinst made none): Debian's tool makes one.
            host.cmd("pg_createcluster")
                .args([ver.as_str(), "main"])
                .timeout(daemon::service_timeout(&host.settings) * 2)
                .run()
                .map_err(|source| ServiceError::Process {
                    service: NAME.into(),
                    what: "pg_createcluster failed".into(),
                    source,
                })?;
            host.ledger.record_dir(&conf_dir);
            host.ledger.record_dir(&data_dir);
        }
        daemon::ensure_owned_dir(NAME, Path::new("/var/run/postgresql"), "postgres")
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let (ver, conf_dir, data_dir) = cluster()?;
        let addr = host_addr(&host.settings);
        let command = format!(
            "exec /usr/lib/postgresql/{ver}/bin/postgres -D {} -c config_file={} -c listen_addresses={addr} -c port={PORT} -c max_connections=200 -c ssl=off",
            data_dir.display(),
            conf_dir.join("postgresql.conf").display()
        );
        Ok(ProcessSpec {
            name: NAME.into(),
            command,
            user: Some("postgres".into()),
            log: daemon::daemon_log(&host.settings, NAME),
            workdir: Some("/".into()),
            address: Some(format!("{addr}:{PORT}")),
            ..ProcessSpec::default()
        })
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        admin_probe(host)
    }
}

pub(crate) fn start_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::start(host, &Postgresql)
}

fn ensure_user(host: &mut Host) -> Result<(), ServiceError> {
    if user_probe(host).is_ok() {
        return Ok(());
    }
    let user = database::plain_user(&host.settings, Backend::Postgresql)?;
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
    database::user_ready(host, Backend::Postgresql, &user, existed, user_probe)
}

pub(crate) fn stop_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::stop(host, &Postgresql)
}

/// PostgreSQL (`DATABASE_TYPE=postgresql`, DevStack's `postgresql`).
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    packages: &["postgresql", "postgresql-client"],
    secrets: &["DATABASE_PASSWORD"],
    aliases: &["postgres"],
    ..Descriptor::named(NAME, Layer::Infra)
};

impl Service for Postgresql {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_server(cx.host)?;
        ensure_user(cx.host)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, all: bool) -> Result<(), ServiceError> {
        let ours = cx.host.ledger.has_system_service(NAME);
        daemon::stop_layer1(cx.host, &Postgresql, all, ours, |host| {
            database::drop_created(host, Backend::Postgresql)
        })
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let addr = host_addr(&cx.host.settings);
        database::drop_left(
            cx.host,
            Backend::Postgresql,
            &addr,
            PORT,
            start_server,
            stop_server,
        )?;
        daemon::remove_daemon_log(&cx.host.settings, NAME);
        Ok(())
    }
}
