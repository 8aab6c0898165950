//! Service enablement with DevStack's semantics: `ENABLED_SERVICES` is a comma list;
//! some names are groups (`nova` covers `n-*`); a `-name` entry removes `name`.
//! The shell library's `is_service_enabled`, `enable_service`, `disable_service`,
//! `disable_all_services` call into these functions, so the logic lives once.

/// Group names and the prefixes of their members (DevStack's legacy rules and the
/// `is_<group>_enabled` functions of its lib/ files).
const GROUPS: &[(&str, &[&str])] = &[
    ("nova", &["n-"]),
    ("glance", &["g-"]),
    ("cinder", &["c-"]),
    ("neutron", &["q-", "neutron-"]),
    ("swift", &["s-"]),
    ("trove", &["tr-"]),
    ("placement", &["placement-"]),
];

/// Splits a comma list, dropping empty entries.
pub(crate) fn parse_list(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn join(items: &[&str]) -> String {
    items.join(",")
}

/// Is one name enabled in `enabled` (with `disabled` as DISABLED_SERVICES)?
pub(crate) fn is_enabled_one(enabled: &str, disabled: &str, name: &str) -> bool {
    let list = parse_list(enabled);
    let disabled = parse_list(disabled);
    if list.contains(&name) {
        return true;
    }
    // keystone is spelled `key` in ENABLED_SERVICES.
    if (name == "keystone" && list.contains(&"key"))
        || (name == "key" && list.contains(&"keystone"))
    {
        return !disabled.contains(&"keystone");
    }
    // n-cpu covers the fake driver's numbered computes n-cpu-1..N.
    if let Some(rest) = name.strip_prefix("n-cpu-") {
        if !rest.is_empty() && list.contains(&"n-cpu") {
            return true;
        }
    }
    // swift listed covers every s-* service.
    if name.starts_with("s-") && list.contains(&"swift") {
        return true;
    }
    if let Some((group, prefixes)) = GROUPS.iter().find(|(g, _)| *g == name) {
        if disabled.contains(group) {
            return false;
        }
        return list
            .iter()
            .any(|s| prefixes.iter().any(|p| s.starts_with(p)));
    }
    false
}

/// `is_service_enabled a b ...`: true when any is enabled.
pub(crate) fn is_enabled(enabled: &str, disabled: &str, names: &[&str]) -> bool {
    names.iter().any(|n| is_enabled_one(enabled, disabled, n))
}

/// What `enable_service` / `disable_service` leave behind.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub enabled: String,
    pub disabled: String,
    pub warnings: Vec<String>,
}

/// `enable_service a b ...`: appends each name unless it is already enabled or was
/// disabled (a warning), then applies negations.
pub(crate) fn enable(enabled: &str, disabled: &str, names: &[&str]) -> Change {
    let mut list: Vec<String> = parse_list(enabled).into_iter().map(str::to_owned).collect();
    let disabled_list = parse_list(disabled);
    let mut warnings = Vec::new();
    for name in names.iter().flat_map(|n| parse_list(n)) {
        if disabled_list.contains(&name) {
            warnings.push(format!(
                "Attempt to enable_service {name} when it has been disabled"
            ));
            continue;
        }
        if !is_enabled_one(&list.join(","), disabled, name) {
            list.push(name.to_owned());
        }
    }
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    Change {
        enabled: disable_negated(&join(&refs)),
        disabled: disabled.to_owned(),
        warnings,
    }
}

/// `disable_service a b ...`: records each in DISABLED_SERVICES and removes the exact
/// entry (DevStack does not remove group members: `disable_service nova` keeps `n-api`).
pub(crate) fn disable(enabled: &str, disabled: &str, names: &[&str]) -> Change {
    let names: Vec<&str> = names.iter().flat_map(|n| parse_list(n)).collect();
    let list: Vec<&str> = parse_list(enabled)
        .into_iter()
        .filter(|s| !names.contains(s))
        .collect();
    let mut dis: Vec<&str> = parse_list(disabled);
    for n in &names {
        if !dis.contains(n) {
            dis.push(n);
        }
    }
    Change {
        enabled: join(&list),
        disabled: join(&dis),
        warnings: Vec::new(),
    }
}

/// Applies `-name` entries: each removes every `name` and itself.
pub(crate) fn disable_negated(enabled: &str) -> String {
    let list = parse_list(enabled);
    let negated: Vec<&str> = list.iter().filter_map(|s| s.strip_prefix('-')).collect();
    let kept: Vec<&str> = list
        .into_iter()
        .filter(|s| !s.starts_with('-') && !negated.contains(s))
        .collect();
    join(&kept)
}

/// The first entry of DISABLED_SERVICES found back in ENABLED_SERVICES (DevStack's
/// `verify_disabled_services` dies on it).
pub(crate) fn re_enabled_after_disable<'a>(enabled: &str, disabled: &'a str) -> Option<&'a str> {
    let list = parse_list(enabled);
    parse_list(disabled).into_iter().find(|d| list.contains(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_match_members() {
        let e = "key,n-api,g-api,q-svc,placement-api,mysql";
        for name in [
            "nova",
            "glance",
            "neutron",
            "placement",
            "keystone",
            "key",
            "mysql",
            "n-api",
        ] {
            assert!(is_enabled(e, "", &[name]), "{name}");
        }
        for name in ["cinder", "swift", "n-cpu", "rabbit", "n-ap"] {
            assert!(!is_enabled(e, "", &[name]), "{name}");
        }
        assert!(is_enabled(e, "", &["cinder", "mysql"]));
        assert!(is_enabled("n-cpu", "", &["n-cpu-1"]));
        assert!(is_enabled("swift", "", &["s-proxy"]));
    }

    #[test]
    fn disabled_group_name_stops_group_match_but_not_members() {
        let c = disable("n-api,nova", "", &["nova"]);
        assert_eq!(c.enabled, "n-api");
        assert!(!is_enabled(&c.enabled, &c.disabled, &["nova"]));
        assert!(is_enabled(&c.enabled, &c.disabled, &["n-api"]));
    }

    #[test]
    fn enable_appends_once_and_respects_disabled() {
        let c = enable("a", "", &["b", "a", "c,d"]);
        assert_eq!(c.enabled, "a,b,c,d");
        let c = enable("a", "b", &["b"]);
        assert_eq!(c.enabled, "a");
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn negation_removes_all_entries() {
        assert_eq!(disable_negated("a,-a,av2,b"), "av2,b");
        assert_eq!(enable("x,-y", "", &["y"]).enabled, "x");
    }

    #[test]
    fn verify_disabled() {
        assert_eq!(re_enabled_after_disable("a,b", "b"), Some("b"));
        assert_eq!(re_enabled_after_disable("a", "b"), None);
    }
}
