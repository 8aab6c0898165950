//! neutron's API server alone (`q-svc`): ML2 with no agents and no mechanism
//! drivers, `service_plugins = router`, `neutron.wsgi.api` under uwsgi on
//! `NEUTRON_SERVICE_PORT`. nova's server API needs a network endpoint even for
//! `--nic none`. After it answers, one authenticated warm-up request per worker: the
//! first `GET /v2.0/ports` of a fresh worker fails otherwise (an AttributeError from
//! lazily configured models, seen with SQLAlchemy 2.0 and 2.1).

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::openstack::accounts::ServiceAccount;
use crate::services::database;
use crate::services::neutron_plugin_api;
use crate::services::uwsgi::{self, Route, UwsgiApi, WsgiApp};
use crate::services::{Descriptor, Layer, ServiceError, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

pub(crate) const NAME: &str = "neutron";
pub(crate) const SERVICE: &str = "q-svc";
const PREFIX: &str = "NEUTRON";
const PORT: u16 = 9696;

pub(crate) struct Neutron;

fn conf(s: &Settings) -> PathBuf {
    s.path("NEUTRON_CONF")
}

/// `$NEUTRON_CONF_DIR/plugins/ml2/ml2_conf.ini` (DevStack's `Q_PLUGIN_CONF_FILE`).
fn ml2_conf(s: &Settings) -> PathBuf {
    match s.get("Q_PLUGIN_CONF_FILE").filter(|v| !v.is_empty()) {
        Some(v) if v.starts_with('/') => PathBuf::from(v),
        Some(v) => Neutron::conf_dir(s).join(v),
        None => Neutron::conf_dir(s).join("plugins/ml2/ml2_conf.ini"),
    }
}

fn state_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("neutron")
}

/// One authenticated round of list requests, so every worker's models are set up
/// before nova asks for ports.
fn warm_up(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let token = cx
        .host
        .keystone()
        .and_then(|c| c.token().map(str::to_owned))
        .map_err(|e| ServiceError::failed(NAME, format!("warm-up token: {e}")))?;
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
const ROUTE: Route = Route {
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
    after: &["keystone"],
    catalog: &[CATALOG],
    python: &[Project {
        dist: "neutron",
        repo_var: "NEUTRON_REPO",
    }],
    packages: uwsgi::PACKAGES,
    defaults: &[
        ("NEUTRON_CONF_DIR", "/etc/neutron"),
        ("NEUTRON_CONF", "$NEUTRON_CONF_DIR/neutron.conf"),
    ],
    databases: &["neutron"],
    processes: &[SERVICE],
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
            doc.set("DEFAULT", "service_plugins", "router");
            doc.set("DEFAULT", "auth_strategy", "keystone");
            doc.set("DEFAULT", "state_path", &state.display().to_string());
            doc.set("DEFAULT", "api_paste_config", &paste.display().to_string());
            doc.set(
                "DEFAULT",
                "transport_url",
                &crate::services::rabbit::transport_url(&s),
            );
            // No agents and no compute notifications: the API server alone.
            doc.set("DEFAULT", "notify_nova_on_port_status_changes", "False");
            doc.set("DEFAULT", "notify_nova_on_port_data_changes", "False");
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
        oslo::write_conf(host, NAME, &ml2_conf(&s), |doc| {
            doc.set("ml2", "type_drivers", "flat");
            doc.set("ml2", "tenant_network_types", "");
            doc.set("ml2", "mechanism_drivers", "");
            doc.set(
                "ml2",
                "extension_drivers",
                &neutron_plugin_api::ext_drivers(&s),
            );
            doc.set("ml2_type_flat", "flat_networks", "*");
        })?;
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
    fn data_dirs(settings: &Settings) -> Vec<PathBuf> {
        vec![state_dir(settings)]
    }
    fn before_start(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        neutron_plugin_api::after_post_config(
            cx.host,
            NAME,
            &conf(&s),
            &ml2_conf(&s),
            &Neutron::uwsgi_ini(&s),
            "router",
        )
    }
    fn after_start(cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        if cx.host.settings.is_enabled(&["key"]) {
            warm_up(cx)?;
        }
        Ok(())
    }
}
