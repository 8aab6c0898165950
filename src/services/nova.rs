//! nova: `n-api` (`nova.wsgi.osapi_compute` under uwsgi on `NOVA_SERVICE_PORT`),
//! `n-cond`, `n-sch`, `n-cpu` (with `NOVA_CPU_CONF`: nova.conf without database
//! credentials). Cells as nova requires: `api_db sync`, `cell_v2 map_cell0`,
//! `db sync`, `cell_v2 create_cell --name cell1`, and `discover_hosts` once compute
//! registered (plus `[scheduler] discover_hosts_in_cells_interval`).
//!
//! The hypervisor plugin's five functions are called at install (install), end of
//! configure (configure), before nova-compute starts (start), when it stops (stop),
//! and at clean (cleanup); all but cleanup only when n-cpu is enabled.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::settings::Settings;
use crate::host::Host;
use crate::pipeline::Run;
use crate::services::database;
use crate::services::keystone::{self, DbJob};
use crate::services::uwsgi::{self, WsgiApp};
use crate::services::{Layer, Service, ServiceError, hypervisor};

pub const NAME: &str = "nova";
const PREFIX: &str = "NOVA";
const PORT: u16 = 8774;
/// The processes, in start order.
pub const PROCESSES: &[&str] = &["n-api", "n-cond", "n-sch", "n-cpu"];

pub struct Nova;

fn enabled(s: &Settings) -> bool {
    s.is_enabled(PROCESSES)
}

fn compute(s: &Settings) -> bool {
    s.is_enabled(&["n-cpu"])
}

/// The control plane (API, conductor, scheduler) runs here: it owns the databases.
fn control(s: &Settings) -> bool {
    s.is_enabled(&["n-api", "n-cond", "n-sch"])
}

fn conf_dir(s: &Settings) -> PathBuf {
    s.path("NOVA_CONF_DIR")
}

fn conf(s: &Settings) -> PathBuf {
    s.path("NOVA_CONF")
}

fn cpu_conf(s: &Settings) -> PathBuf {
    s.path("NOVA_CPU_CONF")
}

fn uwsgi_ini(s: &Settings) -> PathBuf {
    conf_dir(s).join("nova-api-uwsgi.ini")
}

fn state_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("nova")
}

pub fn db_job(host: &Host) -> Option<DbJob> {
    let s = &host.settings;
    if !control(s) {
        return None;
    }
    let c = conf(s);
    let manage = |args: &[&str]| {
        uwsgi::venv_cmd(host, "nova-manage")
            .arg("--config-file")
            .arg(&c)
            .args(args)
            .label("nova-manage")
    };
    let cell0 = database::connection_url(s, "nova_cell0");
    Some(DbJob {
        service: NAME,
        databases: vec!["nova_api", "nova_cell0", "nova_cell1"],
        cmds: vec![
            manage(&["api_db", "sync"]),
            manage(&["cell_v2", "map_cell0", "--database_connection", &cell0]),
            manage(&["db", "sync"]),
            manage(&["cell_v2", "create_cell", "--name", "cell1"]),
        ],
    })
}

fn write_config(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let state = state_dir(&s);
    uwsgi::make_dir(host, NAME, &state.join("instances"))?;
    uwsgi::make_dir(host, NAME, &state.join("lock"))?;
    let paste = conf_dir(&s).join("api-paste.ini");
    let workers = s.get_or("API_WORKERS", "1").to_owned();
    uwsgi::write_conf(host, NAME, &conf(&s), |doc| {
        uwsgi::common_defaults(doc, &s);
        doc.set(
            "DEFAULT",
            "transport_url",
            &crate::services::rabbit::transport_url(&s),
        );
        doc.set("DEFAULT", "my_ip", s.get_or("HOST_IP", "127.0.0.1"));
        doc.set("DEFAULT", "state_path", &state.display().to_string());
        doc.set(
            "DEFAULT",
            "instances_path",
            &state.join("instances").display().to_string(),
        );
        doc.set("DEFAULT", "osapi_compute_workers", &workers);
        doc.set("DEFAULT", "enabled_apis", "osapi_compute");
        doc.set(
            "api_database",
            "connection",
            &database::connection_url(&s, "nova_api"),
        );
        doc.set(
            "database",
            "connection",
            &database::connection_url(&s, "nova_cell1"),
        );
        doc.set("wsgi", "api_paste_config", &paste.display().to_string());
        doc.set("api", "auth_strategy", "keystone");
        doc.set("scheduler", "discover_hosts_in_cells_interval", "2");
        doc.set("scheduler", "workers", &workers);
        doc.set("conductor", "workers", &workers);
        doc.set("vnc", "enabled", "False");
        doc.set(
            "oslo_concurrency",
            "lock_path",
            &state.join("lock").display().to_string(),
        );
        doc.set(
            "cinder",
            "os_region_name",
            s.get_or("REGION_NAME", "RegionOne"),
        );
        uwsgi::authtoken(doc, &s, NAME);
        uwsgi::keystoneauth(doc, &s, "placement", "placement");
        uwsgi::keystoneauth(doc, &s, "neutron", "neutron");
        uwsgi::keystoneauth(doc, &s, "service_user", NAME);
        doc.set("service_user", "send_service_user_token", "True");
    })?;
    uwsgi::copy_file(
        host,
        NAME,
        &uwsgi::venv_etc(host, "nova/api-paste.ini"),
        &paste,
    )?;
    let c = conf(&s);
    let app = WsgiApp {
        wsgi: "nova.wsgi.osapi_compute:application".into(),
        http: uwsgi::listen(&s, PREFIX, PORT),
        venv: crate::system::python::venv_dir(host),
        env: vec![
            (
                "OS_NOVA_CONFIG_DIR".into(),
                c.parent()
                    .map_or_else(|| conf_dir(&s), std::path::Path::to_path_buf)
                    .display()
                    .to_string(),
            ),
            // The first file is the paste config (nova's wsgi_app reads it so).
            (
                "OS_NOVA_CONFIG_FILES".into(),
                format!("{};{}", paste.display(), c.display()),
            ),
        ],
        processes: s.number("API_WORKERS", 1),
        name: "nova-api".into(),
    };
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)
}

/// `NOVA_CPU_CONF`: nova.conf as the hypervisor plugin left it, without database
/// credentials (nova-compute has no DB access). Written in init, so
/// `[[post-config|$NOVA_CPU_CONF]]` lands in it.
fn write_cpu_conf(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let text = std::fs::read_to_string(conf(&s)).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: conf(&s),
        source,
    })?;
    let base = crate::ini::IniDoc::parse(&text);
    uwsgi::write_conf(host, NAME, &cpu_conf(&s), |doc| {
        *doc = base;
        doc.delete("database", "connection");
        doc.delete("api_database", "connection");
    })
}

/// Waits until the compute host is mapped to cell1 (the scheduler's periodic
/// discovery usually does it; we also run `discover_hosts`). Bounded; a warning if not.
fn discover_hosts(run: &mut Run) {
    let s = run.host.settings.clone();
    let c = conf(&s);
    let t0 = Instant::now();
    let limit = database::service_timeout(&s).max(Duration::from_secs(30));
    loop {
        let _ = uwsgi::venv_cmd(&run.host, "nova-manage")
            .arg("--config-file")
            .arg(&c)
            .args(["cell_v2", "discover_hosts"])
            .label("nova-manage")
            .timeout(Duration::from_secs(60))
            .allow_failure()
            .run();
        let listed = uwsgi::venv_cmd(&run.host, "nova-manage")
            .arg("--config-file")
            .arg(&c)
            .args(["cell_v2", "list_hosts"])
            .label("nova-manage")
            .timeout(Duration::from_secs(60))
            .capture()
            .allow_failure()
            .run()
            .map(|o| o.stdout)
            .unwrap_or_default();
        if listed
            .lines()
            .any(|l| l.starts_with('|') && l.contains("cell1"))
        {
            run.host.log.note(&format!(
                "nova: compute host mapped to cell1 after {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            return;
        }
        if t0.elapsed() > limit {
            run.host.warn(
                "nova: no compute host was mapped to cell1 in time; \
                 the scheduler's periodic discovery will map it when it registers",
            );
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

impl Service for Nova {
    fn name(&self) -> &'static str {
        NAME
    }
    fn layer(&self) -> Layer {
        Layer::OpenStack
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        enabled(settings)
    }
    fn packages(&self, _settings: &Settings) -> Vec<String> {
        uwsgi::PACKAGES.iter().map(|p| (*p).to_owned()).collect()
    }
    fn install(&self, run: &mut Run) -> Result<(), ServiceError> {
        uwsgi::install_python(run)?;
        if compute(&run.host.settings) {
            hypervisor::call(run, "install_nova_hypervisor")?;
        }
        Ok(())
    }
    fn configure(&self, run: &mut Run) -> Result<(), ServiceError> {
        write_config(&mut run.host)?;
        if compute(&run.host.settings) {
            // The plugin's iniset calls must see NOVA_CONF in the shell.
            hypervisor::call(run, "configure_nova_hypervisor")?;
        }
        Ok(())
    }
    fn init(&self, run: &mut Run) -> Result<(), ServiceError> {
        let job = db_job(&run.host);
        keystone::ensure_synced(&mut run.host, job)?;
        if compute(&run.host.settings) {
            write_cpu_conf(&mut run.host)?;
        }
        Ok(())
    }
    fn start(&self, run: &mut Run) -> Result<(), ServiceError> {
        let s = run.host.settings.clone();
        let c = conf(&s).display().to_string();
        let venv_bin = crate::system::python::venv_bin(&run.host, "");
        let bin = |name: &str| venv_bin.join(name).display().to_string();
        if s.is_enabled(&["n-api"]) {
            let record = uwsgi::start_process(
                &mut run.host,
                NAME,
                "n-api",
                &uwsgi::command(&uwsgi_ini(&s)),
                &[],
                Some(uwsgi::listen(&s, PREFIX, PORT)),
            )?;
            uwsgi::wait_http(
                &run.host,
                NAME,
                &record,
                &uwsgi::probe_url(&s, PREFIX, PORT),
                |code| code < 500,
            )?;
        }
        for (svc, script) in [("n-cond", "nova-conductor"), ("n-sch", "nova-scheduler")] {
            if s.is_enabled(&[svc]) {
                let cmd = format!("exec {} --config-file {c}", bin(script));
                uwsgi::start_process(&mut run.host, NAME, svc, &cmd, &[], None)?;
            }
        }
        if compute(&s) {
            hypervisor::call(run, "start_nova_hypervisor")?;
            let cmd = format!(
                "exec {} --config-file {}",
                bin("nova-compute"),
                cpu_conf(&s).display()
            );
            let record = uwsgi::start_process(&mut run.host, NAME, "n-cpu", &cmd, &[], None)?;
            if control(&s) {
                discover_hosts(run);
            }
            if !uwsgi::alive(&run.host, &record) {
                return Err(ServiceError::NotReady {
                    service: NAME.into(),
                    what: "nova-compute exited".into(),
                    timeout_secs: 0,
                    log: Some(record.log.clone()),
                    tail: database::log_tail(&record.log, database::LOG_TAIL),
                });
            }
        }
        Ok(())
    }
    fn stop(&self, run: &mut Run, _all: bool) -> Result<(), ServiceError> {
        // Each takes ~10 s on TERM: stopped together.
        let result = uwsgi::stop_processes(&mut run.host, NAME, PROCESSES);
        if compute(&run.host.settings) {
            hypervisor::call(run, "stop_nova_hypervisor")?;
        }
        result
    }
    fn clean(&self, run: &mut Run) -> Result<(), ServiceError> {
        hypervisor::call(run, "cleanup_nova_hypervisor")?;
        let s = run.host.settings.clone();
        for p in PROCESSES {
            let _ = std::fs::remove_file(database::daemon_log(&s, p));
        }
        keystone::remove_dir_if_ours(&run.host, &conf_dir(&s));
        let _ = std::fs::remove_dir_all(state_dir(&s));
        Ok(())
    }
}
