//! placement (`placement-api`): `PLACEMENT_CONF`, `placement-manage db sync`,
//! `placement.wsgi.api` under uwsgi on `PLACEMENT_SERVICE_PORT`.

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::host::Host;
use crate::services::ServiceError;
use crate::services::database;
use crate::services::keystone::DbJob;
use crate::services::uwsgi::{self, UwsgiApi, WsgiApp};

pub const NAME: &str = "placement";
pub const SERVICE: &str = "placement-api";
const PREFIX: &str = "PLACEMENT";
const PORT: u16 = 8778;

pub struct Placement;

fn conf(s: &Settings) -> PathBuf {
    s.path("PLACEMENT_CONF")
}

impl UwsgiApi for Placement {
    const NAME: &'static str = NAME;
    const SERVICE: &'static str = SERVICE;
    const PREFIX: &'static str = PREFIX;
    const PORT: u16 = PORT;
    fn enabled(s: &Settings) -> bool {
        s.is_enabled(&[SERVICE, NAME])
    }
    fn conf_dir(s: &Settings) -> PathBuf {
        s.path("PLACEMENT_CONF_DIR")
    }
    fn uwsgi_ini(s: &Settings) -> PathBuf {
        Placement::conf_dir(s).join("placement-uwsgi.ini")
    }
    fn write_config(host: &mut Host) -> Result<(), ServiceError> {
        let s = host.settings.clone();
        uwsgi::write_conf(host, NAME, &conf(&s), |doc| {
            uwsgi::common_defaults(doc, &s);
            doc.set(
                "placement_database",
                "connection",
                &database::connection_url(&s, "placement"),
            );
            doc.set("api", "auth_strategy", "keystone");
            uwsgi::authtoken(doc, &s, NAME);
        })?;
        let conf_path = conf(&s);
        let dir = conf_path
            .parent()
            .map_or_else(|| Placement::conf_dir(&s), std::path::Path::to_path_buf);
        let app = WsgiApp {
            wsgi: "placement.wsgi.api:application".into(),
            http: uwsgi::listen(&s, PREFIX, PORT),
            venv: crate::system::python::venv_dir(host),
            env: vec![("OS_PLACEMENT_CONFIG_DIR".into(), dir.display().to_string())],
            processes: s.number("API_WORKERS", 1),
            name: "placement-api".into(),
        };
        uwsgi::write_ini(host, NAME, &Placement::uwsgi_ini(&s), &app)
    }
    fn db_job(host: &Host) -> Option<DbJob> {
        let s = &host.settings;
        Placement::enabled(s).then(|| DbJob {
            service: NAME,
            databases: vec!["placement"],
            cmds: vec![
                uwsgi::venv_cmd(host, "placement-manage")
                    .arg("--config-file")
                    .arg(conf(s))
                    .args(["db", "sync"])
                    .label("placement-manage"),
            ],
        })
    }
}
