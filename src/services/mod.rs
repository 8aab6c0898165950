//! The real services a stack brings up. Each lives in one file: a [`Descriptor`]
//! (its DevStack names, catalog entries, Python projects, Debian packages, the
//! variables it owns, its databases, its processes, its node role and what it comes
//! after) and a [`Service`] impl for the steps that are its own. Everything that
//! loops over services (packages, Python requirements, database syncs, keystone's
//! catalog, start, stop, clean) iterates the [`Registry`]: adding a service is one
//! file plus one line in [`Registry::builtin`].

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::{Host, PipelineError, ServiceCtx};
use crate::openstack::accounts::ServiceAccount;
use crate::system::process::{Cmd, ProcessError};
use crate::system::python::Project;

pub(crate) mod cinder;
pub(crate) mod cinder_backend;
pub(crate) mod credentials;
pub(crate) mod daemon;
pub(crate) mod database;
pub(crate) mod dstat;
pub(crate) mod etcd3;
pub(crate) mod frontproxy;
pub(crate) mod glance;
pub(crate) mod horizon;
pub(crate) mod hypervisor;
pub(crate) mod images;
pub(crate) mod keystone;
pub(crate) mod libvirt;
pub(crate) mod memcached;
pub(crate) mod mysql;
pub(crate) mod neutron;
pub(crate) mod neutron_agent;
pub(crate) mod neutron_networks;
pub(crate) mod neutron_plugin_api;
pub(crate) mod node;
pub(crate) mod nova;
pub(crate) mod nova_metadata;
pub(crate) mod nova_novnc;
pub(crate) mod oslo;
pub(crate) mod ovn;
pub(crate) mod ovn_public;
pub(crate) mod placement;
pub(crate) mod placement_client;
pub(crate) mod postgresql;
pub(crate) mod rabbit;
#[cfg(test)]
mod snapshots;
pub(crate) mod tempest;
#[cfg(test)]
mod template;
pub(crate) mod uwsgi;

/// Where a service sits in the stack's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Database, message queue, cache: installed and started before `stack install`.
    Infra,
    /// OpenStack services: installed and configured before `stack install`, initialised
    /// before `stack post-config`, started after it.
    OpenStack,
}

/// Which node of a multi-node cloud runs a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The control plane: APIs, schedulers, databases, the message queue.
    Controller,
    /// Every compute node (nova-compute, its hypervisor, the network agent).
    Compute,
    /// Both (a service with parts on each, such as nova).
    Any,
}

/// Where a service comes in the stack's order, besides its `after` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Where its `after` list puts it.
    Ordered,
    /// It serves an OpenStack API but has no catalog entry in the registry (keystone:
    /// its bootstrap makes the identity entry). A service with a catalog entry serves
    /// an API without saying so.
    Api,
    /// A client of the whole cloud (openrc, tempest.conf): after every API.
    AfterApis,
}

/// Everything about one service that is data.
#[derive(Debug)]
pub struct Descriptor {
    /// DevStack's lib name (mysql, keystone, nova): in summaries, errors, `after`.
    pub name: &'static str,
    /// The `ENABLED_SERVICES` names that enable it, any of them (group names such as
    /// `nova` cover their members, `n-*`, with DevStack's `is_service_enabled`).
    pub enabled_by: &'static [&'static str],
    pub layer: Layer,
    pub role: Role,
    /// The services it comes after when both are enabled.
    pub after: &'static [&'static str],
    /// Its place among the APIs and their clients.
    pub stage: Stage,
    /// Its keystone catalog entries (service user, service, public endpoint).
    pub catalog: &'static [ServiceAccount],
    /// Its Python projects, installed from PyPI or a local checkout.
    pub python: &'static [Project],
    /// Its Debian packages, for the one batched install.
    pub packages: &'static [&'static str],
    /// The variables it owns, as lib/ defaults (`${NAME:-default}`), applied after
    /// `override_defaults`. Later entries may use earlier ones.
    pub defaults: &'static [(&'static str, &'static str)],
    /// Its databases: recreated before its sync commands run.
    pub databases: &'static [&'static str],
    /// The processes it starts (DevStack's service names), stopped by unstack.
    pub processes: &'static [&'static str],
    /// The variables that hold its secrets (DevStack's `read_password`): generated
    /// once when the user set none, kept 0600, redacted everywhere.
    pub secrets: &'static [&'static str],
    /// Other names `start_service`/`stop_service` know it by (the distro's
    /// service names: `mariadb` for mysql).
    pub aliases: &'static [&'static str],
    /// Where DevStack's lib/ of it calls `iniset_rpc_backend PACKAGE $FILE
    /// [SECTION]`: the package, the variable naming the config file and the section
    /// (a messaging plugin's redefinition is called there, after its configure).
    pub rpc_backend: Option<(&'static str, &'static str, &'static str)>,
}

impl Descriptor {
    /// A descriptor with nothing but a name: the base the services' own fill in.
    pub const fn named(name: &'static str, layer: Layer) -> Self {
        Self {
            name,
            enabled_by: &[],
            layer,
            role: Role::Controller,
            after: &[],
            catalog: &[],
            python: &[],
            packages: &[],
            defaults: &[],
            databases: &[],
            processes: &[],
            stage: Stage::Ordered,
            secrets: &[],
            aliases: &[],
            rpc_backend: None,
        }
    }

    /// Whether `settings` enable it (any of its `enabled_by` names): how another
    /// service asks whether this one is there.
    pub fn enabled(&self, settings: &Settings) -> bool {
        settings.is_enabled(self.enabled_by)
    }

    /// Whether it serves an OpenStack API (the clients of the cloud come after it).
    pub fn serves_api(&self) -> bool {
        self.stage == Stage::Api || !self.catalog.is_empty()
    }

    /// Whether it comes after `other` when both are in the stack.
    fn comes_after(&self, other: &Descriptor) -> bool {
        self.name != other.name
            && (self.after.contains(&other.name)
                || (self.stage == Stage::AfterApis && other.serves_api()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{service}: {what}")]
    Process {
        service: String,
        what: String,
        #[source]
        source: ProcessError,
    },
    #[error("{service}: a shell function failed")]
    Shell {
        service: String,
        #[source]
        source: PipelineError,
    },
    #[error("{service} did not answer within {timeout_secs} s ({what})")]
    NotReady {
        service: String,
        what: String,
        timeout_secs: u64,
        log: Option<PathBuf>,
        tail: Vec<String>,
    },
    #[error("{service}: port {port} on {host} is already in use by another program")]
    PortInUse {
        service: String,
        host: String,
        port: u16,
    },
    #[error("{service}: {path}")]
    Io {
        service: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{service}: {what}")]
    Source {
        service: String,
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{service}: {message}")]
    Failed { service: String, message: String },
}

impl ServiceError {
    pub fn failed(service: &str, message: impl Into<String>) -> Self {
        Self::Failed {
            service: service.to_owned(),
            message: message.into(),
        }
    }

    /// A failure with its cause kept as the error's source.
    pub fn caused(
        service: &str,
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Source {
            service: service.to_owned(),
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// The last lines of output that explain the failure, when there are any.
    pub fn tail(&self) -> &[String] {
        match self {
            Self::Process { source, .. } => source.tail(),
            Self::Shell {
                source: PipelineError::Shell(source),
                ..
            } => source.tail(),
            Self::NotReady { tail, .. } => tail,
            _ => &[],
        }
    }
}

/// One service's database work: the databases to (re)create and the commands that
/// fill them, run in order. The jobs of all enabled services run concurrently.
pub struct DbJob {
    pub service: &'static str,
    pub databases: &'static [&'static str],
    pub cmds: Vec<Cmd>,
}

/// One service: its descriptor, and the steps that are its own. Every step has a
/// default, so a service writes only what differs.
pub trait Service: Sync {
    fn descriptor(&self) -> &'static Descriptor;

    fn name(&self) -> &'static str {
        self.descriptor().name
    }
    fn layer(&self) -> Layer {
        self.descriptor().layer
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        self.descriptor().enabled(settings)
    }
    /// Debian packages for the one batched prerequisite install.
    fn packages(&self, _settings: &Settings) -> Vec<String> {
        self.descriptor()
            .packages
            .iter()
            .map(|p| (*p).to_owned())
            .collect()
    }
    /// The commands that fill its databases once they are recreated.
    fn db_sync(&self, _host: &Host) -> Vec<Cmd> {
        Vec::new()
    }
    /// Its database work for this run, when it owns databases here.
    fn db_job(&self, host: &Host) -> Option<DbJob> {
        let d = self.descriptor();
        (!d.databases.is_empty()).then(|| DbJob {
            service: d.name,
            databases: d.databases,
            cmds: self.db_sync(host),
        })
    }
    fn install(&self, _cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    fn configure(&self, _cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    /// Before the databases are recreated (a running API of the last stack stops).
    fn before_sync(&self, _cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    /// After every enabled service's databases are synced.
    fn init(&self, _cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    fn start(&self, _cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    /// Before the `stack test-config` hook: test suites' configuration (tempest.conf).
    fn test_config(&self, _cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    /// `all`: unstack --all (layer 1 stops only then). The default stops its
    /// processes, concurrently.
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        oslo::stop_processes(cx.host, self.name(), self.descriptor().processes)
    }
    /// The default removes its processes' logs.
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        for name in self.descriptor().processes {
            daemon::remove_daemon_log(&cx.host.settings, name);
        }
        Ok(())
    }
}

/// The services a stack knows, in the order their `after` lists declare.
pub struct Registry {
    services: Vec<&'static dyn Service>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// Every service the project ships. The order of this list does not matter:
    /// each descriptor's `after` does.
    pub fn builtin() -> Self {
        Self::new(vec![
            &mysql::Mysql,
            &postgresql::Postgresql,
            &rabbit::Rabbit,
            &memcached::Memcached,
            &dstat::Dstat,
            &etcd3::Etcd3,
            &frontproxy::FrontProxy,
            &keystone::Keystone,
            &glance::Glance,
            &placement::Placement,
            &placement_client::PlacementClient,
            &ovn::Ovn,
            &neutron::Neutron,
            &neutron_agent::NeutronAgent,
            &nova::Nova,
            &nova_metadata::NovaMetadata,
            &nova_novnc::NovaNovnc,
            &cinder::Cinder,
            &tempest::Tempest,
            &horizon::Horizon,
            &credentials::Credentials,
            &hypervisor::HypervisorProbe,
            &images::Images,
        ])
    }

    /// A registry of these services, ordered: layer 1 first, then each service after
    /// the ones it names in `after` and a client of the cloud after every API (a
    /// stable topological order: among services free to go, the list's order). A
    /// cycle is a programming error.
    pub fn new(list: Vec<&'static dyn Service>) -> Self {
        let mut left: Vec<&'static dyn Service> = list;
        left.sort_by_key(|s| s.layer());
        let mut services: Vec<&'static dyn Service> = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let ready = left
                .iter()
                .position(|s| {
                    !left
                        .iter()
                        .any(|other| s.descriptor().comes_after(other.descriptor()))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "service order has a cycle among {:?}",
                        left.iter().map(|s| s.name()).collect::<Vec<_>>()
                    )
                });
            services.push(left.remove(ready));
        }
        Self { services }
    }

    /// Every service, in stack order.
    pub fn all(&self) -> impl DoubleEndedIterator<Item = &'static dyn Service> + '_ {
        self.services.iter().copied()
    }

    /// The enabled services, in stack order.
    pub fn enabled<'a>(
        &'a self,
        settings: &'a Settings,
    ) -> impl DoubleEndedIterator<Item = &'static dyn Service> + 'a {
        self.all().filter(move |s| s.is_enabled(settings))
    }

    /// The Debian packages of the enabled services.
    pub fn packages(&self, settings: &Settings) -> Vec<String> {
        self.enabled(settings)
            .flat_map(|s| s.packages(settings))
            .collect()
    }

    /// The Python projects of the enabled services.
    pub fn python_projects(&self, settings: &Settings) -> Vec<Project> {
        let mut out: Vec<Project> = Vec::new();
        for p in self.enabled(settings).flat_map(|s| s.descriptor().python) {
            if !out.contains(p) {
                out.push(*p);
            }
        }
        out
    }

    /// The keystone catalog entries of the enabled services.
    pub fn catalog(&self, settings: &Settings) -> Vec<ServiceAccount> {
        self.enabled(settings)
            .flat_map(|s| s.descriptor().catalog.iter().copied())
            .collect()
    }

    /// Every service's lib/ defaults, in stack order.
    pub fn defaults(&self) -> Vec<(&'static str, &'static str)> {
        self.all()
            .flat_map(|s| s.descriptor().defaults.iter().copied())
            .collect()
    }

    /// Every service's secret variables, each once, in stack order (all of them,
    /// enabled or not: a later stack that enables one finds its secret kept).
    pub fn secrets(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for name in self.all().flat_map(|s| s.descriptor().secrets) {
            if !out.contains(name) {
                out.push(name);
            }
        }
        out
    }

    /// The service `start_service`/`stop_service NAME` means: by its name or one of
    /// its aliases.
    pub fn by_service_name(&self, name: &str) -> Option<&'static dyn Service> {
        self.all()
            .find(|s| s.name() == name || s.descriptor().aliases.contains(&name))
    }

    /// The database jobs of the enabled services.
    pub fn db_jobs(&self, host: &Host) -> Vec<DbJob> {
        self.enabled(&host.settings)
            .filter_map(|s| s.db_job(host))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::NoPipeline;

    fn settings(enabled: &str) -> Settings {
        Settings::new(
            [
                ("ENABLED_SERVICES".to_owned(), enabled.to_owned()),
                ("DEST".to_owned(), "/opt/stack".to_owned()),
            ]
            .into(),
        )
    }

    #[test]
    fn the_default_order_puts_layer_1_first_and_keystone_before_its_users() {
        let names: Vec<&str> = Registry::builtin().all().map(Service::name).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        assert!(pos("mysql") < pos("keystone"));
        assert!(pos("rabbit") < pos("keystone"));
        for user in ["glance", "placement", "neutron", "nova"] {
            assert!(pos("keystone") < pos(user), "{names:?}");
        }
        assert!(pos("placement") < pos("nova"));
        assert!(pos("neutron") < pos("nova"));
    }

    #[test]
    fn enabled_services_choose_the_catalog_and_projects() {
        let s = settings(crate::config::settings::DEFAULT_SERVICES);
        let reg = Registry::builtin();
        let types: Vec<&str> = reg.catalog(&s).iter().map(|c| c.service_type).collect();
        assert_eq!(
            types,
            [
                "image",
                "placement",
                "network",
                "compute",
                "block-storage",
                "volumev3"
            ]
        );
        let dists: Vec<&str> = reg.python_projects(&s).iter().map(|p| p.dist).collect();
        assert_eq!(
            dists,
            [
                "etcd3gw",
                "keystone",
                "glance",
                "openstack-placement",
                "neutron",
                "nova",
                "cinder",
                "horizon"
            ]
        );
        let s = settings("key,g-api");
        let types: Vec<&str> = reg.catalog(&s).iter().map(|c| c.service_type).collect();
        assert_eq!(types, ["image"]);
    }

    /// A service that exists only here, registered with one line: everything that
    /// iterates the registry picks it up.
    struct Probe;

    static PROBE: Descriptor = Descriptor {
        enabled_by: &["probe-api", "probe"],
        after: &["keystone"],
        catalog: &[ServiceAccount {
            name: "probe",
            service_type: "probing",
            description: "Probe Service",
            extra_role: None,
            prefix: "PROBE",
            default_port: 9999,
            path: "/v1",
            route: "",
        }],
        python: &[Project {
            dist: "probe-server",
            repo_var: "PROBE_REPO",
        }],
        packages: &["probe-tools"],
        defaults: &[("PROBE_CONF", "/etc/probe/probe.conf")],
        databases: &["probe"],
        processes: &["probe-api"],
        ..Descriptor::named("probe", Layer::OpenStack)
    };

    impl Service for Probe {
        fn descriptor(&self) -> &'static Descriptor {
            &PROBE
        }
        fn db_sync(&self, host: &Host) -> Vec<Cmd> {
            vec![host.cmd("probe-manage").arg("db_sync")]
        }
    }

    fn with_probe() -> Registry {
        let Registry { mut services } = Registry::builtin();
        services.push(&Probe);
        Registry::new(services)
    }

    fn host(enabled: &str) -> (tempfile::TempDir, Host) {
        let (dir, mut host) = crate::context::test_host(settings(enabled));
        let logs = dir.path().join("logs").display().to_string();
        host.settings.set("LOGDIR", logs);
        (dir, host)
    }

    #[test]
    fn a_one_line_service_gets_package_requirement_catalog_database_and_process() {
        let reg = with_probe();
        let enabled = "mysql,key,probe-api";
        let (_dir, mut host) = host(enabled);
        let s = host.settings.clone();
        let names: Vec<&str> = reg.enabled(&s).map(Service::name).collect();
        assert_eq!(
            names,
            [
                "mysql",
                "memcached",
                "apache2",
                "keystone",
                "probe",
                "credentials"
            ]
        );
        assert!(reg.packages(&s).contains(&"probe-tools".to_owned()));
        let reqs = crate::system::python::requirements(&s, &reg.python_projects(&s), &[]);
        assert!(reqs.contains(&crate::system::python::Req::Pypi("probe-server".into())));
        let catalog = reg.catalog(&s);
        assert_eq!(catalog.len(), 1);
        assert_eq!(catalog[0].url(&s), "http://127.0.0.1:9999/v1");
        assert!(
            reg.defaults()
                .contains(&("PROBE_CONF", "/etc/probe/probe.conf"))
        );
        let jobs = reg.db_jobs(&host);
        let probe = jobs.iter().find(|j| j.service == "probe").unwrap();
        assert_eq!(probe.databases, ["probe"]);
        assert_eq!(probe.cmds[0].display(), "probe-manage db_sync");
        // Its process, once started and recorded, is stopped by its default stop.
        oslo::start_process(&mut host, "probe", "probe-api", "exec sleep 60", &[], None).unwrap();
        let record = host
            .ledger
            .process(crate::state::ProcessKind::Service, "probe-api")
            .cloned()
            .unwrap();
        assert!(oslo::alive(&host, &record));
        let mut ops = NoPipeline;
        let mut cx = ServiceCtx::new(&mut host, &mut ops);
        Probe.stop(&mut cx, false).unwrap();
        assert!(!oslo::alive(&host, &record));
        assert!(
            host.ledger
                .process(crate::state::ProcessKind::Service, "probe-api")
                .is_none()
        );
        // Disabled, it contributes nothing.
        let s = settings("mysql,key");
        assert!(!reg.packages(&s).contains(&"probe-tools".to_owned()));
        assert!(reg.catalog(&s).is_empty());
    }

    #[test]
    fn the_clients_of_the_cloud_come_after_every_api() {
        let reg = with_probe();
        let names: Vec<&str> = reg.all().map(Service::name).collect();
        let pos = |n: &str| names.iter().position(|x| *x == n).unwrap();
        let apis: Vec<&str> = reg
            .all()
            .filter(|s| s.descriptor().serves_api())
            .map(Service::name)
            .collect();
        assert_eq!(
            apis,
            [
                "keystone",
                "glance",
                "placement",
                "neutron",
                "nova",
                "cinder",
                "probe"
            ]
        );
        for client in ["credentials", "tempest"] {
            for api in &apis {
                assert!(pos(api) < pos(client), "{api} after {client}: {names:?}");
            }
        }
    }

    #[test]
    fn the_secrets_are_the_services_own_and_named_as_secrets() {
        let secrets = Registry::builtin().secrets();
        assert_eq!(
            secrets,
            [
                "DATABASE_PASSWORD",
                "RABBIT_PASSWORD",
                "ADMIN_PASSWORD",
                "SERVICE_PASSWORD",
                "METADATA_PROXY_SHARED_SECRET"
            ]
        );
        // The redactor and the resume state know a secret by its name.
        for name in secrets {
            assert!(crate::config::settings::is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn start_service_names_find_their_service() {
        let reg = Registry::builtin();
        let name = |n: &str| reg.by_service_name(n).map(Service::name);
        assert_eq!(name("mariadb"), Some("mysql"));
        assert_eq!(name("rabbitmq-server"), Some("rabbit"));
        assert_eq!(name("keystone"), Some("keystone"));
        assert_eq!(name("sshd"), None);
    }

    #[test]
    #[should_panic(expected = "cycle")]
    fn a_cycle_in_the_declared_order_is_refused() {
        struct A;
        struct B;
        static DA: Descriptor = Descriptor {
            after: &["b"],
            ..Descriptor::named("a", Layer::OpenStack)
        };
        static DB: Descriptor = Descriptor {
            after: &["a"],
            ..Descriptor::named("b", Layer::OpenStack)
        };
        impl Service for A {
            fn descriptor(&self) -> &'static Descriptor {
                &DA
            }
        }
        impl Service for B {
            fn descriptor(&self) -> &'static Descriptor {
                &DB
            }
        }
        let _ = Registry::new(vec![&A, &B]);
    }
}
