//! neutron's OVN agent on a compute node (DevStack's subnode): `q-ovn-agent` (or the
//! older `q-ovn-metadata-agent`) where neutron's server (`q-svc`) does not run. Where
//! it runs, neutron.rs starts the agent with the server's workers.
//!
//! Mirrors DevStack's `configure_neutron` / `start_neutron_agents` on a node whose
//! `ENABLED_SERVICES` has the agent and not the server: neutron.conf holds what an
//! agent reads (the controller's message queue, the lock path; no database, no
//! keystone middleware), the agent's ini the controller's southbound database
//! (`OVN_SB_REMOTE`) and nova's metadata API (`Q_META_DATA_IP`, the controller), and
//! the agent runs as DevStack's process name.
//!
//! Reads: `NEUTRON_CONF`, `NEUTRON_CONF_DIR`, `Q_AGENT`, `RABBIT_*`, `OVN_SB_REMOTE`,
//! `Q_META_DATA_IP`, `METADATA_PROXY_SHARED_SECRET`. Records: the two files, the
//! agent's process, the fact that `ovnmeta-*` namespaces may exist (unstack removes
//! them).

use crate::config::settings::Settings;
use crate::context::ServiceCtx;
use crate::services::neutron::{self, METADATA_AGENT, MetadataServer, OVN_AGENT};
use crate::services::{Descriptor, Layer, Role, Service, ServiceError, daemon, oslo};
use crate::system::python::Project;

pub(crate) const NAME: &str = "neutron-agent";

pub(crate) struct NeutronAgent;

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[
        OVN_AGENT,
        "neutron-ovn-agent",
        METADATA_AGENT,
        "neutron-ovn-metadata-agent",
    ],
    role: Role::Compute,
    after: &["ovn"],
    rpc_backend: Some(("neutron", "NEUTRON_CONF", "DEFAULT")),
    python: &[Project {
        dist: "neutron",
        repo_var: "NEUTRON_REPO",
    }],
    // The metadata proxy the agent starts per network.
    packages: &["haproxy"],
    processes: &[OVN_AGENT, METADATA_AGENT],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

/// The agent this node runs on its own: one is named, neutron's server is not here,
/// and the mechanism is OVN's.
fn server(s: &Settings) -> Option<MetadataServer> {
    let ovn = s.get("Q_AGENT").is_none_or(|a| a.is_empty() || a == "ovn");
    (ovn && !neutron::DESCRIPTOR.enabled(s))
        .then(|| MetadataServer::named(s))
        .flatten()
}

/// neutron.conf on a node without the server: what the agent reads of it.
pub(crate) fn agent_neutron_conf(doc: &mut crate::ini::IniDoc, s: &Settings) {
    let state = neutron::state_dir(s);
    oslo::common_defaults(doc, s);
    doc.set("DEFAULT", "state_path", &state.display().to_string());
    if let Some(url) = crate::services::rabbit::configured_transport_url(s) {
        doc.set("DEFAULT", "transport_url", &url);
    }
    doc.set("agent", "root_helper", "sudo");
    doc.set(
        "oslo_concurrency",
        "lock_path",
        &state.join("lock").display().to_string(),
    );
}

impl Service for NeutronAgent {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        server(settings).is_some()
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let Some(server) = server(&s) else {
            return Ok(());
        };
        let state = neutron::state_dir(&s);
        oslo::make_dir(cx.host, NAME, &state.join("lock"))?;
        oslo::write_conf(cx.host, NAME, &neutron::conf(&s), |doc| {
            agent_neutron_conf(doc, &s);
        })?;
        oslo::write_conf(cx.host, NAME, &server.conf(&s), |doc| {
            neutron::metadata_agent(doc, &s, &state, server);
        })
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let Some(server) = server(&s) else {
            return Ok(());
        };
        let cmd = format!(
            "exec {} --config-file {} --config-file {}",
            crate::system::python::venv_bin(&s, server.binary()).display(),
            neutron::conf(&s).display(),
            server.conf(&s).display()
        );
        oslo::start_process(cx.host, NAME, server.process(), &cmd, &[], None)?;
        cx.host
            .ledger
            .set_fact(neutron::METADATA_NETNS_FACT, "ovnmeta-");
        Ok(())
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        let stopped = oslo::stop_processes(cx.host, NAME, DESCRIPTOR.processes);
        neutron::stop_metadata_proxies(cx.host);
        stopped
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        for name in DESCRIPTOR.processes {
            daemon::remove_daemon_log(&cx.host.settings, name);
        }
        Ok(())
    }
}
