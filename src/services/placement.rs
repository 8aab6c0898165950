//! placement (`placement-api`): `PLACEMENT_CONF`, `placement-manage db sync`,
//! `placement.wsgi.api` under uwsgi, behind the front proxy at `/placement`.

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::openstack::accounts::ServiceAccount;
use crate::services::database;
use crate::services::uwsgi::{self, Route, UwsgiApi, WsgiApp};
use crate::services::{Descriptor, Layer, ServiceError, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

pub(crate) const NAME: &str = "placement";
pub(crate) const SERVICE: &str = "placement-api";
const PREFIX: &str = "PLACEMENT";
const PORT: u16 = 8778;
/// DevStack's `write_uwsgi_config … /placement "" placement-api`.
const ROUTE: Route = Route {
    site: SERVICE,
    path: "/placement",
    socket: true,
};

pub(crate) struct Placement;

fn conf(s: &Settings) -> PathBuf {
    s.path("PLACEMENT_CONF")
}

pub(crate) const CATALOG: ServiceAccount = ServiceAccount {
    name: "placement",
    service_type: "placement",
    description: "Placement Service",
    extra_role: Some("admin"),
    prefix: PREFIX,
    default_port: PORT,
    path: "",
    route: ROUTE.path,
};

/// Enabled by `placement-api` only: DevStack's `placement` group name also covers
/// `placement-client`, which a compute node (subnode) lists without running the API,
/// its database or its catalog entry.
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[SERVICE],
    after: &["keystone"],
    catalog: &[CATALOG],
    python: &[Project {
        dist: "openstack-placement",
        repo_var: "PLACEMENT_REPO",
    }],
    packages: uwsgi::PACKAGES,
    defaults: &[
        ("PLACEMENT_CONF_DIR", "/etc/placement"),
        ("PLACEMENT_CONF", "$PLACEMENT_CONF_DIR/placement.conf"),
    ],
    databases: &["placement"],
    processes: &[SERVICE],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl UwsgiApi for Placement {
    const DESCRIPTOR: &'static Descriptor = &DESCRIPTOR;
    const PROCESS: &'static str = SERVICE;
    const PREFIX: &'static str = PREFIX;
    const PORT: u16 = PORT;
    const ROUTE: Option<Route> = Some(ROUTE);
    fn conf_dir(s: &Settings) -> PathBuf {
        s.path("PLACEMENT_CONF_DIR")
    }
    fn uwsgi_ini(s: &Settings) -> PathBuf {
        Placement::conf_dir(s).join("placement-uwsgi.ini")
    }
    fn write_config(host: &mut Host) -> Result<(), ServiceError> {
        let s = host.settings.clone();
        oslo::write_conf(host, NAME, &conf(&s), |doc| {
            oslo::common_defaults(doc, &s);
            doc.set(
                "placement_database",
                "connection",
                &database::connection_url(&s, "placement"),
            );
            doc.set("api", "auth_strategy", "keystone");
            oslo::authtoken(doc, &s, NAME);
        })?;
        let conf_path = conf(&s);
        let dir = conf_path
            .parent()
            .map_or_else(|| Placement::conf_dir(&s), std::path::Path::to_path_buf);
        let app = WsgiApp {
            wsgi: "placement.wsgi.api:application".into(),
            http: uwsgi::bind(&s, Some(ROUTE), PREFIX, PORT),
            venv: crate::system::python::venv_dir(&host.settings),
            env: vec![("OS_PLACEMENT_CONFIG_DIR".into(), dir.display().to_string())],
            processes: s.number("API_WORKERS", 1),
            name: "placement-api".into(),
        };
        uwsgi::write_ini(host, NAME, &Placement::uwsgi_ini(&s), &app)
    }
    fn db_sync(host: &Host) -> Vec<Cmd> {
        let s = &host.settings;
        vec![
            oslo::venv_cmd(host, "placement-manage")
                .arg("--config-file")
                .arg(conf(s))
                .args(["db", "sync"])
                .label("placement-manage"),
        ]
    }
}
