//! placement (`placement-api`): `PLACEMENT_CONF`, `placement-manage db sync`,
//! `placement.wsgi.api` under uwsgi on `PLACEMENT_SERVICE_PORT`.

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::host::Host;
use crate::pipeline::Run;
use crate::services::database;
use crate::services::keystone::{self, DbJob};
use crate::services::uwsgi::{self, WsgiApp};
use crate::services::{Layer, Service, ServiceError};

pub const NAME: &str = "placement";
pub const SERVICE: &str = "placement-api";
const PREFIX: &str = "PLACEMENT";
const PORT: u16 = 8778;

pub struct Placement;

fn enabled(s: &Settings) -> bool {
    s.is_enabled(&[SERVICE, NAME])
}

fn conf_dir(s: &Settings) -> PathBuf {
    s.path("PLACEMENT_CONF_DIR")
}

fn conf(s: &Settings) -> PathBuf {
    s.path("PLACEMENT_CONF")
}

fn uwsgi_ini(s: &Settings) -> PathBuf {
    conf_dir(s).join("placement-uwsgi.ini")
}

pub fn db_job(host: &Host) -> Option<DbJob> {
    let s = &host.settings;
    enabled(s).then(|| DbJob {
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
        .map_or_else(|| conf_dir(&s), std::path::Path::to_path_buf);
    let app = WsgiApp {
        wsgi: "placement.wsgi.api:application".into(),
        http: uwsgi::listen(&s, PREFIX, PORT),
        venv: crate::system::python::venv_dir(host),
        env: vec![("OS_PLACEMENT_CONFIG_DIR".into(), dir.display().to_string())],
        processes: s.number("API_WORKERS", 1),
        name: "placement-api".into(),
    };
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)
}

impl Service for Placement {
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
        uwsgi::packages()
    }
    fn install(&self, run: &mut Run) -> Result<(), ServiceError> {
        uwsgi::install_python(run)
    }
    fn configure(&self, run: &mut Run) -> Result<(), ServiceError> {
        write_config(&mut run.host)
    }
    fn init(&self, run: &mut Run) -> Result<(), ServiceError> {
        keystone::ensure_synced(&mut run.host, db_job)
    }
    fn start(&self, run: &mut Run) -> Result<(), ServiceError> {
        let ini = uwsgi_ini(&run.host.settings);
        uwsgi::start_api(&mut run.host, NAME, SERVICE, &ini, PREFIX, PORT)
    }
    fn stop(&self, run: &mut Run, _all: bool) -> Result<(), ServiceError> {
        uwsgi::stop_processes(&mut run.host, NAME, &[SERVICE])
    }
    fn clean(&self, run: &mut Run) -> Result<(), ServiceError> {
        uwsgi::clean_api(&run.host, &[SERVICE], &conf_dir(&run.host.settings));
        Ok(())
    }
}
