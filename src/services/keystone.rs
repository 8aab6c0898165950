//! keystone (`key`): config in `KEYSTONE_CONF`, its database, `db_sync`, fernet and
//! credential keys, `bootstrap` (the admin password through the environment, never
//! argv), served by uwsgi on `KEYSTONE_SERVICE_PORT`, tokens cached in memcached.
//! Started in `init`: the accounts, services and endpoints of every enabled service
//! are created through its REST API as soon as it answers.
//!
//! Its `init` also runs the other enabled services' database syncs, concurrently with
//! its own (they are independent), so a stack pays for the longest, not the sum.

use std::path::PathBuf;
use std::time::Instant;

use crate::config::settings::Settings;
use crate::host::Host;
use crate::pipeline::Run;
use crate::services::database;
use crate::services::uwsgi::{self, UwsgiApi, WsgiApp};
use crate::services::{Layer, Service, ServiceError, glance, neutron, nova, placement};
use crate::system::process::Cmd;

pub const NAME: &str = "keystone";
/// DevStack's service name, and the process name.
pub const SERVICE: &str = "key";

pub struct Keystone;

fn conf(s: &Settings) -> PathBuf {
    s.path("KEYSTONE_CONF")
}

fn conf_dir(s: &Settings) -> PathBuf {
    s.path("KEYSTONE_CONF_DIR")
}

fn uwsgi_ini(s: &Settings) -> PathBuf {
    conf_dir(s).join("keystone-uwsgi-public.ini")
}

/// Where keystone listens: `SERVICE_LISTEN_ADDRESS:KEYSTONE_SERVICE_PORT`.
fn bind(s: &Settings) -> String {
    format!(
        "{}:{}",
        s.get_or("SERVICE_LISTEN_ADDRESS", "127.0.0.1"),
        s.get_or("KEYSTONE_SERVICE_PORT", "5000")
    )
}

fn write_config(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let dir = conf_dir(&s);
    uwsgi::make_dir(host, NAME, &dir)?;
    let fernet = dir.join("fernet-keys");
    let credential = dir.join("credential-keys");
    uwsgi::write_conf(host, NAME, &conf(&s), |doc| {
        uwsgi::common_defaults(doc, &s);
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
        // Without this, fernet_setup also writes /etc/keystone/fernet-keys (trap 2).
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
        venv: crate::system::python::venv_dir(host),
        env: vec![(
            "OS_KEYSTONE_CONFIG_FILES".into(),
            conf(&s).display().to_string(),
        )],
        processes: s.number("API_WORKERS", 1).max(2),
        name: "keystone".into(),
    };
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)
}

/// keystone's own chain: db_sync, fernet and credential keys, bootstrap.
fn own_sync(host: &Host) -> Vec<Cmd> {
    let s = &host.settings;
    let c = conf(s).display().to_string();
    let manage = |args: &[&str]| {
        uwsgi::venv_cmd(host, "keystone-manage")
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

/// One service's database work: the databases to (re)create and the commands that
/// fill them, run in order.
pub struct DbJob {
    pub service: &'static str,
    pub databases: Vec<&'static str>,
    pub cmds: Vec<Cmd>,
}

/// The jobs of every enabled OpenStack service (keystone's first).
fn all_jobs(host: &Host) -> Vec<DbJob> {
    let s = &host.settings;
    let mut jobs = Vec::new();
    if s.is_enabled(&[SERVICE]) {
        jobs.push(DbJob {
            service: NAME,
            databases: vec!["keystone"],
            cmds: own_sync(host),
        });
    }
    for job in [
        glance::Glance::db_job(host),
        placement::Placement::db_job(host),
        neutron::Neutron::db_job(host),
        nova::db_job(host),
    ]
    .into_iter()
    .flatten()
    {
        jobs.push(job);
    }
    jobs
}

/// Recreates the jobs' databases, then runs the jobs concurrently; each is marked
/// done so the service's own `init` does not run it again.
pub fn run_db_jobs(host: &mut Host, jobs: Vec<DbJob>) -> Result<(), ServiceError> {
    let t0 = Instant::now();
    let mut names = Vec::new();
    for job in &jobs {
        for db in &job.databases {
            database::recreate_database(host, db)?;
        }
        names.push(job.service);
    }
    let parallel: Vec<(String, Vec<Cmd>)> = jobs
        .into_iter()
        .map(|j| (j.service.to_owned(), j.cmds))
        .collect();
    uwsgi::run_parallel(&parallel)?;
    for n in &names {
        mark_synced(n);
    }
    host.log.note(&format!(
        "databases of {} synced in {:.1} s",
        names.join(", "),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

static SYNCED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

fn mark_synced(service: &'static str) {
    SYNCED.lock().expect("synced lock").push(service);
}

/// Did this run already sync `service`'s databases?
pub fn synced(service: &str) -> bool {
    SYNCED.lock().expect("synced lock").contains(&service)
}

/// A service's `init` when keystone did not run its job (`db_job`): run it alone.
pub fn ensure_synced(
    host: &mut Host,
    db_job: fn(&Host) -> Option<DbJob>,
) -> Result<(), ServiceError> {
    match db_job(host) {
        Some(job) if !synced(job.service) => run_db_jobs(host, vec![job]),
        _ => Ok(()),
    }
}

/// Starts keystone's uwsgi and waits for `/v3`.
fn start_keystone(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let record = uwsgi::start_process(
        host,
        NAME,
        SERVICE,
        &uwsgi::command(&uwsgi_ini(&s)),
        &[],
        Some(bind(&s)),
    )?;
    let url = format!("{}/v3", s.str("KEYSTONE_SERVICE_URI"));
    uwsgi::wait_http(host, NAME, &record, &url, |c| (200..400).contains(&c))
}

impl Service for Keystone {
    fn name(&self) -> &'static str {
        NAME
    }
    fn layer(&self) -> Layer {
        Layer::OpenStack
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        settings.is_enabled(&[SERVICE])
    }
    fn packages(&self, _settings: &Settings) -> Vec<String> {
        uwsgi::packages()
    }
    fn install(&self, run: &mut Run) -> Result<(), ServiceError> {
        uwsgi::install_python(run)
    }
    fn configure(&self, run: &mut Run) -> Result<(), ServiceError> {
        write_config(&mut run.host)
    }
    fn init(&self, run: &mut Run) -> Result<(), ServiceError> {
        // A re-stack: the databases are recreated, so the keystone of the last stack
        // must not keep serving, nor its cache (in memcached) answer for them.
        uwsgi::stop_processes(&mut run.host, NAME, &[SERVICE])?;
        flush_cache(&run.host);
        let jobs = all_jobs(&run.host);
        run_db_jobs(&mut run.host, jobs)?;
        start_keystone(&mut run.host)?;
        let t0 = Instant::now();
        let report = crate::openstack::accounts::create_for_enabled(&mut run.host)
            .map_err(|e| ServiceError::failed(NAME, format!("creating accounts: {e}")))?;
        run.host.log.note(&report.summary());
        run.host.log.note(&format!(
            "keystone accounts, services and endpoints: {:.1} s",
            t0.elapsed().as_secs_f64()
        ));
        Ok(())
    }
    fn start(&self, run: &mut Run) -> Result<(), ServiceError> {
        // Started in init; a re-run of start (keystone stopped meanwhile) restarts it.
        let running = run
            .host
            .state
            .state
            .processes
            .get(SERVICE)
            .cloned()
            .is_some_and(|r| uwsgi::alive(&run.host, &r));
        if running {
            Ok(())
        } else {
            start_keystone(&mut run.host)
        }
    }
    fn stop(&self, run: &mut Run, _all: bool) -> Result<(), ServiceError> {
        uwsgi::stop_processes(&mut run.host, NAME, &[SERVICE])
    }
    fn clean(&self, run: &mut Run) -> Result<(), ServiceError> {
        uwsgi::clean_api(&run.host, &[SERVICE], &conf_dir(&run.host.settings));
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
            crate::services::memcached::command(server, "flush_all", database::PROBE_TIMEOUT)
        {
            host.log.note(&format!(
                "keystone: flushed memcached {server}: {}",
                line.trim()
            ));
        }
    }
}
