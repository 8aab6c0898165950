//! The real services a stack brings up, each behind one trait the pipeline drives in
//! DevStack's order: layer 1 (database, message queue, cache) first, then OpenStack.

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::pipeline::Run;
use crate::shell::ShellError;
use crate::system::process::ProcessError;

pub mod calls;
pub mod credentials;
pub mod database;
pub mod glance;
pub mod hypervisor;
pub mod keystone;
pub mod memcached;
pub mod mysql;
pub mod neutron;
pub mod nova;
pub mod placement;
pub mod postgresql;
pub mod rabbit;
pub mod uwsgi;

/// Where a service sits in the stack's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Database, message queue, cache: installed and started before `stack install`.
    Infra,
    /// OpenStack services: installed and configured before `stack install`, initialised
    /// before `stack post-config`, started after it.
    OpenStack,
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
        source: ShellError,
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

    /// The last lines of output that explain the failure, when there are any.
    pub fn tail(&self) -> &[String] {
        match self {
            Self::Process { source, .. } => source.tail(),
            Self::Shell { source, .. } => source.tail(),
            Self::NotReady { tail, .. } => tail,
            _ => &[],
        }
    }
}

/// One service (or a family of DevStack service names handled together).
pub trait Service {
    /// The name in summaries and errors (DevStack's lib name: mysql, keystone, nova).
    fn name(&self) -> &'static str;
    fn layer(&self) -> Layer;
    fn is_enabled(&self, settings: &Settings) -> bool;
    /// lib/-layer defaults (`${NAME:-default}`), applied after `override_defaults`.
    fn defaults(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Debian packages for the one batched prerequisite install.
    fn packages(&self, _settings: &Settings) -> Vec<String> {
        Vec::new()
    }
    fn install(&self, _run: &mut Run) -> Result<(), ServiceError> {
        Ok(())
    }
    fn configure(&self, _run: &mut Run) -> Result<(), ServiceError> {
        Ok(())
    }
    fn init(&self, _run: &mut Run) -> Result<(), ServiceError> {
        Ok(())
    }
    fn start(&self, _run: &mut Run) -> Result<(), ServiceError> {
        Ok(())
    }
    /// `all`: unstack --all (layer 1 stops only then).
    fn stop(&self, _run: &mut Run, _all: bool) -> Result<(), ServiceError> {
        Ok(())
    }
    fn clean(&self, _run: &mut Run) -> Result<(), ServiceError> {
        Ok(())
    }
}

/// Every service the project knows, in stack order.
pub fn registry() -> Vec<Box<dyn Service>> {
    vec![
        Box::new(mysql::Mysql),
        Box::new(postgresql::Postgresql),
        Box::new(rabbit::Rabbit),
        Box::new(memcached::Memcached),
        Box::new(keystone::Keystone),
        Box::new(glance::Glance),
        Box::new(placement::Placement),
        Box::new(neutron::Neutron),
        Box::new(nova::Nova),
        Box::new(credentials::Credentials),
        Box::new(hypervisor::HypervisorProbe),
    ]
}

pub mod status;

/// Stops every process the state still records (what services did not stop
/// themselves: a plugin's `run_process` ones), and forgets them.
pub fn stop_recorded_processes(run: &mut Run) {
    let records: Vec<_> = run.host.state.state.processes.values().cloned().collect();
    for record in records {
        let result = match run.host.supervisor.as_ref() {
            Some(sup) => sup.stop(&record),
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                run.host.state.state.processes.remove(&record.name);
            }
            Err(e) => run.host.warn(&e.to_string()),
        }
    }
}

/// Removes the files and directories the state says stack created.
pub fn remove_created(run: &mut Run) {
    let files: Vec<_> = run.host.state.state.files.iter().cloned().collect();
    for f in files {
        let _ = std::fs::remove_file(&f);
        run.host.state.state.files.remove(&f);
    }
    let dirs: Vec<_> = run.host.state.state.dirs.iter().rev().cloned().collect();
    for d in dirs {
        let _ = std::fs::remove_dir_all(&d);
        run.host.state.state.dirs.remove(&d);
    }
}
