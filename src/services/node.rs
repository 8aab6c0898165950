//! The node a stack makes of this machine in a multi-node cloud, as DevStack's model
//! has it: every node runs its own stack from its own local.conf; a compute node
//! (DevStack's "subnode") is one whose `ENABLED_SERVICES` holds only compute-side
//! services (`n-cpu`, `placement-client`, `ovn-controller`, `ovs-vswitchd`,
//! `ovsdb-server`, `q-ovn-agent`) and whose `SERVICE_HOST` (with `DATABASE_HOST`,
//! `RABBIT_HOST`, `GLANCE_HOSTPORT`, `Q_HOST`) names the controller. Which node a
//! stack is follows from the descriptors' `role`: no enabled service of
//! [`Role::Controller`] makes a compute node.
//!
//! Nothing here changes what a service does: each service already runs only its
//! enabled parts (nova's database and `discover_hosts` where its control plane runs,
//! the accounts where keystone runs, the initial networks where neutron's server
//! runs). This is what `devstack plan` says about the node and what the stack checks
//! before it starts (a compute node must reach its controller).

use crate::config::settings::Settings;
use crate::services::{Registry, Role, neutron, ovn, rabbit};

/// What this machine is in the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// Runs the control plane (or everything: a single-node cloud).
    Controller,
    /// Runs only compute-side services; the controller is `SERVICE_HOST`.
    Compute,
}

impl Node {
    /// The node these settings make: a compute node when services are enabled and
    /// none of them is the controller's.
    pub(crate) fn of(registry: &Registry, settings: &Settings) -> Self {
        // OVN's northd and its databases are what compute nodes join: a node that
        // runs them is the controller, whatever else it runs (OVN's one service
        // serves both roles, so its descriptor's role cannot say).
        if settings.is_enabled(&["ovn-northd"]) {
            return Self::Controller;
        }
        let mut roles = registry
            .enabled(settings)
            .map(|s| s.descriptor().role)
            .peekable();
        if roles.peek().is_some() && roles.all(|r| r != Role::Controller) {
            Self::Compute
        } else {
            Self::Controller
        }
    }
}

/// A loopback address (IPv4 127/8, `::1`, `localhost`): a compute node's controller
/// cannot be one.
pub(crate) fn is_loopback(addr: &str) -> bool {
    addr.starts_with("127.") || addr == "::1" || addr == "localhost"
}

/// Why a compute node's settings cannot reach its controller, if they cannot.
pub(crate) fn compute_problem(settings: &Settings) -> Option<String> {
    // Only what talks to the controller needs one (a lone hypervisor probe does not).
    if !settings.is_enabled(&[
        "n-cpu",
        "ovn-controller",
        neutron::OVN_AGENT,
        neutron::METADATA_AGENT,
    ]) {
        return None;
    }
    let unreachable: Vec<&str> = ["SERVICE_HOST", "DATABASE_HOST", "RABBIT_HOST"]
        .into_iter()
        .filter(|v| {
            settings
                .get(v)
                .is_none_or(|a| a.is_empty() || is_loopback(a))
        })
        .collect();
    (!unreachable.is_empty()).then(|| {
        format!(
            "this is a compute node (no controller service is enabled) but {} {} the \
             loopback address: set SERVICE_HOST (and DATABASE_HOST, RABBIT_HOST, which \
             follow it by default) to the controller's address",
            unreachable.join(", "),
            if unreachable.len() == 1 { "is" } else { "are" }
        )
    })
}

/// What `devstack plan` says about the node: for a compute node, where each of its
/// services reaches the controller; for a controller reachable by others, where its
/// services listen. Nothing for a single node on the loopback address.
pub(crate) fn plan_lines(registry: &Registry, s: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    match Node::of(registry, s) {
        Node::Compute => {
            out.push(format!(
                "node: compute (DevStack's subnode) of the controller at {}: no database, \
                 message queue, keystone, API, initial network or image upload here",
                s.str("SERVICE_HOST")
            ));
            out.push(format!(
                "  database  {} (DATABASE_HOST)",
                s.str("DATABASE_HOST")
            ));
            if rabbit::configured_transport_url(s).is_some() {
                out.push(format!(
                    "  messaging rabbit://{}@{}:5672/ (RABBIT_HOST)",
                    s.str("RABBIT_USERID"),
                    s.str("RABBIT_HOST")
                ));
            }
            out.push(format!("  identity  {}", s.str("KEYSTONE_SERVICE_URI")));
            out.push(format!(
                "  image     {} (GLANCE_HOSTPORT)",
                s.str("GLANCE_HOSTPORT")
            ));
            out.push(format!("  network   {} (Q_HOST)", s.str("Q_HOST")));
            if s.is_enabled(&["n-cpu"]) {
                out.push(format!("  nova      my_ip={}", s.str("HOST_IP")));
            }
            if s.is_enabled(&["ovn-controller"]) {
                let chassis = ovn::chassis_settings(s, "SYSTEM-ID", "HOSTNAME", "DATAPATH");
                let pick = |key: &str| {
                    chassis
                        .iter()
                        .find_map(|kv| kv.strip_prefix(&format!("external_ids:{key}=")))
                        .unwrap_or("")
                        .to_owned()
                };
                out.push(format!(
                    "  ovn       ovn-remote={} ovn-encap-type={} ovn-encap-ip={} gateway chassis: {}",
                    pick("ovn-remote"),
                    pick("ovn-encap-type"),
                    pick("ovn-encap-ip"),
                    if pick("ovn-cms-options").contains("enable-chassis-as-gw") {
                        "yes"
                    } else {
                        "no"
                    }
                ));
            }
            if let Some(server) = neutron::MetadataServer::named(s) {
                out.push(format!(
                    "  metadata  {} asks nova's metadata API at {}:8775 (Q_META_DATA_IP)",
                    server.process(),
                    s.str("Q_META_DATA_IP")
                ));
            }
            if let Some(problem) = compute_problem(s) {
                out.push(format!("  ERROR: {problem}"));
            }
        }
        Node::Controller if !is_loopback(s.str("SERVICE_HOST")) => {
            out.push(format!(
                "node: controller at {} (compute nodes set SERVICE_HOST to it); its \
                 services listen on {} (SERVICE_LISTEN_ADDRESS), OVN's databases on \
                 {} and {}",
                s.str("SERVICE_HOST"),
                s.str("SERVICE_LISTEN_ADDRESS"),
                ovn::nb_remote(s),
                ovn::sb_remote(s)
            ));
        }
        Node::Controller => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::Service;

    /// A compute node's local.conf, with what stackrc derives from it.
    fn compute_settings() -> Settings {
        Settings::from_pairs(&[
            (
                "ENABLED_SERVICES",
                "n-cpu,placement-client,ovn-controller,ovs-vswitchd,ovsdb-server,q-ovn-agent",
            ),
            ("HOST_IP", "10.20.0.12"),
            ("SERVICE_HOST", "10.20.0.11"),
            ("DATABASE_HOST", "10.20.0.11"),
            ("RABBIT_HOST", "10.20.0.11"),
            ("RABBIT_USERID", "stackrabbit"),
            ("RABBIT_PASSWORD", "rabbit-secret"),
            ("GLANCE_HOSTPORT", "10.20.0.11:9292"),
            ("Q_HOST", "10.20.0.11"),
            ("Q_META_DATA_IP", "10.20.0.11"),
            ("KEYSTONE_SERVICE_URI", "http://10.20.0.11/identity"),
            ("ENABLE_CHASSIS_AS_GW", "False"),
        ])
    }

    #[test]
    fn only_compute_side_services_make_a_compute_node() {
        let r = Registry::builtin();
        let mut s = compute_settings();
        assert_eq!(Node::of(&r, &s), Node::Compute);
        let enabled: Vec<&str> = r.enabled(&s).map(Service::name).collect();
        // placement-client alone does not bring placement's API, database or catalog.
        assert_eq!(
            enabled,
            ["placement-client", "ovn", "neutron-agent", "nova"],
            "{enabled:?}"
        );
        // Accounts are made only where keystone runs (calls::create_for_enabled); and
        // placement's entry is not even in this node's catalog.
        assert!(!r.catalog(&s).iter().any(|a| a.name == "placement"));
        s.set(
            "ENABLED_SERVICES",
            crate::config::settings::DEFAULT_SERVICES,
        );
        assert_eq!(Node::of(&r, &s), Node::Controller);
        // Where q-svc runs, neutron.rs runs the agent: not twice.
        assert!(!r.enabled(&s).any(|x| x.name() == "neutron-agent"));
        s.set("ENABLED_SERVICES", "");
        assert_eq!(Node::of(&r, &s), Node::Controller);
        // OVN's northd alone (its databases) makes the node the one others join.
        s.set("ENABLED_SERVICES", "ovn-northd,ovn-controller");
        assert_eq!(Node::of(&r, &s), Node::Controller);
    }

    #[test]
    fn a_compute_node_on_the_loopback_address_is_refused() {
        let mut s = compute_settings();
        assert_eq!(compute_problem(&s), None);
        s.set("SERVICE_HOST", "127.0.0.1");
        s.set("RABBIT_HOST", "127.0.0.1");
        let p = compute_problem(&s).unwrap();
        assert!(
            p.contains("SERVICE_HOST, RABBIT_HOST are the loopback"),
            "{p}"
        );
    }

    #[test]
    fn the_plan_of_a_compute_node_points_every_service_at_the_controller() {
        let lines = plan_lines(&Registry::builtin(), &compute_settings()).join("\n");
        for want in [
            "node: compute (DevStack's subnode) of the controller at 10.20.0.11",
            "  database  10.20.0.11 (DATABASE_HOST)",
            "  messaging rabbit://stackrabbit@10.20.0.11:5672/",
            "  identity  http://10.20.0.11/identity",
            "  image     10.20.0.11:9292",
            "  nova      my_ip=10.20.0.12",
            "  ovn       ovn-remote=tcp:10.20.0.11:6642 ovn-encap-type=geneve \
             ovn-encap-ip=10.20.0.12 gateway chassis: no",
            "  metadata  q-ovn-agent asks nova's metadata API at 10.20.0.11:8775",
        ] {
            assert!(lines.contains(want), "{want}\nnot in\n{lines}");
        }
        assert!(!lines.contains("rabbit-secret"));
        assert!(!lines.contains("ERROR"));
    }

    /// The files a compute node writes (nova, the OVN agent, neutron.conf), driven
    /// through the services' own steps: every address in them is the controller's or
    /// this node's, none the loopback; nova-compute's file has no database.
    #[test]
    fn a_compute_nodes_configs_point_at_the_controller() {
        use crate::context::{NoPipeline, ServiceCtx};
        let (dir, mut host) = crate::services::snapshots::host();
        for (k, v) in compute_settings().vars() {
            host.settings.set(k, v.clone());
        }
        host.settings.set("SERVICE_LISTEN_ADDRESS", "10.20.0.11");
        host.settings.set("MEMCACHE_SERVERS", "10.20.0.11:11211");
        // Defaults made from SERVICE_HOST, as lib defaults expand them after localrc.
        host.settings
            .set("NOVNCPROXY_URL", "http://10.20.0.11:6080/vnc_lite.html");
        host.settings
            .set("METADATA_PROXY_SHARED_SECRET", "meta-secret");
        let registry = Registry::builtin();
        let enabled: Vec<&dyn Service> = registry.enabled(&host.settings.clone()).collect();
        for svc in &enabled {
            let mut ops = NoPipeline;
            let mut cx = ServiceCtx::new(&mut host, &mut ops);
            svc.configure(&mut cx).unwrap();
            svc.init(&mut cx).unwrap();
        }
        let read = |p: &str| crate::services::snapshots::read(dir.path(), p);
        let cpu = read("etc/nova/nova-cpu.conf");
        assert!(cpu.contains("my_ip = 10.20.0.12\n"), "{cpu}");
        assert!(
            cpu.contains("transport_url = rabbit://stackrabbit:rabbit-secret@10.20.0.11:5672/\n"),
            "{cpu}"
        );
        assert!(
            cpu.contains("auth_url = http://10.20.0.11/identity\n"),
            "{cpu}"
        );
        assert!(
            !cpu.contains("\nconnection = "),
            "nova-compute has no database: {cpu}"
        );
        let agent = read("etc/neutron/plugins/ml2/ovn_agent.ini");
        assert!(
            agent.contains("ovn_sb_connection = tcp:10.20.0.11:6642\n"),
            "{agent}"
        );
        assert!(
            agent.contains("nova_metadata_host = 10.20.0.11\n"),
            "{agent}"
        );
        let neutron = read("etc/neutron/neutron.conf");
        assert!(neutron.contains("@10.20.0.11:5672/"), "{neutron}");
        assert!(!neutron.contains("[database]"), "{neutron}");
        for f in host.ledger.files() {
            let text = fs_err::read_to_string(&f).unwrap_or_default();
            assert!(
                !text.contains("127.0.0.1") && !text.contains("localhost"),
                "{} names the loopback: {text}",
                f.display()
            );
        }
        // No API, database, keystone or image service configured here.
        for absent in ["etc/placement", "etc/keystone", "etc/glance", "etc/cinder"] {
            assert!(!dir.path().join(absent).exists(), "{absent} was written");
        }
    }
}
