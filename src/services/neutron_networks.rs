//! DevStack's `create_neutron_initial_network` (lib/neutron_plugins/services/l3),
//! through neutron's REST API: the demo project's `PRIVATE_NETWORK_NAME` with
//! `private-subnet` (`FIXED_RANGE`) and, when `IP_VERSION` has 6,
//! `ipv6-private-subnet` (`FIXED_RANGE_V6`, slaac); the external flat
//! `PUBLIC_NETWORK_NAME` on `PUBLIC_PHYSICAL_NETWORK` with `public-subnet`
//! (`FLOATING_RANGE`, `PUBLIC_NETWORK_GATEWAY`, no DHCP) and `ipv6-public-subnet`;
//! `Q_ROUTER_NAME` owned by demo, attached to the private subnets with its gateway on
//! public; then the public side on this host ([`ovn_public`]). Every object is found
//! by name before it is created: a re-stack changes nothing.
//!
//! Not done here: DevStack's subnet pools (it makes them only when the
//! `auto-allocated-topology` extension is loaded, which the default service plugins
//! do not), provider-network mode (`Q_USE_PROVIDER_NETWORKING`), and the IPv6 host
//! route to the private range.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::config::settings::Settings;
use crate::config::vars;
use crate::context::ServiceCtx;
use crate::openstack::neutron::{Client, NeutronError, id};
use crate::services::{ServiceError, keystone, ovn, ovn_public};

const NAME: &str = "neutron";

fn err(e: NeutronError) -> ServiceError {
    ServiceError::caused(NAME, "creating the initial networks", e)
}

/// What a run of [`create`] made or found (ids), for the summary and the tests.
#[derive(Debug, Default, Clone)]
pub(crate) struct Initial {
    pub private_net: String,
    pub private_subnet: String,
    pub router: Option<String>,
    pub public_net: Option<String>,
    /// The public subnet's gateway address with its prefix (`172.24.4.1/24`).
    pub public_gateway: Option<String>,
}

fn opt(s: &Settings, name: &str) -> Option<String> {
    s.get(name).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// DevStack's requests, in its order, against `client`; `demo` is the demo project.
pub(crate) fn create(
    client: &mut Client,
    s: &Settings,
    demo: &str,
) -> Result<Initial, NeutronError> {
    let ip_version = vars::IP_VERSION.read(s);
    let v4 = ip_version.contains('4');
    let v6 = ip_version.contains('6');
    let private_name = vars::PRIVATE_NETWORK_NAME.read(s);
    let in_demo = format!("project_id={demo}");
    let net = client.get_or_create(
        "networks",
        private_name,
        &in_demo,
        &json!({ "name": private_name, "project_id": demo }),
    )?;
    let net_id = id(&net);
    let mut out = Initial {
        private_net: net_id.clone(),
        ..Initial::default()
    };
    let subnet_q = format!("network_id={net_id}");
    if v4 {
        let mut body = json!({
            "name": "private-subnet",
            "network_id": net_id,
            "project_id": demo,
            "ip_version": 4,
            "cidr": s.get_or("FIXED_RANGE", "10.0.0.0/22"),
        });
        if let Some(gw) = opt(s, "NETWORK_GATEWAY") {
            body["gateway_ip"] = json!(gw);
        }
        out.private_subnet =
            id(&client.get_or_create("subnets", "private-subnet", &subnet_q, &body)?);
    }
    let mut v6_private = None;
    if v6 {
        let mut body = json!({
            "name": "ipv6-private-subnet",
            "network_id": net_id,
            "project_id": demo,
            "ip_version": 6,
            "cidr": s.get_or("FIXED_RANGE_V6", "fd00::/64"),
            "ipv6_ra_mode": vars::IPV6_RA_MODE.read(s),
            "ipv6_address_mode": vars::IPV6_ADDRESS_MODE.read(s),
        });
        if let Some(gw) = opt(s, "IPV6_PRIVATE_NETWORK_GATEWAY") {
            body["gateway_ip"] = json!(gw);
        }
        v6_private = Some(id(&client.get_or_create(
            "subnets",
            "ipv6-private-subnet",
            &subnet_q,
            &body,
        )?));
    }
    let ext = client.extensions()?;
    if !(ext.iter().any(|e| e == "router") && ext.iter().any(|e| e == "external-net")) {
        return Ok(out);
    }
    let router_name = s.str("Q_ROUTER_NAME");
    let per_tenant = s.flag("Q_L3_ROUTER_PER_TENANT", true);
    let (router_body, router_q) = if per_tenant {
        (
            json!({ "name": router_name, "project_id": demo }),
            in_demo.clone(),
        )
    } else {
        (json!({ "name": router_name }), String::new())
    };
    let router = id(&client.get_or_create("routers", router_name, &router_q, &router_body)?);
    let public_name = vars::PUBLIC_NETWORK_NAME.read(s);
    let mut public_body = json!({ "name": public_name, "router:external": true });
    if ext.iter().any(|e| e == "auto-allocated-topology") {
        public_body["is_default"] = json!(true);
    }
    if vars::Q_USE_PROVIDERNET_FOR_PUBLIC.flag(s) {
        public_body["provider:network_type"] = json!(s.get_or("PUBLIC_PROVIDERNET_TYPE", "flat"));
        public_body["provider:physical_network"] =
            json!(s.get_or("PUBLIC_PHYSICAL_NETWORK", "public"));
        if let Some(seg) = opt(s, "PUBLIC_PROVIDERNET_SEGMENTATION_ID") {
            public_body["provider:segmentation_id"] = json!(seg.parse::<u64>().unwrap_or(0));
        }
    }
    let public = id(&client.get_or_create("networks", public_name, "", &public_body)?);
    let public_q = format!("network_id={public}");
    if v4 {
        client.add_router_interface(&router, &out.private_subnet)?;
        let floating = vars::FLOATING_RANGE.read(s);
        let mut body = json!({
            "name": "public-subnet",
            "network_id": public,
            "ip_version": 4,
            "cidr": floating,
            "enable_dhcp": s.flag("PUBLIC_SUBNET_ENABLE_DHCP", false),
        });
        if let Some(gw) = opt(s, "PUBLIC_NETWORK_GATEWAY") {
            body["gateway_ip"] = json!(gw);
        }
        if let Some(pool) = opt(s, "Q_FLOATING_ALLOCATION_POOL") {
            // DevStack's form: start=A,end=B.
            let field = |k: &str| {
                pool.split(',')
                    .find_map(|kv| kv.strip_prefix(k).map(str::to_owned))
                    .unwrap_or_default()
            };
            body["allocation_pools"] = json!([{ "start": field("start="), "end": field("end=") }]);
        }
        let subnet = client.get_or_create("subnets", "public-subnet", &public_q, &body)?;
        let prefix = floating.rsplit_once('/').map_or("24", |(_, p)| p);
        out.public_gateway = subnet["gateway_ip"]
            .as_str()
            .map(|gw| format!("{gw}/{prefix}"));
        client.update(
            "routers",
            &router,
            &json!({ "external_gateway_info": { "network_id": public } }),
        )?;
    }
    if let Some(v6_private) = v6_private {
        client.add_router_interface(&router, &v6_private)?;
        let body = json!({
            "name": "ipv6-public-subnet",
            "network_id": public,
            "ip_version": 6,
            "cidr": vars::IPV6_PUBLIC_RANGE.read(s),
            "gateway_ip": vars::IPV6_PUBLIC_NETWORK_GATEWAY.read(s),
            "enable_dhcp": false,
        });
        client.get_or_create("subnets", "ipv6-public-subnet", &public_q, &body)?;
        if !v4 {
            client.update(
                "routers",
                &router,
                &json!({ "external_gateway_info": { "network_id": public } }),
            )?;
        }
    }
    out.router = Some(router);
    out.public_net = Some(public);
    Ok(out)
}

/// At the end of neutron's start, as stack.sh calls create_neutron_initial_network
/// once the server and agents run: the networks through neutron's API at `base`,
/// then the public side on this host.
pub(crate) fn create_initial(cx: &mut ServiceCtx<'_>, base: &str) -> Result<(), ServiceError> {
    let s = cx.host.settings.clone();
    if !vars::NEUTRON_CREATE_INITIAL_NETWORKS.flag(&s) || !keystone::DESCRIPTOR.enabled(&s) {
        return Ok(());
    }
    let t0 = Instant::now();
    let keystone = cx
        .host
        .keystone()
        .map_err(|e| ServiceError::caused(NAME, "keystone token", e))?;
    let token = keystone
        .token()
        .map_err(|e| ServiceError::caused(NAME, "keystone token", e))?
        .to_owned();
    let demo = keystone
        .project_id("demo", Some(s.get_or("SERVICE_DOMAIN_NAME", "Default")))
        .map_err(|e| ServiceError::caused(NAME, "the demo project", e))?;
    let mut client = Client::new(base, &token, Duration::from_secs(60));
    let made = create(&mut client, &s, &demo).map_err(err)?;
    cx.host.note(&format!(
        "neutron: initial networks in {:.1} s ({} requests): private {}, router {:?}, public {:?}",
        t0.elapsed().as_secs_f64(),
        client.log.len(),
        made.private_net,
        made.router,
        made.public_net
    ));
    let ovn_here = s.is_enabled(&["ovn-controller"]) && s.get_or("Q_AGENT", "ovn") == "ovn";
    if let (Some(gw), true) = (&made.public_gateway, ovn_here) {
        if s.flag("OVN_L3_CREATE_PUBLIC_NETWORK", true) {
            let bridge = s.get_or("PUBLIC_BRIDGE", "br-ex");
            ovn::add_bridge(cx.host, bridge, &["other-config:disable-in-band=true"])?;
            ovn_public::setup(cx.host, bridge, std::slice::from_ref(gw))?;
            let ns = ovn_public::namespace(cx.host);
            let how = if ovn_public::in_host(cx.host) {
                format!("{gw} on {}", s.get_or("PUBLIC_BRIDGE", "br-ex"))
            } else {
                format!(
                    "{gw} in network namespace {ns}; reach floating IPs with \
                     `ip netns exec {ns} ssh cirros@<floating ip>`"
                )
            };
            cx.host.note(&format!("public network gateway: {how}"));
            cx.host.progress.summary(&format!("Public network: {how}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    /// A fake neutron: answers every request from a small in-memory store, and
    /// records each `METHOD path body`.
    fn fake_neutron() -> (String, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}/", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        std::thread::spawn(move || {
            let mut store: Vec<(String, Value)> = Vec::new();
            let mut n = 0;
            for stream in l.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    if h.trim().is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap().to_owned();
                let path = parts
                    .next()
                    .unwrap()
                    .trim_start_matches("/v2.0/")
                    .to_owned();
                rec.lock().unwrap().push(format!("{method} {path} {body}"));
                let (kind, query) = path.split_once('?').unwrap_or((&path, ""));
                let answer = match method.as_str() {
                    "GET" if kind == "extensions" => json!({"extensions": [
                        {"alias": "router"}, {"alias": "external-net"}]}),
                    "GET" => {
                        let want: Vec<(&str, &str)> = query
                            .split('&')
                            .filter_map(|kv| kv.split_once('='))
                            .collect();
                        let found: Vec<Value> = store
                            .iter()
                            .filter(|(k, v)| {
                                k == kind && want.iter().all(|(f, x)| v[*f].as_str() == Some(x))
                            })
                            .map(|(_, v)| v.clone())
                            .collect();
                        json!({ kind: found })
                    }
                    "POST" => {
                        n += 1;
                        let one = kind.strip_suffix('s').unwrap();
                        let mut obj = body[one].clone();
                        obj["id"] = json!(format!("{one}-{n}"));
                        if one == "subnet" && obj["gateway_ip"].is_null() {
                            obj["gateway_ip"] = json!("172.24.4.1");
                        }
                        store.push((kind.to_owned(), obj.clone()));
                        json!({ one: obj })
                    }
                    _ => {
                        if kind.ends_with("add_router_interface") {
                            let router = kind.split('/').nth(1).unwrap().to_owned();
                            store.push((
                                "ports".into(),
                                json!({"device_id": router,
                                       "fixed_ips": [{"subnet_id": body["subnet_id"]}]}),
                            ));
                        }
                        json!({"router": {}})
                    }
                };
                let text = answer.to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (base, seen)
    }

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut s = Settings::from_pairs(&[
            ("IP_VERSION", "4"),
            ("FIXED_RANGE", "10.0.0.0/26"),
            ("FLOATING_RANGE", "172.24.4.0/24"),
            ("Q_ROUTER_NAME", "router1"),
        ]);
        for (k, v) in extra {
            s.set(k, *v);
        }
        s
    }

    #[test]
    fn devstacks_initial_networks_are_made_once() {
        let (base, seen) = fake_neutron();
        let mut c = Client::new(&base, "tok", Duration::from_secs(5));
        let s = settings(&[]);
        let made = create(&mut c, &s, "demo-id").unwrap();
        assert_eq!(made.public_gateway.as_deref(), Some("172.24.4.1/24"));
        assert_eq!(made.private_net, "network-1");
        assert!(made.router.is_some() && made.public_net.is_some());
        let writes: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| !l.starts_with("GET"))
            .cloned()
            .collect();
        insta::assert_snapshot!(writes.join("\n"), @r#"
        POST networks {"network":{"name":"private","project_id":"demo-id"}}
        POST subnets {"subnet":{"cidr":"10.0.0.0/26","ip_version":4,"name":"private-subnet","network_id":"network-1","project_id":"demo-id"}}
        POST routers {"router":{"name":"router1","project_id":"demo-id"}}
        POST networks {"network":{"name":"public","provider:network_type":"flat","provider:physical_network":"public","router:external":true}}
        PUT routers/router-3/add_router_interface {"subnet_id":"subnet-2"}
        POST subnets {"subnet":{"cidr":"172.24.4.0/24","enable_dhcp":false,"ip_version":4,"name":"public-subnet","network_id":"network-4"}}
        PUT routers/router-3 {"router":{"external_gateway_info":{"network_id":"network-4"}}}
        "#);
        // Again: everything is found, nothing is created or attached twice.
        seen.lock().unwrap().clear();
        create(&mut c, &s, "demo-id").unwrap();
        let again = seen.lock().unwrap().clone();
        assert!(
            !again
                .iter()
                .any(|l| l.starts_with("POST") || l.contains("add_router")),
            "{again:?}"
        );
    }

    #[test]
    fn names_and_ranges_come_from_devstacks_variables() {
        let (base, seen) = fake_neutron();
        let mut c = Client::new(&base, "tok", Duration::from_secs(5));
        let s = settings(&[
            ("PRIVATE_NETWORK_NAME", "priv"),
            ("PUBLIC_NETWORK_NAME", "ext"),
            ("Q_ROUTER_NAME", "r9"),
            ("PUBLIC_NETWORK_GATEWAY", "172.24.4.254"),
            ("IP_VERSION", "4+6"),
            ("FIXED_RANGE_V6", "fd12::/64"),
        ]);
        create(&mut c, &s, "d").unwrap();
        let all = seen.lock().unwrap().join("\n");
        for needle in [
            r#""name":"priv""#,
            r#""name":"ext""#,
            r#""name":"r9""#,
            r#""gateway_ip":"172.24.4.254""#,
            r#""cidr":"fd12::/64""#,
            r#""ipv6_ra_mode":"slaac""#,
            r#""name":"ipv6-public-subnet""#,
        ] {
            assert!(all.contains(needle), "{needle} not in\n{all}");
        }
    }
}
