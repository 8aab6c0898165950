//! keystone (`key`): config in `KEYSTONE_CONF`, its database, `db_sync`, fernet and
//! credential keys, `bootstrap` (the admin password through the environment, never
//! argv), served by uwsgi on `KEYSTONE_SERVICE_PORT`, tokens cached in memcached.
//! Started in `init`, once every enabled service's database is synced: the pipeline
//! then creates the accounts, services and endpoints of every enabled service
//! through its REST API.

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::services::daemon;
use crate::services::database;
use crate::services::uwsgi::{self, WsgiApp};
use crate::services::{Descriptor, Layer, Service, ServiceError, Stage, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

pub(crate) const NAME: &str = "keystone";
/// DevStack's service name, and the process name.
pub(crate) const SERVICE: &str = "key";

pub(crate) struct Keystone;

fn conf(s: &Settings) -> PathBuf {
    s.path("KEYSTONE_CONF")
}

fn conf_dir(s: &Settings) -> PathBuf {
    s.path("KEYSTONE_CONF_DIR")
}

fn uwsgi_ini(s: &Settings) -> PathBuf {
    conf_dir(s).join("keystone-uwsgi-public.ini")
}

/// DevStack's `write_uwsgi_config … /identity "" keystone-api`: keystone serves
/// on its socket behind the front proxy, `KEYSTONE_SERVICE_URI` is `…/identity`.
const ROUTE: uwsgi::Route = uwsgi::Route {
    site: "keystone-api",
    path: "/identity",
    socket: true,
};

/// Where keystone listens: its socket.
fn bind(_s: &Settings) -> String {
    crate::services::frontproxy::socket_path(ROUTE.site)
        .display()
        .to_string()
}

fn write_config(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let dir = conf_dir(&s);
    oslo::make_dir(host, NAME, &dir)?;
    let fernet = dir.join("fernet-keys");
    let credential = dir.join("credential-keys");
    oslo::write_conf(host, NAME, &conf(&s), |doc| {
        oslo::common_defaults(doc, &s);
        doc.set(
            "database",
            "connection",
            &database::connection_url(&s, "keystone"),
        );
        doc.set("token", "provider", "fernet");
        doc.set(
            "fernet_tokens",
            "key_repository",
            &fernet.display().to_string(),
        );
        // Without this, fernet_setup also writes /etc/keystone/fernet-keys as well.
        doc.set(
            "fernet_receipts",
            "key_repository",
            &fernet.display().to_string(),
        );
        doc.set(
            "credential",
            "key_repository",
            &credential.display().to_string(),
        );
        doc.set("cache", "enabled", "True");
        doc.set("cache", "backend", "dogpile.cache.memcached");
        doc.set("cache", "memcache_servers", s.str("MEMCACHE_SERVERS"));
        doc.set(
            "oslo_concurrency",
            "lock_path",
            &format!("{}/keystone", s.str("DATA_DIR")),
        );
    })?;
    let app = WsgiApp {
        wsgi: "keystone.wsgi.api:application".into(),
        http: bind(&s),
        venv: crate::system::python::venv_dir(&host.settings),
        env: vec![(
            "OS_KEYSTONE_CONFIG_FILES".into(),
            conf(&s).display().to_string(),
        )],
        processes: s.number("API_WORKERS", 1).max(2),
        name: "keystone".into(),
    };
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)?;
    uwsgi::publish(host, NAME, ROUTE, "KEYSTONE", 5000)
}

/// keystone's own chain: db_sync, fernet and credential keys, bootstrap.
fn own_sync(host: &Host) -> Vec<Cmd> {
    let s = &host.settings;
    let c = conf(s).display().to_string();
    let manage = |args: &[&str]| {
        oslo::venv_cmd(host, "keystone-manage")
            .arg("--config-file")
            .arg(&c)
            .args(args)
            .label("keystone-manage")
    };
    let uri = s.str("KEYSTONE_SERVICE_URI").to_owned();
    let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_owned(), |u| u.name);
    let group = nix::unistd::Group::from_gid(nix::unistd::getegid())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_owned(), |g| g.name);
    vec![
        manage(&["db_sync"]),
        manage(&[
            "fernet_setup",
            "--keystone-user",
            &me,
            "--keystone-group",
            &group,
        ]),
        manage(&[
            "credential_setup",
            "--keystone-user",
            &me,
            "--keystone-group",
            &group,
        ]),
        manage(&[
            "bootstrap",
            "--bootstrap-username",
            "admin",
            "--bootstrap-project-name",
            "admin",
            "--bootstrap-role-name",
            "admin",
            "--bootstrap-service-name",
            "keystone",
            "--bootstrap-region-id",
            s.get_or("REGION_NAME", "RegionOne"),
            "--bootstrap-public-url",
            &uri,
            "--bootstrap-internal-url",
            &uri,
            "--bootstrap-admin-url",
            &uri,
        ])
        // The password never goes on the command line.
        .env("OS_BOOTSTRAP_PASSWORD", s.str("ADMIN_PASSWORD")),
    ]
}

/// Starts keystone's uwsgi and waits for `/v3` (also DevStack's `start_keystone`,
/// which plugins call after `stop_keystone` and a change of keystone.conf).
pub(crate) fn start_keystone(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let record = oslo::start_process(
        host,
        NAME,
        SERVICE,
        &uwsgi::command(&uwsgi_ini(&s)),
        &[],
        Some(bind(&s)),
    )?;
    // Through the proxy's local address (the URI's host may not be this one's).
    let url = crate::services::frontproxy::probe_url(&s, &format!("{}/v3", ROUTE.path));
    oslo::wait_http(host, NAME, &record, &url, |c| (200..400).contains(&c))
}

/// keystone: DevStack's lib/keystone variables are its own.
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[SERVICE],
    after: &["mysql", "postgresql", "rabbit", "memcached"],
    stage: Stage::Api,
    secrets: &["ADMIN_PASSWORD", "SERVICE_PASSWORD"],
    // Its notifications only (DevStack's lib/keystone).
    rpc_backend: Some(("keystone", "KEYSTONE_CONF", "oslo_messaging_notifications")),
    python: &[Project {
        dist: "keystone",
        repo_var: "KEYSTONE_REPO",
    }],
    packages: uwsgi::PACKAGES,
    defaults: &[
        ("KEYSTONE_SERVICE_HOST", "$SERVICE_HOST"),
        ("KEYSTONE_SERVICE_PROTOCOL", "$SERVICE_PROTOCOL"),
        ("KEYSTONE_SERVICE_PORT", "5000"),
        (
            "KEYSTONE_SERVICE_URI",
            "$KEYSTONE_SERVICE_PROTOCOL://$KEYSTONE_SERVICE_HOST/identity",
        ),
        ("KEYSTONE_AUTH_URI", "$KEYSTONE_SERVICE_URI"),
        ("KEYSTONE_SERVICE_URI_V3", "$KEYSTONE_SERVICE_URI/v3"),
        ("KEYSTONE_AUTH_URI_V3", "$KEYSTONE_SERVICE_URI/v3"),
        ("KEYSTONE_CONF_DIR", "/etc/keystone"),
        ("KEYSTONE_CONF", "$KEYSTONE_CONF_DIR/keystone.conf"),
    ],
    databases: &["keystone"],
    processes: &[SERVICE],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for Keystone {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn db_sync(&self, host: &Host) -> Vec<Cmd> {
        own_sync(host)
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        write_config(cx.host)
    }
    fn before_sync(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        // A re-stack: the databases are recreated, so the keystone of the last stack
        // must not keep serving, nor its cache (in memcached) answer for them.
        oslo::stop_processes(cx.host, NAME, &[SERVICE])?;
        flush_cache(cx.host);
        Ok(())
    }
    fn init(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_keystone(cx.host)
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        // Started in init; a re-run of start (keystone stopped meanwhile) restarts it.
        let running = cx
            .host
            .ledger
            .process(crate::state::ProcessKind::Service, SERVICE)
            .is_some_and(|r| oslo::alive(cx.host, r));
        if running {
            Ok(())
        } else {
            start_keystone(cx.host)
        }
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        crate::services::daemon::remove_daemon_log(&cx.host.settings, SERVICE);
        uwsgi::clean_api(cx.host, &conf_dir(&cx.host.settings));
        Ok(())
    }
}

/// `flush_all` to each of MEMCACHE_SERVERS (keystone's cache of the old database).
fn flush_cache(host: &Host) {
    for server in host.settings.str("MEMCACHE_SERVERS").split(',') {
        let server = server.trim();
        if server.is_empty() {
            continue;
        }
        if let Ok(line) =
            crate::services::memcached::command(server, "flush_all", daemon::PROBE_TIMEOUT)
        {
            host.log.note(&format!(
                "keystone: flushed memcached {server}: {}",
                line.trim()
            ));
        }
    }
}
