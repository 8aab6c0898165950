//! The DevStack variables Rust reads, each with its one default.
//!
//! A variable's default lives in exactly one place: Rust's stackrc role
//! (`settings::EARLY_DEFAULTS`, `settings::STACKRC_DEFAULTS`), a service's lib/
//! defaults (`services::Descriptor::defaults`), or the bash `stackrc` that every run
//! sources after Rust's own. A variable read here is a [`Var`]: its name and who owns
//! its default. A test fails on a variable defaulted in two of those places, and on a
//! read site that gives a default of its own to a variable that has one elsewhere
//! (the ones not migrated yet are listed in the test, and may only go).

use crate::config::settings::{Settings, trueorfalse};

/// One DevStack variable Rust reads, and who owns its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Var {
    pub(crate) name: &'static str,
    pub(crate) owner: Owner,
}

/// Where a variable's one default lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The bash `stackrc` sets it in every run before Rust reads it. The value is
    /// what Rust falls back to where no run's shell gave it (a `devstack __call`
    /// whose shim did not send it, a test); a test keeps it equal to stackrc's
    /// (on x86_64, where stackrc computes the architecture).
    Stackrc(&'static str),
}

impl Var {
    const fn stackrc(name: &'static str, value: &'static str) -> Self {
        Self {
            name,
            owner: Owner::Stackrc(value),
        }
    }

    /// Its value in `settings`, else its default.
    pub(crate) fn read<'a>(&self, settings: &'a Settings) -> &'a str {
        match self.owner {
            Owner::Stackrc(value) => settings.get_or(self.name, value),
        }
    }

    /// Its value as DevStack's `trueorfalse` reads it, else its default's.
    pub(crate) fn flag(&self, settings: &Settings) -> bool {
        match self.owner {
            Owner::Stackrc(value) => settings.flag(self.name, trueorfalse(false, value)),
        }
    }
}

/// The image the stack uploads to glance and tempest boots.
pub(crate) const DEFAULT_IMAGE_NAME: Var =
    Var::stackrc("DEFAULT_IMAGE_NAME", "cirros-0.6.3-x86_64-disk");
/// lib/lvm's volume groups are `$VOLUME_GROUP_NAME-<backend>`.
pub(crate) const VOLUME_GROUP_NAME: Var = Var::stackrc("VOLUME_GROUP_NAME", "stack-volumes");
/// The size of each LVM backend's sparse backing file.
pub(crate) const VOLUME_BACKING_FILE_SIZE: Var = Var::stackrc("VOLUME_BACKING_FILE_SIZE", "30G");

// Neutron's initial networks (DevStack's lib/neutron create_neutron_initial_network).
/// `4`, `6` or `4+6`: the address families of the initial networks.
pub(crate) const IP_VERSION: Var = Var::stackrc("IP_VERSION", "4+6");
pub(crate) const PRIVATE_NETWORK_NAME: Var = Var::stackrc("PRIVATE_NETWORK_NAME", "private");
pub(crate) const PUBLIC_NETWORK_NAME: Var = Var::stackrc("PUBLIC_NETWORK_NAME", "public");
pub(crate) const FLOATING_RANGE: Var = Var::stackrc("FLOATING_RANGE", "172.24.4.0/24");
pub(crate) const IPV6_RA_MODE: Var = Var::stackrc("IPV6_RA_MODE", "slaac");
pub(crate) const IPV6_ADDRESS_MODE: Var = Var::stackrc("IPV6_ADDRESS_MODE", "slaac");
pub(crate) const IPV6_PUBLIC_RANGE: Var = Var::stackrc("IPV6_PUBLIC_RANGE", "2001:db8::/64");
pub(crate) const IPV6_PUBLIC_NETWORK_GATEWAY: Var =
    Var::stackrc("IPV6_PUBLIC_NETWORK_GATEWAY", "2001:db8::2");
/// Whether the public network is a provider (flat) network on `PUBLIC_PHYSICAL_NETWORK`.
pub(crate) const Q_USE_PROVIDERNET_FOR_PUBLIC: Var =
    Var::stackrc("Q_USE_PROVIDERNET_FOR_PUBLIC", "True");
pub(crate) const NEUTRON_CREATE_INITIAL_NETWORKS: Var =
    Var::stackrc("NEUTRON_CREATE_INITIAL_NETWORKS", "True");

/// Every variable declared here (the tests check each against stackrc).
#[cfg(test)]
const ALL: &[Var] = &[
    DEFAULT_IMAGE_NAME,
    VOLUME_GROUP_NAME,
    VOLUME_BACKING_FILE_SIZE,
    IP_VERSION,
    PRIVATE_NETWORK_NAME,
    PUBLIC_NETWORK_NAME,
    FLOATING_RANGE,
    IPV6_RA_MODE,
    IPV6_ADDRESS_MODE,
    IPV6_PUBLIC_RANGE,
    IPV6_PUBLIC_NETWORK_GATEWAY,
    Q_USE_PROVIDERNET_FOR_PUBLIC,
    NEUTRON_CREATE_INITIAL_NETWORKS,
];

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use super::*;
    use crate::config::settings::{EARLY_DEFAULTS, STACKRC_DEFAULTS};

    /// Variables whose read sites still give a literal default of their own though
    /// the variable has one elsewhere: the migration's to-do list. A read site goes
    /// through a [`Var`] instead; the list may only shrink.
    const NOT_MIGRATED: &[&str] = &[
        "ADMIN_DOMAIN_NAME",
        "API_WORKERS",
        "BACKING_FILE_SUFFIX",
        "BUILD_TIMEOUT",
        "CINDER_VOLUME_CLEAR",
        "DATABASE_HOST",
        "DATABASE_USER",
        "DATA_DIR",
        "DOWNLOAD_DEFAULT_IMAGES",
        "ENABLE_CHASSIS_AS_GW",
        "ENABLE_DEBUG_LOG_LEVEL",
        "ENABLE_DISTRIBUTED_FLOATING_IP",
        "ERROR_ON_CLONE",
        "FIXED_RANGE",
        "FIXED_RANGE_V6",
        "HORIZON_APACHE_ROOT",
        "HOST_IP",
        "KEYSTONE_AUTH_URI",
        "KEYSTONE_SERVICE_HOST",
        "KEYSTONE_SERVICE_URI",
        "MEMCACHE_SERVERS",
        "OVN_BRIDGE_MAPPINGS",
        "OVN_L3_CREATE_PUBLIC_NETWORK",
        "OVN_L3_SCHEDULER",
        "PUBLIC_BRIDGE",
        "PUBLIC_GATEWAY_IN_HOST",
        "PUBLIC_NAMESPACE",
        "PUBLIC_PHYSICAL_NETWORK",
        "Q_AGENT",
        "Q_META_DATA_IP",
        "Q_ML2_PLUGIN_EXT_DRIVERS",
        "Q_ML2_PLUGIN_MECHANISM_DRIVERS",
        "Q_ML2_TENANT_NETWORK_TYPE",
        "RABBIT_HOST",
        "RABBIT_USERID",
        "RECLONE",
        "REGION_NAME",
        "SERVICE_DOMAIN_NAME",
        "SERVICE_HOST",
        "SERVICE_LISTEN_ADDRESS",
        "SERVICE_PROJECT_NAME",
        "SERVICE_PROTOCOL",
        "SKIP_STOP_OVN",
        "STACK_USER",
        "TUNNEL_ENDPOINT_IP",
    ];

    fn top() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// The defaults the bash stackrc sets: `: "${NAME:=VALUE}"` (the value as
    /// written) and `if [[ -z ${NAME:-} ]]` (computed: no literal).
    fn stackrc_defaults() -> BTreeMap<String, Option<String>> {
        let text = fs_err::read_to_string(top().join("stackrc")).unwrap();
        let mut out = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix(": \"${") {
                if let Some((name, value)) = rest.split_once(":=") {
                    let value = value.strip_suffix("}\"").unwrap_or(value);
                    out.insert(name.to_owned(), Some(value.to_owned()));
                }
            } else if let Some(rest) = line.strip_prefix("if [[ -z ${") {
                if let Some((name, _)) = rest.split_once(":-}") {
                    out.entry(name.to_owned()).or_insert(None);
                }
            }
        }
        out
    }

    /// Every place a variable gets a default, by name.
    fn default_owners() -> BTreeMap<String, Vec<String>> {
        let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in stackrc_defaults().into_keys() {
            owners.entry(name).or_default().push("stackrc".into());
        }
        for (name, _) in EARLY_DEFAULTS.iter().chain(STACKRC_DEFAULTS) {
            owners
                .entry((*name).to_owned())
                .or_default()
                .push("config::settings".into());
        }
        for service in crate::services::Registry::builtin().all() {
            for (name, _) in service.descriptor().defaults {
                owners
                    .entry((*name).to_owned())
                    .or_default()
                    .push(format!("services::{}", service.name()));
            }
        }
        owners
    }

    #[test]
    fn no_variable_is_defaulted_twice() {
        let twice: Vec<String> = default_owners()
            .into_iter()
            .filter(|(_, places)| places.len() > 1)
            .map(|(name, places)| format!("{name}: {}", places.join(", ")))
            .collect();
        assert!(twice.is_empty(), "defaulted twice:\n{}", twice.join("\n"));
    }

    #[test]
    fn a_var_that_stackrc_owns_falls_back_to_stackrcs_value() {
        let stackrc = stackrc_defaults();
        // What stackrc computes rather than writes, as on this project's machines.
        let computed: BTreeMap<&str, &str> = [("CIRROS_ARCH", "x86_64")].into();
        let expand = |value: &str| {
            let mut out = value.to_owned();
            for (name, v) in &stackrc {
                if let Some(v) = v {
                    out = out.replace(&format!("${name}"), v);
                }
            }
            for (name, v) in &computed {
                out = out.replace(&format!("${name}"), v);
            }
            out
        };
        for var in ALL {
            let Owner::Stackrc(fallback) = var.owner;
            let Some(Some(value)) = stackrc.get(var.name) else {
                panic!(
                    "{} is declared stackrc's but stackrc does not set it",
                    var.name
                );
            };
            assert_eq!(expand(value), fallback, "{}", var.name);
        }
    }

    /// `.get_or("NAME", …)` and `.flag("NAME", …)` outside tests, by variable.
    fn read_site_defaults() -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut todo = vec![top().join("src")];
        while let Some(path) = todo.pop() {
            if path.is_dir() {
                for entry in fs_err::read_dir(&path).unwrap() {
                    todo.push(entry.unwrap().path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("vars.rs") {
                continue;
            }
            let text = fs_err::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for call in [".get_or(", ".flag("] {
                for (i, _) in code.match_indices(call) {
                    let rest = code[i + call.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    if rest[name.len()..].starts_with('"') {
                        out.insert(name);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_read_site_gives_no_second_default() {
        let owners = default_owners();
        let sites = read_site_defaults();
        let declared: BTreeSet<&str> = ALL.iter().map(|v| v.name).collect();
        let new: Vec<&String> = sites
            .iter()
            .filter(|n| owners.contains_key(*n) || declared.contains(n.as_str()))
            .filter(|n| !NOT_MIGRATED.contains(&n.as_str()))
            .collect();
        assert!(
            new.is_empty(),
            "read with a default of their own though one exists elsewhere (read them \
             through a config::vars::Var): {new:?}"
        );
        let done: Vec<&&str> = NOT_MIGRATED
            .iter()
            .filter(|n| !sites.contains(**n) || !owners.contains_key(**n))
            .collect();
        assert!(
            done.is_empty(),
            "migrated: remove from NOT_MIGRATED: {done:?}"
        );
    }
}
