//! glance (`g-api`): `GLANCE_API_CONF`, the file store under `$DATA_DIR/glance`,
//! `glance-manage db_sync`, `glance.wsgi.api` under uwsgi on `GLANCE_SERVICE_PORT`
//! (the `glance-api` console script is a dead stub in 2026.2).

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::openstack::accounts::ServiceAccount;
use crate::services::database;
use crate::services::uwsgi::{self, Route, UwsgiApi, WsgiApp};
use crate::services::{Descriptor, Layer, ServiceError, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

pub(crate) const NAME: &str = "glance";
pub(crate) const SERVICE: &str = "g-api";
const PREFIX: &str = "GLANCE";
const PORT: u16 = 9292;

pub(crate) struct Glance;

fn conf(s: &Settings) -> PathBuf {
    s.path("GLANCE_API_CONF")
}

fn data_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("glance")
}

/// Glance: `image` at `/image` behind the front proxy, which forwards HTTP to
/// uWSGI's http-socket on :9292 with chunked bodies as chunks, as DevStack's
/// `write_local_uwsgi_http_config` does (uWSGI's own socket would refuse them).
const ROUTE: Route = Route {
    site: "glance-api",
    path: "/image",
    socket: false,
};

pub(crate) const CATALOG: ServiceAccount = ServiceAccount {
    name: "glance",
    service_type: "image",
    description: "Glance Image Service",
    extra_role: Some("admin"),
    prefix: PREFIX,
    default_port: PORT,
    path: "",
    route: ROUTE.path,
};

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[SERVICE, NAME],
    after: &["keystone"],
    catalog: &[CATALOG],
    rpc_backend: Some(("glance", "GLANCE_API_CONF", "DEFAULT")),
    python: &[Project {
        dist: "glance",
        repo_var: "GLANCE_REPO",
    }],
    packages: uwsgi::PACKAGES,
    defaults: &[
        ("GLANCE_CONF_DIR", "/etc/glance"),
        ("GLANCE_API_CONF", "$GLANCE_CONF_DIR/glance-api.conf"),
    ],
    databases: &["glance"],
    processes: &[SERVICE],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl UwsgiApi for Glance {
    const DESCRIPTOR: &'static Descriptor = &DESCRIPTOR;
    const PROCESS: &'static str = SERVICE;
    const PREFIX: &'static str = PREFIX;
    const PORT: u16 = PORT;
    const ROUTE: Option<Route> = Some(ROUTE);
    fn conf_dir(s: &Settings) -> PathBuf {
        s.path("GLANCE_CONF_DIR")
    }
    fn uwsgi_ini(s: &Settings) -> PathBuf {
        Glance::conf_dir(s).join("glance-api-uwsgi.ini")
    }
    fn write_config(host: &mut Host) -> Result<(), ServiceError> {
        let s = host.settings.clone();
        let data = data_dir(&s);
        for sub in ["images", "staging", "tasks", "cache", "lock"] {
            oslo::make_dir(host, NAME, &data.join(sub))?;
        }
        let url = CATALOG.url(&s);
        let d = |sub: &str| data.join(sub).display().to_string();
        oslo::write_conf(host, NAME, &conf(&s), |doc| {
            oslo::common_defaults(doc, &s);
            // DevStack's single-store layout (GLANCE_ENABLE_MULTIPLE_STORES=False): with
            // multi-store and one store, tempest's copy-image tests run and never end.
            doc.set("DEFAULT", "worker_self_reference_url", &url);
            doc.set(
                "DEFAULT",
                "node_staging_uri",
                &format!("file://{}", d("staging")),
            );
            doc.set("DEFAULT", "image_cache_dir", &d("cache"));
            if let Some(url) = crate::services::rabbit::configured_transport_url(&s) {
                doc.set("DEFAULT", "transport_url", &url);
            }
            doc.set("glance_store", "stores", "file,http");
            doc.set("glance_store", "default_store", "file");
            doc.set("glance_store", "filesystem_store_datadir", &d("images"));
            doc.set(
                "database",
                "connection",
                &database::connection_url(&s, "glance"),
            );
            doc.set("paste_deploy", "flavor", "keystone");
            // Its version document links to the proxied URL, not the backend's.
            doc.set("DEFAULT", "public_endpoint", &CATALOG.url(&s));
            doc.set("oslo_concurrency", "lock_path", &d("lock"));
            oslo::authtoken(doc, &s, NAME);
        })?;
        let paste = Glance::conf_dir(&s).join("glance-api-paste.ini");
        oslo::copy_file(
            host,
            NAME,
            &oslo::venv_etc(host, "glance/glance-api-paste.ini"),
            &paste,
        )?;
        let app = WsgiApp {
            wsgi: "glance.wsgi.api:application".into(),
            http: oslo::listen(&s, PREFIX, PORT),
            venv: crate::system::python::venv_dir(&host.settings),
            env: vec![(
                "OS_GLANCE_CONFIG_DIR".into(),
                Glance::conf_dir(&s).display().to_string(),
            )],
            processes: s.number("API_WORKERS", 1),
            name: "glance-api".into(),
        };
        uwsgi::write_ini(host, NAME, &Glance::uwsgi_ini(&s), &app)
    }
    fn db_sync(host: &Host) -> Vec<Cmd> {
        let s = &host.settings;
        let manage = || {
            oslo::venv_cmd(host, "glance-manage")
                .arg("--config-file")
                .arg(conf(s))
                .label("glance-manage")
        };
        vec![
            manage().arg("db_sync"),
            // The metadata definitions the wheel ships, as DevStack loads them.
            manage()
                .arg("db_load_metadefs")
                .arg(oslo::venv_etc(host, "glance/metadefs")),
        ]
    }
    fn data_dirs(settings: &Settings) -> Vec<PathBuf> {
        vec![data_dir(settings)]
    }
}
