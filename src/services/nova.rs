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

use crate::config::localconf::Phase;
use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::openstack::accounts::ServiceAccount;
use crate::services::daemon;
use crate::services::database;
use crate::services::uwsgi::{self, WsgiApp};
use crate::services::{DbJob, Descriptor, Layer, Role, Service, ServiceError, hypervisor, oslo};
use crate::system::python::Project;

pub(crate) const NAME: &str = "nova";
const PREFIX: &str = "NOVA";
const PORT: u16 = 8774;
/// DevStack's `write_uwsgi_config … /compute "" nova-api`.
const ROUTE: uwsgi::Route = uwsgi::Route {
    site: "nova-api",
    path: "/compute",
    socket: true,
};
/// The processes, in start order.
pub(crate) const PROCESSES: &[&str] = &["n-api", "n-cond", "n-sch", "n-cpu"];

pub(crate) struct Nova;

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

/// The cell databases and their sync, where the control plane runs.
fn db_sync(host: &Host) -> Vec<crate::system::process::Cmd> {
    let s = &host.settings;
    let c = conf(s);
    let manage = |args: &[&str]| {
        oslo::venv_cmd(host, "nova-manage")
            .arg("--config-file")
            .arg(&c)
            .args(args)
            .label("nova-manage")
    };
    let cell0 = database::connection_url(s, "nova_cell0");
    vec![
        manage(&["api_db", "sync"]),
        manage(&["cell_v2", "map_cell0", "--database_connection", &cell0]),
        manage(&["db", "sync"]),
        manage(&["cell_v2", "create_cell", "--name", "cell1"]),
    ]
}

/// Where nova's libvirt driver mounts volume shares (its `nfs_mount_point_base`
/// default, `$state_path/mnt`).
fn mount_base(s: &Settings) -> PathBuf {
    state_dir(s).join("mnt")
}

fn write_config(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let state = state_dir(&s);
    oslo::make_dir(host, NAME, &state.join("instances"))?;
    oslo::make_dir(host, NAME, &state.join("lock"))?;
    let paste = conf_dir(&s).join("api-paste.ini");
    let workers = s.get_or("API_WORKERS", "1").to_owned();
    oslo::write_conf(host, NAME, &conf(&s), |doc| {
        oslo::common_defaults(doc, &s);
        if let Some(url) = crate::services::rabbit::configured_transport_url(&s) {
            doc.set("DEFAULT", "transport_url", &url);
        }
        doc.set("DEFAULT", "my_ip", s.get_or("HOST_IP", "127.0.0.1"));
        doc.set("DEFAULT", "state_path", &state.display().to_string());
        doc.set(
            "DEFAULT",
            "instances_path",
            &state.join("instances").display().to_string(),
        );
        doc.set("DEFAULT", "osapi_compute_workers", &workers);
        doc.set("DEFAULT", "enabled_apis", "osapi_compute");
        // oslo.service waits up to 60 s for in-flight work on TERM; a development
        // cloud's unstack should not (the supervisor would KILL at its grace anyway).
        doc.set("DEFAULT", "graceful_shutdown_timeout", "2");
        // One node: a resize lands on the same host (else tempest's resize tests wait
        // out the build timeout), as DevStack sets it.
        doc.set("DEFAULT", "allow_resize_to_same_host", "True");
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
        // The console: nova_novnc.rs (DevStack's configure_console_*).
        crate::services::nova_novnc::vnc_options(doc, &s);
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
        oslo::authtoken(doc, &s, NAME);
        oslo::keystoneauth(doc, &s, "placement", "placement");
        oslo::keystoneauth(doc, &s, "neutron", "neutron");
        // Metadata through neutron's agent (n-api-meta): nova_metadata.rs.
        crate::services::nova_metadata::neutron_options(doc, &s);
        oslo::keystoneauth(doc, &s, "service_user", NAME);
        doc.set("service_user", "send_service_user_token", "True");
    })?;
    oslo::copy_file(
        host,
        NAME,
        &oslo::venv_etc(host, "nova/api-paste.ini"),
        &paste,
    )?;
    let c = conf(&s);
    let app = WsgiApp {
        wsgi: "nova.wsgi.osapi_compute:application".into(),
        http: uwsgi::bind(&s, Some(ROUTE), PREFIX, PORT),
        venv: crate::system::python::venv_dir(&host.settings),
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
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)?;
    uwsgi::publish(host, NAME, ROUTE, PREFIX, PORT)
}

/// `NOVA_CPU_CONF`: nova.conf as the hypervisor plugin left it, without database
/// credentials (nova-compute has no DB access). Written in init, so
/// `[[post-config|$NOVA_CPU_CONF]]` lands in it.
fn write_cpu_conf(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let text = fs_err::read_to_string(conf(&s)).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: conf(&s),
        source,
    })?;
    let base = crate::ini::IniDoc::parse(&text);
    oslo::write_conf(host, NAME, &cpu_conf(&s), |doc| {
        *doc = base;
        doc.delete("database", "connection");
        doc.delete("api_database", "connection");
    })
}

/// How often the cell databases are asked whether compute registered and is mapped.
const MAP_POLL: Duration = Duration::from_millis(500);
/// How long after compute registered the scheduler's periodic discovery
/// (`discover_hosts_in_cells_interval = 2`) gets before we run `discover_hosts`.
const SCHEDULER_GRACE: Duration = Duration::from_secs(4);

/// Two counts, one a line: the hosts `nova_api` maps to cell1, and the live compute
/// nodes registered in `nova_cell1`. PostgreSQL has no cross-database queries, so
/// psql switches database (`\c`; quiet under `-q`).
fn cell1_hosts_sql(backend: database::Backend) -> &'static str {
    match backend {
        database::Backend::Mysql => {
            "SELECT COUNT(*) FROM nova_api.host_mappings h \
             JOIN nova_api.cell_mappings c ON h.cell_id = c.id WHERE c.name = 'cell1';\n\
             SELECT COUNT(*) FROM nova_cell1.compute_nodes WHERE deleted = 0;\n"
        }
        database::Backend::Postgresql => {
            "\\c nova_api\n\
             SELECT COUNT(*) FROM host_mappings h \
             JOIN cell_mappings c ON h.cell_id = c.id WHERE c.name = 'cell1';\n\
             \\c nova_cell1\n\
             SELECT COUNT(*) FROM compute_nodes WHERE deleted = 0;\n"
        }
    }
}

/// Where compute stands in cell1, from the output of [`cell1_hosts_sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell1Hosts {
    mapped: bool,
    registered: bool,
}

fn parse_cell1_hosts(out: &str) -> Option<Cell1Hosts> {
    let counts: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    match counts[..] {
        [mapped, registered] => Some(Cell1Hosts {
            mapped: mapped > 0,
            registered: registered > 0,
        }),
        _ => None,
    }
}

/// Asks the databases (as their administrator, locally); None when that fails (e.g.
/// the database server runs on another host).
fn cell1_hosts(host: &Host) -> Option<Cell1Hosts> {
    let backend = database::Backend::from_settings(&host.settings);
    database::admin_sql(host, backend, cell1_hosts_sql(backend))
        .ok()
        .and_then(|out| parse_cell1_hosts(&out))
}

fn nova_manage_cell_v2(host: &Host, what: &str) -> crate::system::process::Cmd {
    oslo::venv_cmd(host, "nova-manage")
        .arg("--config-file")
        .arg(conf(&host.settings))
        .args(["cell_v2", what])
        .label("nova-manage")
        .timeout(Duration::from_secs(60))
        .allow_failure()
}

/// Waits until the compute host is mapped to cell1, within
/// max(SERVICE_TIMEOUT, 30 s); a warning if not. Polls the databases every 0.5 s
/// (a SQL round trip, not a 2-3 s nova-manage start): usually the scheduler's periodic
/// discovery maps compute soon after it registers; when it has not within
/// [`SCHEDULER_GRACE`], `nova-manage cell_v2 discover_hosts` runs, once.
fn discover_hosts(host: &mut Host) {
    let t0 = Instant::now();
    let limit = daemon::service_timeout(&host.settings).max(Duration::from_secs(30));
    let mut registered_at: Option<Instant> = None;
    let mut discovered = false;
    loop {
        let Some(now) = cell1_hosts(host) else {
            host.note("nova: cannot read the cell databases locally; asking nova-manage instead");
            discover_hosts_by_manage(host, t0, limit);
            return;
        };
        if now.mapped {
            host.log.note(&format!(
                "nova: compute host mapped to cell1 after {:.1} s{}",
                t0.elapsed().as_secs_f64(),
                if discovered { " (discover_hosts)" } else { "" }
            ));
            return;
        }
        if now.registered {
            let since = *registered_at.get_or_insert_with(Instant::now);
            if !discovered && since.elapsed() >= SCHEDULER_GRACE {
                let _ = nova_manage_cell_v2(host, "discover_hosts").run();
                discovered = true;
                continue;
            }
        }
        if t0.elapsed() > limit {
            warn_unmapped(host);
            return;
        }
        std::thread::sleep(MAP_POLL);
    }
}

/// The way without database access: `discover_hosts` and `list_hosts` in turn
/// until cell1 lists a host.
fn discover_hosts_by_manage(host: &mut Host, t0: Instant, limit: Duration) {
    loop {
        let _ = nova_manage_cell_v2(host, "discover_hosts").run();
        let listed = nova_manage_cell_v2(host, "list_hosts")
            .capture()
            .run()
            .map(|o| o.stdout)
            .unwrap_or_default();
        if listed
            .lines()
            .any(|l| l.starts_with('|') && l.contains("cell1"))
        {
            host.log.note(&format!(
                "nova: compute host mapped to cell1 after {:.1} s",
                t0.elapsed().as_secs_f64()
            ));
            return;
        }
        if t0.elapsed() > limit {
            warn_unmapped(host);
            return;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn warn_unmapped(host: &mut Host) {
    host.warn(
        "nova: no compute host was mapped to cell1 in time; \
         the scheduler's periodic discovery will map it when it registers",
    );
}

/// Catalog: `compute` at `/v2.1` on :8774.
pub(crate) const CATALOG: ServiceAccount = ServiceAccount {
    name: "nova",
    service_type: "compute",
    description: "Nova Compute Service",
    extra_role: Some("admin"),
    prefix: PREFIX,
    default_port: PORT,
    path: "/v2.1",
    route: ROUTE.path,
};

/// nova: its control plane on the controller, nova-compute on every compute node.
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: PROCESSES,
    role: Role::Any,
    after: &["keystone", "glance", "placement", "neutron"],
    rpc_backend: Some(("nova", "NOVA_CONF", "DEFAULT")),
    catalog: &[CATALOG],
    python: &[Project {
        dist: "nova",
        repo_var: "NOVA_REPO",
    }],
    packages: uwsgi::PACKAGES,
    defaults: &[
        ("NOVA_CONF_DIR", "/etc/nova"),
        ("NOVA_CONF", "$NOVA_CONF_DIR/nova.conf"),
        ("NOVA_CPU_CONF", "$NOVA_CONF_DIR/nova-cpu.conf"),
    ],
    databases: &["nova_api", "nova_cell0", "nova_cell1"],
    processes: PROCESSES,
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for Nova {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn db_job(&self, host: &Host) -> Option<DbJob> {
        // A compute-only node has no database of its own.
        control(&host.settings).then(|| DbJob {
            service: NAME,
            databases: DESCRIPTOR.databases,
            cmds: db_sync(host),
        })
    }
    fn install(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        if compute(&cx.host.settings) {
            hypervisor::call(cx, "install_nova_hypervisor")?;
        }
        Ok(())
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        write_config(cx.host)?;
        if compute(&cx.host.settings) {
            // The plugin's iniset calls must see NOVA_CONF in the shell.
            hypervisor::call(cx, "configure_nova_hypervisor")?;
        }
        Ok(())
    }
    fn init(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        if compute(&cx.host.settings) {
            write_cpu_conf(cx.host)?;
        }
        Ok(())
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let c = conf(&s).display().to_string();
        let venv_bin = crate::system::python::venv_bin(&cx.host.settings, "");
        let bin = |name: &str| venv_bin.join(name).display().to_string();
        if s.is_enabled(&["n-api"]) {
            uwsgi::start_routed(cx.host, NAME, "n-api", &uwsgi_ini(&s), ROUTE)?;
        }
        for (svc, script) in [("n-cond", "nova-conductor"), ("n-sch", "nova-scheduler")] {
            if s.is_enabled(&[svc]) {
                let cmd = format!("exec {} --config-file {c}", bin(script));
                oslo::start_process(cx.host, NAME, svc, &cmd, &[], None)?;
            }
        }
        if compute(&s) {
            hypervisor::call(cx, "start_nova_hypervisor")?;
            start_compute(cx)?;
        }
        Ok(())
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        // Each takes ~10 s on TERM: stopped together.
        let result = oslo::stop_processes(cx.host, NAME, PROCESSES);
        crate::services::cinder::unmount_under(cx.host, &mount_base(&cx.host.settings));
        if compute(&cx.host.settings) {
            hypervisor::call(cx, "stop_nova_hypervisor")?;
        }
        result
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        hypervisor::call(cx, "cleanup_nova_hypervisor")?;
        let s = cx.host.settings.clone();
        for name in PROCESSES {
            daemon::remove_daemon_log(&s, name);
        }
        uwsgi::clean_api(cx.host, &conf_dir(&s));
        // Not through a bind of a volume share: that would delete the volumes.
        crate::services::cinder::unmount_under(cx.host, &mount_base(&s));
        let _ = fs_err::remove_dir_all(state_dir(&s));
        Ok(())
    }
}

/// DevStack's `start_nova_compute` (the stack calls it after `start_nova_hypervisor`,
/// plugins after a change of nova-cpu.conf): nova-cpu.conf derived from nova.conf as
/// it is now (post-config sections merged), its own `[[post-config|$NOVA_CPU_CONF]]`
/// merged again, then nova-compute (started again when it runs) and, on a controller,
/// the host mapped into its cell. Nothing when n-cpu is not enabled.
pub(crate) fn start_compute(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let s = cx.host.settings.clone();
    if !compute(&s) {
        return Ok(());
    }
    let venv_bin = crate::system::python::venv_bin(&cx.host.settings, "");
    let bin = |name: &str| venv_bin.join(name).display().to_string();
    write_cpu_conf(cx.host)?;
    cx.merge_into(Phase::PostConfig, &cpu_conf(&s))
        .map_err(|source| ServiceError::Shell {
            service: NAME.into(),
            source,
        })?;
    let cmd = format!(
        "exec {} --config-file {}",
        bin("nova-compute"),
        cpu_conf(&s).display()
    );
    // With cinder's NFS share on this host, nova's mount of it is a bind.
    let env: Vec<(String, String)> =
        crate::services::cinder::compute_mount_dir(cx.host, &mount_base(&s))?
            .map(|dir| {
                let path = format!("{}:{}", dir.display(), oslo::service_path(cx.host));
                ("PATH".to_owned(), path)
            })
            .into_iter()
            .collect();
    let record = oslo::start_process(cx.host, NAME, "n-cpu", &cmd, &env, None)?;
    if control(&s) {
        // Mapped once nova-compute registers, which takes it a while: waited for at
        // the end of the start step, while the services after nova start.
        daemon::wait_or_defer(cx.host, NAME, |host| {
            discover_hosts(host);
            Ok(())
        })?;
    }
    if !oslo::alive(cx.host, &record) {
        return Err(ServiceError::NotReady {
            service: NAME.into(),
            what: "nova-compute exited".into(),
            timeout_secs: 0,
            log: Some(record.log.clone()),
            tail: daemon::log_tail(&record.log, daemon::LOG_TAIL),
        });
    }
    Ok(())
}

/// DevStack's `stop_nova_compute`: nova-compute's process only (the hypervisor and
/// the other nova services keep running).
pub(crate) fn stop_compute(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    oslo::stop_processes(cx.host, NAME, &["n-cpu"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::database::Backend;

    #[test]
    fn the_cell1_query_counts_mappings_then_compute_nodes() {
        let my = cell1_hosts_sql(Backend::Mysql);
        assert_eq!(
            my,
            "SELECT COUNT(*) FROM nova_api.host_mappings h JOIN nova_api.cell_mappings c \
             ON h.cell_id = c.id WHERE c.name = 'cell1';\n\
             SELECT COUNT(*) FROM nova_cell1.compute_nodes WHERE deleted = 0;\n"
        );
        let pg = cell1_hosts_sql(Backend::Postgresql);
        let lines: Vec<&str> = pg.lines().collect();
        assert_eq!(lines[0], "\\c nova_api");
        assert!(lines[1].starts_with("SELECT COUNT(*) FROM host_mappings h JOIN cell_mappings c"));
        assert!(lines[1].ends_with("WHERE c.name = 'cell1';"));
        assert_eq!(lines[2], "\\c nova_cell1");
        assert_eq!(
            lines[3],
            "SELECT COUNT(*) FROM compute_nodes WHERE deleted = 0;"
        );
        // No password or other secret: the text is fixed.
        assert!(!my.contains("PASSWORD") && !pg.contains("PASSWORD"));
    }

    #[test]
    fn counts_are_parsed_from_either_client() {
        assert_eq!(
            parse_cell1_hosts("0\n1\n"),
            Some(Cell1Hosts {
                mapped: false,
                registered: true
            })
        );
        assert_eq!(
            parse_cell1_hosts("1\r\n 1 \n"),
            Some(Cell1Hosts {
                mapped: true,
                registered: true
            })
        );
        // psql without -q would announce the switch; only the counts count.
        assert_eq!(
            parse_cell1_hosts(
                "You are now connected to database \"nova_api\" as user \"postgres\".\n0\n\
                 You are now connected to database \"nova_cell1\".\n0\n"
            ),
            Some(Cell1Hosts {
                mapped: false,
                registered: false
            })
        );
        assert_eq!(parse_cell1_hosts(""), None);
        assert_eq!(parse_cell1_hosts("1\n"), None);
        assert_eq!(parse_cell1_hosts("ERROR 1146: no such table\n"), None);
    }
}
