//! `mysql`: MariaDB from Debian, listening on `DATABASE_HOST` only, started by us
//! (no systemd here) or by systemctl (systemd machines), waited for until a query
//! works, with `DATABASE_USER`/`DATABASE_PASSWORD` able to log in over TCP.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::ini::IniDoc;
use crate::services::daemon::{self, Daemon};
use crate::services::database::{self, Backend};
use crate::services::{Descriptor, Layer, Service, ServiceError};
use crate::system::supervisor::ProcessSpec;

pub(crate) const NAME: &str = "mysql";
pub(crate) const PORT: u16 = 3306;
const DATADIR: &str = "/var/lib/mysql";
const RUNDIR: &str = "/run/mysqld";
const SYSTEMD_UNIT: &str = "mariadb";
/// The config Debian's mariadb unit reads (DevStack's `my_conf` on Debian).
const DISTRO_MY_CNF: &str = "/etc/mysql/my.cnf";

pub(crate) struct Mysql;

fn host_addr(host: &Host) -> String {
    host.settings
        .get_or("DATABASE_HOST", "127.0.0.1")
        .to_owned()
}

/// `SELECT 1` as the administrator over the socket (the first round trip).
fn admin_probe(host: &Host) -> Result<(), String> {
    daemon::probe_cmd(
        &host
            .cmd("mariadb")
            .args([
                // ~/.my.cnf (DevStack's, or the user's) must not choose the login.
                "--no-defaults",
                "--connect-timeout=3",
                "-u",
                "root",
                "--batch",
                "-e",
                "SELECT 1",
            ])
            .label("mysql-probe"),
    )
}

/// `SELECT 1` as DATABASE_USER over TCP on DATABASE_HOST (the password in MYSQL_PWD).
pub(crate) fn user_probe(host: &Host) -> Result<(), String> {
    let s = &host.settings;
    daemon::probe_cmd(
        &host
            .cmd("mariadb")
            .args([
                "--no-defaults",
                "--connect-timeout=3",
                "--protocol=TCP",
                "-h",
                &host_addr(host),
            ])
            .args([
                "-P",
                &PORT.to_string(),
                "-u",
                s.get_or("DATABASE_USER", "root"),
                "--batch",
                "-e",
                "SELECT 1",
            ])
            .env("MYSQL_PWD", s.str("DATABASE_PASSWORD"))
            .label("mysql-probe"),
    )
}

impl Daemon for Mysql {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: NAME,
            unit: SYSTEMD_UNIT,
            probe_what: "mariadb SELECT 1",
        }
    }
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>) {
        (
            settings.get_or("DATABASE_HOST", "127.0.0.1").to_owned(),
            vec![PORT],
        )
    }
    fn prepare(&self, host: &mut Host) -> Result<(), ServiceError> {
        daemon::ensure_owned_dir(NAME, Path::new(RUNDIR), "mysql")?;
        if Path::new(DATADIR).join("mysql").is_dir() {
            return Ok(());
        }
        // Debian's postinst initialises the data dir; do it when it did not.
        host.cmd("mariadb-install-db")
            .args([
                "--user=mysql",
                &format!("--datadir={DATADIR}"),
                "--auth-root-authentication-method=socket",
            ])
            .timeout(daemon::service_timeout(&host.settings) * 2)
            .run()
            .map_err(|source| ServiceError::Process {
                service: NAME.into(),
                what: "mariadb-install-db failed".into(),
                source,
            })?;
        host.ledger.record_dir(Path::new(DATADIR));
        Ok(())
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let addr = host_addr(host);
        let command = format!(
            "exec /usr/sbin/mariadbd --user=mysql --datadir={DATADIR} --bind-address={addr} --port={PORT} \
         --socket={RUNDIR}/mysqld.sock --pid-file={RUNDIR}/mysqld.pid --max-connections=1024 \
         --character-set-server=utf8 --collation-server=utf8_general_ci --skip-name-resolve"
        );
        Ok(ProcessSpec {
            name: NAME.into(),
            command,
            log: daemon::daemon_log(&host.settings, NAME),
            workdir: Some("/".into()),
            address: Some(format!("{addr}:{PORT}")),
            ..ProcessSpec::default()
        })
    }
    /// DevStack's `configure_database_mysql`: the server's options in the distro's
    /// my.cnf `[mysqld]`, the address our own launch binds to included (Debian's
    /// default, 127.0.0.1, refuses the services' HOST_IP connections).
    fn configure_unit(&self, host: &mut Host) -> Result<bool, ServiceError> {
        let path = Path::new(DISTRO_MY_CNF);
        let mut doc =
            IniDoc::load(path).map_err(|e| ServiceError::caused(NAME, "reading my.cnf", e))?;
        let before = doc.render();
        for (key, value) in [
            ("bind-address", host_addr(host).as_str()),
            ("sql_mode", "TRADITIONAL"),
            ("default-storage-engine", "InnoDB"),
            ("max_connections", "1024"),
        ] {
            doc.set("mysqld", key, value);
        }
        if doc.render() == before {
            return Ok(false);
        }
        doc.save(path)
            .map_err(|e| ServiceError::caused(NAME, "writing my.cnf", e))?;
        Ok(true)
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        admin_probe(host)
    }
}

/// Starts MariaDB unless ours already runs; waits until it answers.
pub(crate) fn start_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::start(host, &Mysql)
}

/// Creates (or updates) DATABASE_USER with DATABASE_PASSWORD, able to do anything
/// (DevStack grants all on *.*), and checks the login over TCP.
fn ensure_user(host: &mut Host) -> Result<(), ServiceError> {
    if user_probe(host).is_ok() {
        return Ok(());
    }
    let user = database::plain_user(&host.settings, Backend::Mysql)?;
    let pass = host.settings.str("DATABASE_PASSWORD").to_owned();
    let existed = database::admin_sql(
        host,
        Backend::Mysql,
        &format!("SELECT COUNT(*) FROM mysql.user WHERE User='{user}';"),
    )?
    .trim()
        != "0";
    let pw = database::sql_literal(&pass);
    let mut sql = String::new();
    // root (DevStack's DATABASE_USER) gets root@'%' and root@'127.0.0.1' with the
    // password, as DevStack grants it; those are dropped by clean when stack made them.
    let hosts: &[&str] = if user == "root" {
        &["%", "127.0.0.1"]
    } else {
        &["%", "localhost"]
    };
    if user == "root" {
        let made = database::admin_sql(
            host,
            Backend::Mysql,
            "SELECT COUNT(*) FROM mysql.user WHERE User='root' AND Host IN ('%','127.0.0.1');",
        )?;
        if made.trim() == "0" {
            host.ledger.set_fact(database::ROOT_TCP_FACT, "1");
        }
    }
    for from in hosts {
        // root@localhost keeps Debian's socket authentication (the admin SQL's).
        let _ = writeln!(
            sql,
            "CREATE USER IF NOT EXISTS '{user}'@'{from}' IDENTIFIED BY {pw};\n\
             ALTER USER '{user}'@'{from}' IDENTIFIED BY {pw};\n\
             GRANT ALL PRIVILEGES ON *.* TO '{user}'@'{from}' WITH GRANT OPTION;"
        );
    }
    sql.push_str("FLUSH PRIVILEGES;\n");
    database::admin_sql(host, Backend::Mysql, &sql)?;
    database::user_ready(host, Backend::Mysql, &user, existed, user_probe)
}

/// DevStack's `~/.my.cnf` for the stack user (only when there is none: a user's own
/// is kept), mode 0600; recorded, so clean removes it.
fn write_my_cnf(host: &mut Host) -> Result<(), ServiceError> {
    let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else {
        return Ok(());
    };
    let path = home.join(".my.cnf");
    if path.exists() {
        return Ok(());
    }
    let s = &host.settings;
    let text = my_cnf_text(
        s.get_or("DATABASE_USER", "root"),
        s.str("DATABASE_PASSWORD"),
        &host_addr(host),
    );
    crate::state::write_atomic(&path, text.as_bytes(), 0o600).map_err(|source| {
        ServiceError::Io {
            service: NAME.into(),
            path: path.clone(),
            source,
        }
    })?;
    host.ledger.record_file(&path);
    Ok(())
}

/// The text of DevStack's `~/.my.cnf`.
pub(crate) fn my_cnf_text(user: &str, password: &str, host: &str) -> String {
    format!("[client]\nuser={user}\npassword={password}\nhost={host}\n")
}

/// Stops our MariaDB (or the distro unit on systemd machines).
pub(crate) fn stop_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::stop(host, &Mysql)
}

/// MariaDB (DevStack's `mysql`).
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    packages: &["mariadb-server", "mariadb-client"],
    secrets: &["DATABASE_PASSWORD"],
    aliases: &["mariadb", "mysqld"],
    ..Descriptor::named(NAME, Layer::Infra)
};

impl Service for Mysql {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_server(cx.host)?;
        ensure_user(cx.host)?;
        write_my_cnf(cx.host)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, all: bool) -> Result<(), ServiceError> {
        let ours =
            daemon::recorded(cx.host, NAME).is_some() || cx.host.ledger.has_system_service(NAME);
        daemon::stop_layer1(cx.host, &Mysql, all, ours, |host| {
            database::drop_created(host, Backend::Mysql)
        })
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        // Databases and users were dropped before the server stopped; when it was
        // not running then, start it for this.
        let addr = host_addr(cx.host);
        database::drop_left(
            cx.host,
            Backend::Mysql,
            &addr,
            PORT,
            start_server,
            stop_server,
        )?;
        daemon::remove_daemon_log(&cx.host.settings, NAME);
        Ok(())
    }
}
