//! The public network's side on this host. DevStack puts the public gateway address
//! (`172.24.4.1/24`) on `br-ex` in the host's own namespace. Here, by default, it
//! goes into a network namespace the stack creates (`PUBLIC_NAMESPACE`,
//! `devstack-public`), at the end of a veth pair whose other end is a port of br-ex:
//! nothing in the host's root namespace routes to the cloud's ranges, and a
//! container's own network is untouched. Floating IPs are reached with
//! `ip netns exec devstack-public ssh cirros@<floating ip>`.
//! `PUBLIC_GATEWAY_IN_HOST=True` restores DevStack's way (the address on br-ex).
//!
//! A veth pair, not an OVS internal port moved into the namespace: an internal port
//! is dead after an ovs-vswitchd restart on the userspace datapath.

use crate::context::Host;
use crate::services::{ServiceError, daemon};

/// Errors are OVN's: the public side is a port of its bridge.
const SERVICE: &str = "ovn";

/// The veth ends: in br-ex, and in the namespace.
pub(crate) const VETH_BRIDGE: &str = "ds-pub-br";
pub(crate) const VETH_NS: &str = "ds-pub-ns";
/// Ledger facts: the namespace we made, the address we put on br-ex.
const NETNS_FACT: &str = "public-netns";
const HOST_ADDR_FACT: &str = "public-host-address";
/// Set while the veth pair is ours: the names are host-wide, and another tree's
/// unstack (a test's, a second checkout's) must not cut this cloud's public side.
const VETH_FACT: &str = "public-veth";

/// The namespace's name.
pub(crate) fn namespace(host: &Host) -> String {
    host.settings
        .get_or("PUBLIC_NAMESPACE", "devstack-public")
        .to_owned()
}

/// Where the gateway address lives: the host (DevStack's way) or our namespace.
pub(crate) fn in_host(host: &Host) -> bool {
    host.settings.flag("PUBLIC_GATEWAY_IN_HOST", false)
}

fn ip(host: &Host, args: &[&str]) -> Result<(), ServiceError> {
    host.cmd("ip")
        .args(args)
        .label("ip")
        .timeout(std::time::Duration::from_secs(10))
        .run()
        .map(|_| ())
        .map_err(|source| ServiceError::Process {
            service: SERVICE.into(),
            what: format!("ip {}", args.join(" ")),
            source,
        })
}

fn link_exists(host: &Host, name: &str) -> bool {
    host.cmd("ip")
        .args(["link", "show", name])
        .capture()
        .allow_failure()
        .run()
        .is_ok_and(|o| o.status.success())
}

fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/var/run/netns").join(name).exists()
}

/// The commands that plumb the public side, as `ip`/`ovs-vsctl` argument lists (a
/// test reads them).
pub(crate) fn plan(ns: &str, bridge: &str, cidrs: &[String], in_host: bool) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    let mut out = Vec::new();
    if in_host {
        for c in cidrs {
            out.push(v(&["ip", "addr", "replace", c, "dev", bridge]));
        }
        out.push(v(&["ip", "link", "set", bridge, "up"]));
        return out;
    }
    out.push(v(&["ip", "netns", "add", ns]));
    out.push(v(&[
        "ip",
        "link",
        "add",
        VETH_BRIDGE,
        "type",
        "veth",
        "peer",
        "name",
        VETH_NS,
    ]));
    out.push(v(&["ip", "link", "set", VETH_NS, "netns", ns]));
    out.push(v(&[
        "ovs-vsctl",
        "--may-exist",
        "add-port",
        bridge,
        VETH_BRIDGE,
    ]));
    out.push(v(&["ip", "link", "set", VETH_BRIDGE, "up"]));
    out.push(v(&["ip", "-n", ns, "link", "set", "lo", "up"]));
    for c in cidrs {
        out.push(v(&["ip", "-n", ns, "addr", "replace", c, "dev", VETH_NS]));
    }
    out.push(v(&["ip", "-n", ns, "link", "set", VETH_NS, "up"]));
    // Segments of up to 64 KiB (TSO/GSO) that the namespace hands the veth do not
    // get through the userspace datapath to a guest behind the router (a 4 MiB copy
    // over ssh to a floating IP stalled; small packets and the other direction were
    // fine): the namespace sends MTU-sized packets. Harmless on the kernel datapath.
    out.push(v(&[
        "ip", "netns", "exec", ns, "ethtool", "-K", VETH_NS, "tso", "off", "gso", "off",
    ]));
    out
}

/// The gateway addresses (`cidrs`, e.g. `172.24.4.1/24`) in our namespace or on
/// `bridge` (br-ex, made by the caller). Idempotent: a re-stack finds it in place.
pub(crate) fn setup(host: &mut Host, bridge: &str, cidrs: &[String]) -> Result<(), ServiceError> {
    let ns = namespace(host);
    let in_host = in_host(host);
    let have_ns = netns_exists(&ns);
    let have_veth = link_exists(host, VETH_BRIDGE);
    for argv in plan(&ns, bridge, cidrs, in_host) {
        let at = |i: usize| argv.get(i).map_or("", String::as_str);
        let skip = (at(1) == "netns" && at(2) == "add" && have_ns)
            || (at(2) == "add" && at(3) == VETH_BRIDGE && have_veth)
            || (at(4) == "netns" && have_veth);
        if skip {
            continue;
        }
        if argv[0] == "ovs-vsctl" {
            daemon::ctl(host, "ovs-vsctl", daemon::CTL_TIMEOUT)
                .args(&argv[1..])
                .run()
                .map_err(|source| ServiceError::Process {
                    service: SERVICE.into(),
                    what: "ovs-vsctl add-port".into(),
                    source,
                })?;
        } else {
            let args: Vec<&str> = argv[1..].iter().map(String::as_str).collect();
            ip(host, &args)?;
        }
        if at(1) == "netns" && at(2) == "add" {
            host.ledger.set_fact(NETNS_FACT, ns.clone());
            host.checkpoint();
        }
    }
    if !in_host {
        host.ledger.set_fact(VETH_FACT, VETH_BRIDGE);
    }
    if in_host {
        host.ledger
            .set_fact(HOST_ADDR_FACT, format!("{}|{bridge}", cidrs.join(",")));
    }
    host.checkpoint();
    Ok(())
}

/// The end-of-stack line: how to reach floating IPs (when the public side is ours).
pub(crate) fn summary(host: &Host) -> Option<String> {
    if let Some(ns) = host.ledger.fact(NETNS_FACT) {
        return Some(format!(
            "Floating IPs: from namespace {ns}: ip netns exec {ns} ssh cirros@<floating ip>"
        ));
    }
    host.ledger.fact(HOST_ADDR_FACT).map(|v| {
        format!(
            "Floating IPs: from this host (public gateway {} in the root namespace)",
            v.split('|').next().unwrap_or_default()
        )
    })
}

/// unstack: the veth pair, our namespace and the address we put on br-ex go, each only
/// when this tree's state says it made it; every failure is a warning (the rest still
/// goes).
pub(crate) fn remove(host: &mut Host) {
    if host.ledger.fact(VETH_FACT).is_some() && link_exists(host, VETH_BRIDGE) {
        let _ = daemon::ctl(host, "ovs-vsctl", daemon::CTL_TIMEOUT)
            .args(["--if-exists", "del-port", VETH_BRIDGE])
            .allow_failure()
            .run();
        if let Err(e) = ip(host, &["link", "del", VETH_BRIDGE]) {
            host.warn(&e.to_string());
        }
    }
    host.ledger.forget_fact(VETH_FACT);
    if let Some(ns) = host.ledger.fact(NETNS_FACT).map(str::to_owned) {
        if netns_exists(&ns) {
            if let Err(e) = ip(host, &["netns", "del", &ns]) {
                host.warn(&e.to_string());
            }
        }
        host.ledger.forget_fact(NETNS_FACT);
    }
    if let Some(v) = host.ledger.fact(HOST_ADDR_FACT).map(str::to_owned) {
        if let Some((cidrs, bridge)) = v.split_once('|') {
            for c in cidrs.split(',').filter(|c| !c.is_empty()) {
                let _ = host
                    .cmd("ip")
                    .args(["addr", "del", c, "dev", bridge])
                    .allow_failure()
                    .run();
            }
        }
        host.ledger.forget_fact(HOST_ADDR_FACT);
    }
    host.checkpoint();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_goes_into_the_namespace_by_default() {
        let cidrs = vec!["172.24.4.1/24".to_owned()];
        let p: Vec<String> = plan("devstack-public", "br-ex", &cidrs, false)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        insta::assert_snapshot!(p.join("\n"), @r"
        ip netns add devstack-public
        ip link add ds-pub-br type veth peer name ds-pub-ns
        ip link set ds-pub-ns netns devstack-public
        ovs-vsctl --may-exist add-port br-ex ds-pub-br
        ip link set ds-pub-br up
        ip -n devstack-public link set lo up
        ip -n devstack-public addr replace 172.24.4.1/24 dev ds-pub-ns
        ip -n devstack-public link set ds-pub-ns up
        ip netns exec devstack-public ethtool -K ds-pub-ns tso off gso off
        ");
        // Nothing touches the root namespace's addresses.
        assert!(!p.iter().any(|l| l.starts_with("ip addr")));
    }

    #[test]
    fn devstacks_way_puts_it_on_the_bridge() {
        let cidrs = vec!["172.24.4.1/24".to_owned()];
        let p: Vec<String> = plan("x", "br-ex", &cidrs, true)
            .iter()
            .map(|a| a.join(" "))
            .collect();
        assert_eq!(
            p,
            [
                "ip addr replace 172.24.4.1/24 dev br-ex",
                "ip link set br-ex up"
            ]
        );
    }
}
