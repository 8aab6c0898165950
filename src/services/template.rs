//! widget (`w-api`): the shape every service file takes, compiled and tested so it
//! stays true. Copy it for a new service (CONTRIBUTING.md § Recipe: add a service);
//! widget itself is not a real project and is in no registry but its test's.
//!
//! Every service file starts with a header like this one, in three parts:
//!
//! Mirrors DevStack's `lib/widget`: `install_widget` (the Python install and the
//! packages: the registry's, from the descriptor), `configure_widget`,
//! `init_widget` (the database: recreated and synced by the pipeline, `db_sync`),
//! `start_widget`, `stop_widget` (the default: its processes), `cleanup_widget`
//! (the default: what the ledger recorded, its logs).
//!
//! Reads: `WIDGET_CONF` (its own default, below), `WIDGET_SERVICE_PORT`,
//! `SERVICE_HOST`, `SERVICE_PASSWORD`, `KEYSTONE_SERVICE_URI`, `MEMCACHE_SERVERS`,
//! the database's settings (`database::connection_url`).
//!
//! Records: `WIDGET_CONF` and its directory (clean removes them), the process
//! `w-api` (unstack stops it), the database `widget` (clean drops it).

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::openstack::accounts::ServiceAccount;
use crate::services::{Descriptor, Layer, Service, ServiceError, database, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

/// Its DevStack lib name: summaries, errors, other services' `after`.
pub(crate) const NAME: &str = "widget";
/// Its process, and the `ENABLED_SERVICES` name that enables it.
pub(crate) const PROCESS: &str = "w-api";
const PREFIX: &str = "WIDGET";
const PORT: u16 = 9999;

pub(crate) struct Widget;

fn conf(s: &Settings) -> PathBuf {
    s.path("WIDGET_CONF")
}

/// Its keystone service and endpoint: having one makes it an API, so the clients
/// of the cloud (openrc, tempest.conf) come after it without naming it.
const CATALOG: ServiceAccount = ServiceAccount {
    name: NAME,
    service_type: "widget",
    description: "Widget Service",
    extra_role: None,
    prefix: PREFIX,
    default_port: PORT,
    path: "/v1",
    route: "",
};

/// Everything the loops over services need: nothing else lists widget.
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[PROCESS, NAME],
    after: &["keystone"],
    catalog: &[CATALOG],
    python: &[Project {
        dist: "widget",
        repo_var: "WIDGET_REPO",
    }],
    packages: &["widget-tools"],
    defaults: &[
        ("WIDGET_CONF_DIR", "/etc/widget"),
        ("WIDGET_CONF", "$WIDGET_CONF_DIR/widget.conf"),
    ],
    databases: &[NAME],
    processes: &[PROCESS],
    secrets: &["WIDGET_ADMIN_PASSWORD"],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for Widget {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn db_sync(&self, host: &Host) -> Vec<Cmd> {
        vec![oslo::venv_cmd(host, "widget-manage").args(["db", "sync"])]
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        oslo::write_conf(cx.host, NAME, &conf(&s), |doc| {
            oslo::common_defaults(doc, &s);
            doc.set("DEFAULT", "bind_port", &PORT.to_string());
            doc.set("DEFAULT", "admin_password", s.str("WIDGET_ADMIN_PASSWORD"));
            doc.set(
                "database",
                "connection",
                &database::connection_url(&s, NAME),
            );
            oslo::authtoken(doc, &s, NAME);
        })
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let command = format!("widget-api --config-file {}", conf(&s).display());
        let record = oslo::start_process(cx.host, NAME, PROCESS, &command, &[], None)?;
        let url = oslo::probe_url(&s, PREFIX, PORT);
        oslo::wait_http(cx.host, NAME, &record, &url, |code| code < 500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoPipeline;
    use crate::services::Registry;
    use crate::services::snapshots::{host, read};

    /// The one registry line: widget among the built-in services.
    fn registry() -> Registry {
        let mut services: Vec<&'static dyn Service> = Registry::builtin().all().collect();
        services.push(&Widget);
        Registry::new(services)
    }

    #[test]
    fn a_new_service_is_one_file_one_registry_line_and_one_snapshot() {
        let reg = registry();
        let (dir, mut host) = host();
        let enabled = format!("{},{PROCESS}", crate::config::settings::DEFAULT_SERVICES);
        host.settings.set("ENABLED_SERVICES", enabled);
        host.settings.set(
            "WIDGET_CONF",
            dir.path()
                .join("etc/widget/widget.conf")
                .display()
                .to_string(),
        );
        host.settings.set("WIDGET_ADMIN_PASSWORD", "widget-secret");
        let s = host.settings.clone();

        // Every loop over services finds it: order, packages, Python, catalog,
        // defaults, database, secrets.
        let order: Vec<&str> = reg.enabled(&s).map(Service::name).collect();
        let at = |n: &str| order.iter().position(|x| *x == n).unwrap();
        assert!(at("keystone") < at(NAME), "{order:?}");
        assert!(
            at(NAME) < at("credentials") && at(NAME) < at("tempest"),
            "{order:?}"
        );
        assert!(reg.packages(&s).contains(&"widget-tools".to_owned()));
        assert!(reg.python_projects(&s).iter().any(|p| p.dist == "widget"));
        let catalog = reg.catalog(&s);
        let entry = catalog.iter().find(|c| c.service_type == "widget").unwrap();
        assert_eq!(entry.url(&s), "http://127.0.0.1:9999/v1");
        assert!(reg.defaults().contains(&("WIDGET_CONF_DIR", "/etc/widget")));
        let jobs = reg.db_jobs(&host);
        let job = jobs.iter().find(|j| j.service == NAME).unwrap();
        assert_eq!(job.databases, [NAME]);
        assert!(job.cmds[0].display().ends_with("widget-manage db sync"));
        assert!(reg.secrets().contains(&"WIDGET_ADMIN_PASSWORD"));
        assert!(crate::config::settings::is_secret_name(
            "WIDGET_ADMIN_PASSWORD"
        ));

        // The snapshot of what it writes, through its own step and the fake context.
        let mut ops = NoPipeline;
        Widget
            .configure(&mut ServiceCtx::new(&mut host, &mut ops))
            .unwrap();
        insta::assert_snapshot!("widget.conf", read(dir.path(), "etc/widget/widget.conf"));
        assert!(
            host.ledger
                .files()
                .iter()
                .any(|f| f.ends_with("widget.conf"))
        );
    }
}
