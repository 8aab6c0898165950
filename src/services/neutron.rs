//! neutron's API server alone (`q-svc`): ML2 with no agents and no mechanism
//! drivers, `service_plugins = router`, `neutron.wsgi.api` under uwsgi on
//! `NEUTRON_SERVICE_PORT`. nova's server API needs a network endpoint even for
//! `--nic none`. After it answers, one authenticated warm-up request per worker: the
//! first `GET /v2.0/ports` of a fresh worker fails otherwise (an AttributeError from
//! lazily configured models, seen with SQLAlchemy 2.0 and 2.1).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::openstack::accounts::ServiceAccount;
use crate::services::database;
use crate::services::neutron_plugin_api;
use crate::services::uwsgi::{self, Route, UwsgiApi, WsgiApp};
use crate::services::{Descriptor, Layer, ServiceError, daemon, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

pub(crate) const NAME: &str = "neutron";
pub(crate) const SERVICE: &str = "q-svc";
const PREFIX: &str = "NEUTRON";
const PORT: u16 = 9696;

pub(crate) struct Neutron;

pub(crate) fn conf(s: &Settings) -> PathBuf {
    s.path("NEUTRON_CONF")
}

/// `/$Q_PLUGIN_CONF_FILE`: DevStack's value is relative to `/`
/// (`etc/neutron/plugins/ml2/ml2_conf.ini`) and plugins write `/$Q_PLUGIN_CONF_FILE`,
/// so the file neutron reads is that one.
fn ml2_conf(s: &Settings) -> PathBuf {
    match s.get("Q_PLUGIN_CONF_FILE").filter(|v| !v.is_empty()) {
        Some(v) => Path::new("/").join(v),
        None => Neutron::conf_dir(s).join("plugins/ml2/ml2_conf.ini"),
    }
}

pub(crate) fn state_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("neutron")
}

/// The variables plugins may still set in `stack post-config` (read back then).
pub(crate) const LATE_VARS: &[&str] = &["Q_SERVICE_PLUGIN_CLASSES"];

/// DevStack's process names for the OVN parts of neutron.
pub(crate) const PERIODIC_WORKERS: &str = "neutron-periodic-workers";
pub(crate) const MAINTENANCE_WORKER: &str = "neutron-ovn-maintenance-worker";
pub(crate) const METADATA_AGENT: &str = "q-ovn-metadata-agent";
/// The OVN agent (`neutron-ovn-agent`) with its metadata extension: DevStack's
/// current default in place of [`METADATA_AGENT`].
pub(crate) const OVN_AGENT: &str = "q-ovn-agent";

/// Which agent serves the guests' metadata: the OVN agent when it is enabled (the
/// old name alone keeps the old agent), none without OVN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetadataServer {
    OvnAgent,
    MetadataAgent,
}

impl MetadataServer {
    pub(crate) fn of(s: &Settings) -> Option<Self> {
        if ovn_mode(s) { Self::named(s) } else { None }
    }

    /// The agent `ENABLED_SERVICES` names, whether or not OVN's central part runs
    /// here (a compute node's agent talks to the controller's).
    pub(crate) fn named(s: &Settings) -> Option<Self> {
        if s.is_enabled(&[OVN_AGENT, "neutron-ovn-agent"]) {
            Some(Self::OvnAgent)
        } else if s.is_enabled(&[METADATA_AGENT, "neutron-ovn-metadata-agent"]) {
            Some(Self::MetadataAgent)
        } else {
            None
        }
    }

    /// Its process name (DevStack's service name).
    pub(crate) fn process(self) -> &'static str {
        match self {
            Self::OvnAgent => OVN_AGENT,
            Self::MetadataAgent => METADATA_AGENT,
        }
    }

    pub(crate) fn binary(self) -> &'static str {
        match self {
            Self::OvnAgent => "neutron-ovn-agent",
            Self::MetadataAgent => "neutron-ovn-metadata-agent",
        }
    }

    /// Its config file, DevStack's name for it.
    pub(crate) fn conf(self, s: &Settings) -> PathBuf {
        match self {
            Self::OvnAgent => Neutron::conf_dir(s).join("plugins/ml2/ovn_agent.ini"),
            Self::MetadataAgent => metadata_agent_conf(s),
        }
    }
}

/// ML2 with the OVN mechanism driver: `Q_AGENT=ovn` (DevStack's default) and OVN's
/// central part enabled. Otherwise the API server alone, as before.
pub(crate) fn ovn_mode(s: &Settings) -> bool {
    s.get_or("Q_AGENT", "ovn") == "ovn" && s.is_enabled(&["ovn-northd"])
}

/// `[DEFAULT] service_plugins`: the L3 plugin, what DevStack's lib/neutron adds for
/// the enabled `neutron-*`/`q-*` services, then `Q_SERVICE_PLUGIN_CLASSES` (what
/// plugins added with `neutron_service_plugin_class_add`), each once.
pub(crate) fn service_plugins(s: &Settings) -> String {
    let mut list: Vec<String> = vec![if ovn_mode(s) { "ovn-router" } else { "router" }.into()];
    for (services, plugin) in [
        (&["neutron-segments", "q-segments"], "segments"),
        (&["neutron-trunk", "q-trunk"], "trunk"),
        (&["neutron-qos", "q-qos"], "qos"),
        (
            &["neutron-port-forwarding", "q-port-forwarding"],
            "port_forwarding",
        ),
        (&["neutron-log", "q-log"], "log"),
        (&["neutron-placement", "q-placement"], "placement"),
    ] {
        if s.is_enabled(services) {
            list.push(plugin.into());
        }
    }
    for extra in s.get_or("Q_SERVICE_PLUGIN_CLASSES", "").split(',') {
        let extra = extra.trim();
        if !extra.is_empty() && !list.iter().any(|p| p == extra) {
            list.push(extra.into());
        }
    }
    list.join(",")
}

/// ml2_conf.ini for OVN (DevStack's `neutron_plugin_configure_service` with
/// `Q_AGENT=ovn`); option names as neutron 29 declares them.
pub(crate) fn ml2_ovn(doc: &mut crate::ini::IniDoc, s: &Settings) {
    let physnet = s.get_or("PUBLIC_PHYSICAL_NETWORK", "public");
    doc.set("ml2", "type_drivers", "local,flat,vlan,geneve");
    // neutron 29's name (tenant_network_types is its deprecated alias).
    doc.set(
        "ml2",
        "project_network_types",
        s.get_or("Q_ML2_TENANT_NETWORK_TYPE", "geneve"),
    );
    doc.set(
        "ml2",
        "mechanism_drivers",
        s.get_or("Q_ML2_PLUGIN_MECHANISM_DRIVERS", "ovn"),
    );
    doc.set(
        "ml2",
        "extension_drivers",
        s.get_or("Q_ML2_PLUGIN_EXT_DRIVERS", "port_security"),
    );
    doc.set("ml2", "overlay_ip_version", "4");
    doc.set(
        "ml2_type_geneve",
        "vni_ranges",
        s.get_or("ML2_VNI_RANGES", "1:65536"),
    );
    // OVN's geneve header (DevStack's value).
    doc.set("ml2_type_geneve", "max_header_size", "38");
    doc.set("ml2_type_flat", "flat_networks", physnet);
    doc.set("ml2_type_vlan", "network_vlan_ranges", physnet);
    doc.set("securitygroup", "enable_security_group", "True");
    doc.set(
        "ovn",
        "ovn_nb_connection",
        &crate::services::ovn::nb_remote(s),
    );
    doc.set(
        "ovn",
        "ovn_sb_connection",
        &crate::services::ovn::sb_remote(s),
    );
    doc.set(
        "ovn",
        "ovn_l3_scheduler",
        s.get_or("OVN_L3_SCHEDULER", "leastloaded"),
    );
    doc.set("ovn", "ovn_metadata_enabled", "True");
    doc.set(
        "ovn",
        "enable_distributed_floating_ip",
        if s.flag("ENABLE_DISTRIBUTED_FLOATING_IP", false) {
            "True"
        } else {
            "False"
        },
    );
    doc.set("ovn", "neutron_sync_mode", "log");
}

/// `$NEUTRON_CONF_DIR/neutron_ovn_metadata_agent.ini` (DevStack's name).
pub(crate) fn metadata_agent_conf(s: &Settings) -> PathBuf {
    Neutron::conf_dir(s).join("neutron_ovn_metadata_agent.ini")
}

/// The OVN metadata agent, or the OVN agent's metadata extension (the same options,
/// and `[agent] extensions = metadata`): it serves 169.254.169.254 in a namespace
/// per network through haproxy, and asks nova's metadata API with the shared secret.
pub(crate) fn metadata_agent(
    doc: &mut crate::ini::IniDoc,
    s: &Settings,
    state: &std::path::Path,
    server: MetadataServer,
) {
    oslo::common_defaults(doc, s);
    doc.set("DEFAULT", "state_path", &state.display().to_string());
    doc.set(
        "DEFAULT",
        "nova_metadata_host",
        s.get_or("Q_META_DATA_IP", s.get_or("SERVICE_HOST", "127.0.0.1")),
    );
    doc.set("DEFAULT", "nova_metadata_port", "8775");
    doc.set(
        "DEFAULT",
        "metadata_proxy_shared_secret",
        s.str("METADATA_PROXY_SHARED_SECRET"),
    );
    doc.set("DEFAULT", "metadata_workers", "1");
    doc.set("ovs", "ovsdb_connection", crate::services::ovn::OVS_DB_SOCK);
    doc.set(
        "ovn",
        "ovn_sb_connection",
        &crate::services::ovn::sb_remote(s),
    );
    doc.set("agent", "root_helper", "sudo");
    if server == MetadataServer::OvnAgent {
        doc.set(
            "agent",
            "extensions",
            s.get_or("OVN_AGENT_EXTENSIONS", "metadata"),
        );
    }
    privsep(doc, s, &[server.conf(s)]);
}

/// The privsep daemons are started by path: `sudo` resets PATH, so a bare
/// `privsep-helper` (in the venv) would not be found.
fn privsep(doc: &mut crate::ini::IniDoc, s: &Settings, confs: &[PathBuf]) {
    let helper = crate::system::python::venv_bin(s, "privsep-helper");
    let files: String = confs.iter().fold(String::new(), |mut out, c| {
        let _ = write!(out, " --config-file {}", c.display());
        out
    });
    for section in [
        "privsep",
        "privsep_dhcp_release",
        "privsep_ovs_vsctl",
        "privsep_namespace",
        "privsep_conntrack",
        "privsep_link",
    ] {
        doc.set(
            section,
            "helper_command",
            &format!("sudo {}{files}", helper.display()),
        );
    }
}

/// `--config-file` for neutron.conf, ml2_conf.ini and what plugins added with
/// `neutron_server_config_add` (DevStack's `determine_config_files neutron-server`).
fn server_config_args(s: &Settings) -> String {
    let mut args = format!(
        "--config-file {} --config-file {}",
        conf(s).display(),
        ml2_conf(s).display()
    );
    for extra in neutron_plugin_api::extra_conf_files(s) {
        let _ = write!(args, " --config-file {}", extra.display());
    }
    args
}

/// The periodic workers, OVN's maintenance worker (it syncs neutron's database to
/// OVN's and repairs drift) and the metadata agent, as DevStack starts them.
fn start_ovn_workers(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let s = cx.host.settings.clone();
    let bin = |n: &str| crate::system::python::venv_bin(&s, n).display().to_string();
    let args = server_config_args(&s);
    for (name, script) in [
        (PERIODIC_WORKERS, "neutron-periodic-workers"),
        (MAINTENANCE_WORKER, "neutron-ovn-maintenance-worker"),
    ] {
        let cmd = format!("exec {} {args}", bin(script));
        oslo::start_process(cx.host, NAME, name, &cmd, &[], None)?;
    }
    start_agents(cx)
}

/// DevStack's `start_neutron` / `start_neutron_agents` (the agents; the API is
/// `start_neutron_service_and_check`'s): with OVN the one agent neutron runs here,
/// the OVN agent or the older metadata agent, when enabled (started again when it
/// runs), waited for until neutron lists it alive.
pub(crate) fn start_agents(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let s = cx.host.settings.clone();
    let Some(server) = MetadataServer::of(&s) else {
        return Ok(());
    };
    let cmd = format!(
        "exec {} --config-file {} --config-file {}",
        crate::system::python::venv_bin(&s, server.binary()).display(),
        conf(&s).display(),
        server.conf(&s).display()
    );
    let record = oslo::start_process(cx.host, NAME, server.process(), &cmd, &[], None)?;
    cx.host.ledger.set_fact(METADATA_NETNS_FACT, "ovnmeta-");
    if s.is_enabled(&["key"]) {
        // Listed alive after neutron's next ping of the chassis: waited for at the
        // end of the start step, while the services after neutron start.
        daemon::wait_or_defer(cx.host, NAME, move |host| {
            wait_for_agent(host, server, &record)
        })?;
    }
    Ok(())
}

/// The least time an OVN agent is given to be listed alive.
const AGENT_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Is an agent of `binary` listed alive in neutron's `GET /v2.0/agents` answer?
fn agent_alive(agents: &serde_json::Value, binary: &str) -> bool {
    agents["agents"].as_array().is_some_and(|list| {
        list.iter()
            .any(|a| a["binary"].as_str() == Some(binary) && a["alive"].as_bool() == Some(true))
    })
}

/// Readiness as a guest's first boot needs it: the metadata agent has registered
/// with OVN's southbound database and neutron lists it alive (until then a new
/// network's metadata port is not served). Within SERVICE_TIMEOUT; fails at once
/// when the agent exited.
fn wait_for_agent(
    host: &mut Host,
    server: MetadataServer,
    record: &crate::state::ProcessRecord,
) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let api = oslo::Api::new(host, NAME)?;
    let url = format!("{}v2.0/agents", api_url(&s));
    let binary = server.binary();
    let took = daemon::wait_until(
        NAME,
        &format!("{binary} to be listed alive in GET /v2.0/agents"),
        &record.log,
        // Listed alive only after neutron's next ping of the chassis, which it
        // sends at most every agent_down_time / 2 (37.5 s): on a busy machine the
        // agent's registration and that ping together pass SERVICE_TIMEOUT's 60 s.
        daemon::service_timeout(&s).max(AGENT_ALIVE_TIMEOUT),
        || {
            let agents = api.get(&url).map_err(|e| e.to_string())?;
            if agent_alive(&agents, binary) {
                Ok(())
            } else {
                Err(format!("no alive {binary} yet"))
            }
        },
        || !oslo::alive(host, record),
    )?;
    host.note(&format!(
        "neutron: {binary} is listed alive after {:.1} s",
        took.as_secs_f64()
    ));
    Ok(())
}

/// DevStack's `start_neutron_service_and_check` (a plugin starts neutron again after
/// `stop_neutron` and a change of its config): the API under uWSGI, waited for through
/// the front proxy at `/networking` (SERVICE_TIMEOUT), then with OVN the periodic and
/// maintenance workers and the metadata agent. Like DevStack's, it writes no config
/// and creates no network.
pub(crate) fn start_service_and_check(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let ini = Neutron::uwsgi_ini(&cx.host.settings);
    uwsgi::start_routed(cx.host, NAME, SERVICE, &ini, ROUTE)?;
    if ovn_mode(&cx.host.settings) {
        start_ovn_workers(cx)?;
    }
    Ok(())
}

/// DevStack's `stop_neutron`: neutron's processes (and the metadata haproxies they
/// left behind), then, with `Q_AGENT=ovn`, OVN's daemons unless `SKIP_STOP_OVN`
/// (ovn's own stop decides). Nothing is removed.
pub(crate) fn stop_neutron(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let stopped = crate::services::Service::stop(&Neutron, cx, false);
    if cx.host.settings.get_or("Q_AGENT", "ovn") == "ovn" {
        crate::services::Service::stop(&crate::services::ovn::Ovn, cx, false)?;
    }
    stopped
}

/// Set while this tree's metadata agent may have made `ovnmeta-*` namespaces: their
/// names are host-wide, and another tree's unstack must not delete this cloud's.
pub(crate) const METADATA_NETNS_FACT: &str = "ovn-metadata-namespaces";

/// The OVN metadata agent leaves its haproxies (one per network, daemonised, their
/// pids under `$state_path/external/pids`) and their `ovnmeta-<network>` namespaces
/// behind when it stops: unstack stops those haproxies by pid (only processes whose
/// name is haproxy) and deletes those namespaces (the veth pairs go with them).
pub(crate) fn stop_metadata_proxies(host: &mut Host) {
    let pids = state_dir(&host.settings).join("external/pids");
    for entry in fs_err::read_dir(&pids).into_iter().flatten().flatten() {
        let Some(pid) = fs_err::read_to_string(entry.path())
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let comm = fs_err::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "haproxy" {
            host.note(&format!("neutron: stopping metadata haproxy {pid}"));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = fs_err::remove_file(entry.path());
    }
    if host.ledger.fact(METADATA_NETNS_FACT).is_none() {
        return;
    }
    host.ledger.forget_fact(METADATA_NETNS_FACT);
    let out = host
        .cmd("ip")
        .args(["netns", "list"])
        .capture()
        .allow_failure()
        .run()
        .map(|o| o.stdout)
        .unwrap_or_default();
    for ns in out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("ovnmeta-"))
    {
        let _ = host
            .cmd("ip")
            .args(["netns", "del", ns])
            .allow_failure()
            .run();
    }
}

/// One authenticated round of list requests, so every worker's models are set up
/// before nova asks for ports.
fn warm_up(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let token = cx
        .host
        .keystone()
        .and_then(|c| c.token().map(str::to_owned))
        .map_err(|e| ServiceError::caused(NAME, "warm-up token", e))?;
    let base =
        crate::services::frontproxy::probe_url(&cx.host.settings, &format!("{}/", ROUTE.path));
    let workers = cx.host.settings.number("API_WORKERS", 1).max(1);
    for _ in 0..workers {
        for path in ["v2.0/networks", "v2.0/ports", "v2.0/ports"] {
            let url = format!("{base}{path}");
            let answer = oslo::http_get(&url, Some(&token), oslo::REQUEST_TIMEOUT * 6);
            cx.host
                .note(&format!("neutron warm-up: GET {url}: {answer:?}"));
        }
    }
    Ok(())
}

/// DevStack's `write_uwsgi_config … /networking "" neutron-api`.
/// Neutron's root URL for the stack's own requests (through the front proxy).
pub(crate) fn api_url(s: &Settings) -> String {
    crate::services::frontproxy::probe_url(s, &format!("{}/", ROUTE.path))
}

pub(crate) const ROUTE: Route = Route {
    site: "neutron-api",
    path: "/networking",
    socket: true,
};

pub(crate) const CATALOG: ServiceAccount = ServiceAccount {
    name: "neutron",
    service_type: "network",
    description: "Neutron Service",
    extra_role: Some("admin"),
    prefix: PREFIX,
    default_port: PORT,
    path: "",
    route: ROUTE.path,
};

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[SERVICE, "neutron-api"],
    after: &["keystone", "ovn"],
    catalog: &[CATALOG],
    rpc_backend: Some(("neutron", "NEUTRON_CONF", "DEFAULT")),
    python: &[Project {
        dist: "neutron",
        repo_var: "NEUTRON_REPO",
    }],
    packages: &["uwsgi-core", "uwsgi-plugin-python3", "haproxy"],
    defaults: &[
        ("NEUTRON_CONF_DIR", "/etc/neutron"),
        ("Q_META_DATA_IP", "$SERVICE_HOST"),
        ("ENABLE_DISTRIBUTED_FLOATING_IP", "False"),
        ("OVN_L3_SCHEDULER", "leastloaded"),
        ("OVN_L3_CREATE_PUBLIC_NETWORK", "True"),
        ("PUBLIC_GATEWAY_IN_HOST", "False"),
        ("PUBLIC_NAMESPACE", "devstack-public"),
        ("NEUTRON_CONF", "$NEUTRON_CONF_DIR/neutron.conf"),
        // DevStack's lib/neutron and lib/neutron_plugins/ml2 globals that plugins
        // read; Q_PLUGIN_CONF_FILE relative to / (plugins write /$Q_PLUGIN_CONF_FILE).
        ("Q_PLUGIN_CONF_PATH", "${NEUTRON_CONF_DIR#/}/plugins/ml2"),
        ("Q_PLUGIN_CONF_FILENAME", "ml2_conf.ini"),
        (
            "Q_PLUGIN_CONF_FILE",
            "$Q_PLUGIN_CONF_PATH/$Q_PLUGIN_CONF_FILENAME",
        ),
        ("Q_DHCP_CONF_FILE", "$NEUTRON_CONF_DIR/dhcp_agent.ini"),
        ("NEUTRON_DHCP_CONF", "$Q_DHCP_CONF_FILE"),
        ("Q_L3_CONF_FILE", "$NEUTRON_CONF_DIR/l3_agent.ini"),
        ("NEUTRON_L3_CONF", "$Q_L3_CONF_FILE"),
        ("Q_META_CONF_FILE", "$NEUTRON_CONF_DIR/metadata_agent.ini"),
        ("Q_RR_CONF_FILE", "$NEUTRON_CONF_DIR/rootwrap.conf"),
        ("NEUTRON_BIN_DIR", "$(get_python_exec_prefix)"),
        ("Q_HOST", "$SERVICE_HOST"),
        ("Q_PROTOCOL", "$SERVICE_PROTOCOL"),
        ("Q_ROUTER_NAME", "router1"),
    ],
    databases: &["neutron"],
    processes: &[
        SERVICE,
        PERIODIC_WORKERS,
        MAINTENANCE_WORKER,
        METADATA_AGENT,
        OVN_AGENT,
    ],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl UwsgiApi for Neutron {
    const DESCRIPTOR: &'static Descriptor = &DESCRIPTOR;
    const PROCESS: &'static str = SERVICE;
    const PREFIX: &'static str = PREFIX;
    const PORT: u16 = PORT;
    const ROUTE: Option<Route> = Some(ROUTE);
    fn conf_dir(s: &Settings) -> PathBuf {
        s.path("NEUTRON_CONF_DIR")
    }
    fn uwsgi_ini(s: &Settings) -> PathBuf {
        Neutron::conf_dir(s).join("neutron-api-uwsgi.ini")
    }
    fn write_config(host: &mut Host) -> Result<(), ServiceError> {
        let s = host.settings.clone();
        let state = state_dir(&s);
        oslo::make_dir(host, NAME, &state.join("lock"))?;
        let paste = Neutron::conf_dir(&s).join("api-paste.ini");
        oslo::write_conf(host, NAME, &conf(&s), |doc| {
            oslo::common_defaults(doc, &s);
            doc.set("DEFAULT", "core_plugin", "ml2");
            doc.set("DEFAULT", "service_plugins", &service_plugins(&s));
            doc.set("DEFAULT", "auth_strategy", "keystone");
            doc.set("DEFAULT", "state_path", &state.display().to_string());
            doc.set("DEFAULT", "api_paste_config", &paste.display().to_string());
            if let Some(url) = crate::services::rabbit::configured_transport_url(&s) {
                doc.set("DEFAULT", "transport_url", &url);
            }
            // Without OVN no port ever binds: the API server alone, no compute
            // notifications. With OVN nova waits for network-vif-plugged.
            let notify = if ovn_mode(&s) { "True" } else { "False" };
            doc.set("DEFAULT", "notify_nova_on_port_status_changes", notify);
            doc.set("DEFAULT", "notify_nova_on_port_data_changes", notify);
            if ovn_mode(&s) {
                // OVN has no RPC agents: no neutron-rpc-server (DevStack starts it
                // unless rpc_workers is 0).
                doc.set("DEFAULT", "rpc_workers", "0");
                privsep(doc, &s, &[conf(&s), ml2_conf(&s)]);
            }
            doc.set(
                "database",
                "connection",
                &database::connection_url(&s, "neutron"),
            );
            doc.set(
                "oslo_concurrency",
                "lock_path",
                &state.join("lock").display().to_string(),
            );
            oslo::authtoken(doc, &s, NAME);
            oslo::keystoneauth(doc, &s, "nova", "nova");
        })?;
        let with_ovn = ovn_mode(&s);
        oslo::write_conf(host, NAME, &ml2_conf(&s), |doc| {
            if with_ovn {
                ml2_ovn(doc, &s);
            } else {
                doc.set("ml2", "type_drivers", "flat");
                doc.set("ml2", "tenant_network_types", "");
                doc.set("ml2", "mechanism_drivers", "");
                doc.set(
                    "ml2",
                    "extension_drivers",
                    &neutron_plugin_api::ext_drivers(&s),
                );
                doc.set("ml2_type_flat", "flat_networks", "*");
            }
        })?;
        if let Some(server) = MetadataServer::of(&s) {
            let state = state_dir(&s);
            oslo::write_conf(host, NAME, &server.conf(&s), |doc| {
                metadata_agent(doc, &s, &state, server);
            })?;
        }
        oslo::copy_file(
            host,
            NAME,
            &oslo::venv_etc(host, "neutron/api-paste.ini"),
            &paste,
        )?;
        let ml2 = ml2_conf(&s);
        let dir = Neutron::conf_dir(&s);
        let rel = |p: &std::path::Path| {
            p.strip_prefix(&dir)
                .map_or_else(|_| p.display().to_string(), |r| r.display().to_string())
        };
        let app = WsgiApp {
            wsgi: "neutron.wsgi.api:application".into(),
            http: uwsgi::bind(&s, Some(ROUTE), PREFIX, PORT),
            venv: crate::system::python::venv_dir(&host.settings),
            env: vec![
                ("OS_NEUTRON_CONFIG_DIR".into(), dir.display().to_string()),
                (
                    "OS_NEUTRON_CONFIG_FILES".into(),
                    format!("{};{}", rel(&conf(&s)), rel(&ml2)),
                ),
            ],
            processes: s.number("API_WORKERS", 1),
            name: "neutron-api".into(),
        };
        uwsgi::write_ini(host, NAME, &Neutron::uwsgi_ini(&s), &app)
    }
    fn db_sync(host: &Host) -> Vec<Cmd> {
        let s = &host.settings;
        vec![
            oslo::venv_cmd(host, "neutron-db-manage")
                .arg("--config-file")
                .arg(conf(s))
                .arg("--config-file")
                .arg(ml2_conf(s))
                .args(["upgrade", "head"])
                .label("neutron-db-manage"),
        ]
    }
    fn after_stop(cx: &mut ServiceCtx<'_>) {
        stop_metadata_proxies(cx.host);
    }
    fn data_dirs(settings: &Settings) -> Vec<PathBuf> {
        vec![state_dir(settings)]
    }
    /// As DevStack's `configure_neutron_after_post_config`: service_plugins written
    /// again (replacing a post-config value) with what plugins added until then, and
    /// their ml2 extension drivers and extra config files.
    fn before_start(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        neutron_plugin_api::after_post_config(
            cx.host,
            NAME,
            &conf(&s),
            &ml2_conf(&s),
            &Neutron::uwsgi_ini(&s),
            // OVN's router and DevStack's enabled service plugins; the plugins'
            // Q_SERVICE_PLUGIN_CLASSES are added to it.
            &service_plugins(&s),
        )
    }
    fn after_start(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        if ovn_mode(&cx.host.settings) {
            start_ovn_workers(cx)?;
        }
        if crate::services::keystone::DESCRIPTOR.enabled(&cx.host.settings) {
            warm_up(cx)?;
        }
        if ovn_mode(&cx.host.settings) {
            let base = api_url(&cx.host.settings);
            crate::services::neutron_networks::create_initial(cx, &base)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ini::IniDoc;

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut s = Settings::from_pairs(&[
            (
                "ENABLED_SERVICES",
                "q-svc,ovn-northd,ovn-controller,q-ovn-metadata-agent",
            ),
            ("SERVICE_HOST", "10.0.0.5"),
            ("NEUTRON_CONF_DIR", "/etc/neutron"),
            ("NEUTRON_CONF", "/etc/neutron/neutron.conf"),
            ("DEVSTACK_VENV", "/opt/stack/venv"),
            ("METADATA_PROXY_SHARED_SECRET", "s3cret"),
            ("DATA_DIR", "/opt/stack/data"),
        ]);
        for (k, v) in extra {
            s.set(k, *v);
        }
        s
    }

    #[test]
    fn ml2_with_ovn_has_devstacks_options() {
        let s = settings(&[]);
        assert!(ovn_mode(&s));
        let mut doc = IniDoc::default();
        ml2_ovn(&mut doc, &s);
        insta::assert_snapshot!(doc.render(), @r"
        [ml2]
        overlay_ip_version = 4
        extension_drivers = port_security
        mechanism_drivers = ovn
        project_network_types = geneve
        type_drivers = local,flat,vlan,geneve

        [ml2_type_geneve]
        max_header_size = 38
        vni_ranges = 1:65536

        [ml2_type_flat]
        flat_networks = public

        [ml2_type_vlan]
        network_vlan_ranges = public

        [securitygroup]
        enable_security_group = True

        [ovn]
        neutron_sync_mode = log
        enable_distributed_floating_ip = False
        ovn_metadata_enabled = True
        ovn_l3_scheduler = leastloaded
        ovn_sb_connection = tcp:10.0.0.5:6642
        ovn_nb_connection = tcp:10.0.0.5:6641
        ");
    }

    #[test]
    fn the_metadata_agent_knows_nova_ovs_and_the_southbound_db() {
        let s = settings(&[]);
        let mut doc = IniDoc::default();
        metadata_agent(
            &mut doc,
            &s,
            std::path::Path::new("/opt/stack/data/neutron"),
            MetadataServer::MetadataAgent,
        );
        let text = doc.render();
        for line in [
            "nova_metadata_host = 10.0.0.5",
            "nova_metadata_port = 8775",
            "metadata_proxy_shared_secret = s3cret",
            "ovsdb_connection = unix:/var/run/openvswitch/db.sock",
            "ovn_sb_connection = tcp:10.0.0.5:6642",
            "helper_command = sudo /opt/stack/venv/bin/privsep-helper --config-file /etc/neutron/neutron_ovn_metadata_agent.ini",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn the_ovn_agent_serves_metadata_in_place_of_the_old_agent_and_the_old_name_works() {
        let with = |services: &str| {
            let mut s = settings(&[]);
            s.set("ENABLED_SERVICES", format!("q-svc,ovn-northd,{services}"));
            s
        };
        let s = with("q-ovn-agent");
        assert_eq!(MetadataServer::of(&s), Some(MetadataServer::OvnAgent));
        assert_eq!(
            MetadataServer::OvnAgent.conf(&s),
            PathBuf::from("/etc/neutron/plugins/ml2/ovn_agent.ini")
        );
        let mut doc = IniDoc::default();
        metadata_agent(
            &mut doc,
            &s,
            std::path::Path::new("/opt/stack/data/neutron"),
            MetadataServer::OvnAgent,
        );
        let text = doc.render();
        for line in [
            "extensions = metadata",
            "metadata_proxy_shared_secret = s3cret",
            "ovn_sb_connection = tcp:10.0.0.5:6642",
            "helper_command = sudo /opt/stack/venv/bin/privsep-helper --config-file /etc/neutron/plugins/ml2/ovn_agent.ini",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // Both enabled: one metadata server, the OVN agent's extension.
        let both = with("q-ovn-agent,q-ovn-metadata-agent");
        assert_eq!(MetadataServer::of(&both), Some(MetadataServer::OvnAgent));
        let old = with("q-ovn-metadata-agent");
        assert_eq!(
            MetadataServer::of(&old),
            Some(MetadataServer::MetadataAgent)
        );
        assert_eq!(MetadataServer::of(&with("")), None);
    }

    #[test]
    fn an_agent_counts_once_neutron_lists_it_alive() {
        let agents = serde_json::json!({"agents": [
            {"binary": "ovn-controller", "alive": true},
            {"binary": "neutron-ovn-agent", "alive": false},
        ]});
        assert!(!agent_alive(&agents, "neutron-ovn-agent"));
        assert!(agent_alive(&agents, "ovn-controller"));
        let agents = serde_json::json!({"agents": [
            {"binary": "neutron-ovn-agent", "alive": true},
        ]});
        assert!(agent_alive(&agents, "neutron-ovn-agent"));
        assert!(!agent_alive(&serde_json::json!({}), "neutron-ovn-agent"));
    }

    #[test]
    fn service_plugins_follow_the_enabled_services_and_plugins() {
        assert_eq!(service_plugins(&settings(&[])), "ovn-router");
        let s = settings(&[
            (
                "ENABLED_SERVICES",
                "q-svc,ovn-northd,neutron-trunk,q-qos,neutron-segments",
            ),
            (
                "Q_SERVICE_PLUGIN_CLASSES",
                "qos,networking_sfc.services.sfc.plugin.SfcPlugin",
            ),
        ]);
        assert_eq!(
            service_plugins(&s),
            "ovn-router,segments,trunk,qos,networking_sfc.services.sfc.plugin.SfcPlugin"
        );
        // Without OVN: the API server alone, as before.
        let s = settings(&[("ENABLED_SERVICES", "q-svc")]);
        assert!(!ovn_mode(&s));
        assert_eq!(service_plugins(&s), "router");
        assert!(!ovn_mode(&settings(&[("Q_AGENT", "openvswitch")])));
    }
}
