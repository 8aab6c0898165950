//! What the database backends share (DevStack's lib/database): the backend choice
//! (`DATABASE_TYPE`), connection URLs, admin SQL, `recreate_database`, the database
//! user, and dropping what stack created. The servers themselves are [`Daemon`]s.
//!
//! [`Daemon`]: crate::services::daemon::Daemon
//!
//! Secrets never reach a command line: admin SQL that carries a password goes through a
//! file of mode 0600 read by a shell redirection, client passwords through the
//! environment (`MYSQL_PWD`, `PGPASSWORD`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::services::ServiceError;
use crate::services::daemon::{PROBE_TIMEOUT, daemon_log, port_taken, privileged, wait_ready};

/// The two backends DevStack knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Mysql,
    Postgresql,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Mysql => "mysql",
            Self::Postgresql => "postgresql",
        }
    }

    /// DevStack's choice: the enabled backend service wins; else `DATABASE_TYPE`.
    pub(crate) fn from_settings(s: &Settings) -> Self {
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
pub(crate) fn connection_url(s: &Settings, db: &str) -> String {
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
pub(crate) fn valid_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A SQL string literal (passwords are letters and digits, but a user may set any).
pub(crate) fn sql_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Users the system owns; never created, recorded or dropped by us.
/// A login the distribution's server comes with (never dropped). PostgreSQL has no
/// `root` role: the one stack creates for DevStack's `DATABASE_USER=root` is ours.
pub(crate) fn is_system_user(backend: Backend, name: &str) -> bool {
    match backend {
        Backend::Mysql => matches!(name, "root" | "mysql" | "debian-sys-maint" | "mariadb.sys"),
        Backend::Postgresql => name == "postgres",
    }
}

/// Set when stack created root@'%' and root@'127.0.0.1' (mysql.rs makes them; the
/// drop below removes them with what else stack created).
pub(crate) const ROOT_TCP_FACT: &str = "mysql_root_tcp_users";

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
pub(crate) fn admin_sql(host: &Host, backend: Backend, sql: &str) -> Result<String, ServiceError> {
    let service = backend.name();
    let dir = private_dir(host);
    let io = |source, path: &Path| ServiceError::Io {
        service: service.into(),
        path: path.to_path_buf(),
        source,
    };
    fs_err::create_dir_all(&dir).map_err(|e| io(e, &dir))?;
    let file = dir.join(format!("sql.{}", std::process::id()));
    crate::state::write_atomic(&file, sql.as_bytes(), 0o600).map_err(|e| io(e, &file))?;
    let client = match backend {
        Backend::Mysql => {
            let mut c = privileged("mariadb");
            // --no-defaults: ~/.my.cnf (DevStack writes one) must not turn the
            // socket login into a TCP one with a password.
            c.extend(
                [
                    "--no-defaults",
                    "--batch",
                    "--skip-column-names",
                    "-u",
                    "root",
                ]
                .map(String::from),
            );
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
    let _ = fs_err::remove_file(&file);
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
pub(crate) fn recreate_database(host: &mut Host, db: &str) -> Result<(), ServiceError> {
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
pub(crate) fn drop_created(host: &mut Host, backend: Backend) -> Result<(), ServiceError> {
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
        .filter(|u| valid_identifier(u) && !is_system_user(backend, u))
        .collect();
    let root_tcp = backend == Backend::Mysql && host.ledger.fact(ROOT_TCP_FACT).is_some();
    if dbs.is_empty() && users.is_empty() && !root_tcp {
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
    if root_tcp {
        sql.push_str("DROP USER IF EXISTS 'root'@'%';\nDROP USER IF EXISTS 'root'@'127.0.0.1';\n");
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
    if backend == Backend::Mysql {
        host.ledger.forget_fact(ROOT_TCP_FACT);
    }
    host.checkpoint();
    Ok(())
}

/// `DATABASE_USER`, refused unless it may go into SQL unquoted.
pub(crate) fn plain_user(s: &Settings, backend: Backend) -> Result<String, ServiceError> {
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
pub(crate) fn user_ready(
    host: &mut Host,
    backend: Backend,
    user: &str,
    existed: bool,
    probe: impl Fn(&Host) -> Result<(), String>,
) -> Result<(), ServiceError> {
    let service = backend.name();
    if !existed && !is_system_user(backend, user) {
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
pub(crate) fn drop_left(
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
    // Under systemd too: clean stopped the distro's unit with the rest of layer 1
    // before the services' clean ran ("admin SQL failed" and the databases left).
    if port_taken(addr, port) {
        return drop_created(host, backend);
    }
    start(host)?;
    let r = drop_created(host, backend);
    stop(host)?;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs)
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
}
