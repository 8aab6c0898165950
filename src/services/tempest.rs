//! tempest: OpenStack's own test suite, as DevStack's lib/tempest sets it up. Installed
//! in a venv of its own under `$TEMPEST_DIR` (its requirements under the project's
//! constraints), the workspace initialised there, and `tempest.conf` written at
//! `stack test-config` from what the stack knows (before the `test-config` hook, so a
//! plugin's handler and local.conf's `[[test-config|$TEMPEST_CONFIG]]` come after, as
//! in DevStack). `devstack test` runs it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::settings::Settings;
use crate::config::vars;
use crate::context::{Host, ServiceCtx};
use crate::ini::IniDoc;
use crate::openstack::accounts::ServiceAccount;
use crate::services::{
    Descriptor, Layer, Service, ServiceError, Stage, glance, horizon, neutron, nova, oslo,
    ovn_public,
};
use crate::system::netns;
use crate::system::python::{self, Req};

pub(crate) const NAME: &str = "tempest";
/// The ledger fact that says where the workspace is (for `devstack test`).
pub(crate) const WORKSPACE_FACT: &str = "tempest-workspace";
/// When tempest validates guests through floating IPs that only the public namespace
/// reaches: `NAMESPACE\tADDR ADDR...`, the namespace to run it in and the API
/// addresses to forward into it (`devstack test`).
pub(crate) const NETNS_FACT: &str = "tempest-netns";

pub(crate) struct Tempest;

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    stage: Stage::AfterApis,
    defaults: &[
        ("TEMPEST_DIR", "$DEST/tempest"),
        ("TEMPEST_CONFIG_DIR", "$TEMPEST_DIR/etc"),
        ("TEMPEST_CONFIG", "$TEMPEST_CONFIG_DIR/tempest.conf"),
        ("TEMPEST_STATE_PATH", "$DATA_DIR/tempest"),
        ("TEMPEST_PLUGINS", "0"),
        ("TEMPEST_FLAVOR_RAM", "192"),
        ("TEMPEST_FLAVOR_ALT_RAM", "256"),
        ("BUILD_TIMEOUT", "196"),
        ("TEMPEST_CONCURRENCY", "2"),
    ],
    // tempest's validation pings guests with the system's `ping`.
    packages: &["iputils-ping"],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

fn dir(s: &Settings) -> PathBuf {
    s.path("TEMPEST_DIR")
}

/// Tempest's own venv (its requirements must not move the services').
pub(crate) fn venv(s: &Settings) -> PathBuf {
    dir(s).join(".venv")
}

fn config(s: &Settings) -> PathBuf {
    s.path("TEMPEST_CONFIG")
}

/// Installs tempest (and `TEMPEST_PLUGINS`) into its venv and initialises the
/// workspace; both skipped when already done for the same requirements.
fn install(host: &mut Host) -> Result<(), ServiceError> {
    let mut s = host.settings.clone();
    let workspace = dir(&s);
    let mut reqs = vec![Req::Pypi("tempest".into())];
    let plugins = s.str("TEMPEST_PLUGINS").to_owned();
    for plugin in plugins.split_whitespace().filter(|p| *p != "0") {
        let path = Path::new(plugin);
        reqs.push(if path.is_dir() {
            Req::Editable {
                name: python::checkout_name(path),
                dir: path.to_path_buf(),
                extras: String::new(),
            }
        } else {
            Req::Pypi(plugin.to_owned())
        });
    }
    // The python installer works on DEVSTACK_VENV: lend it tempest's.
    s.set("DEVSTACK_VENV", venv(&s).display().to_string());
    let mut machine = crate::system::Machine {
        settings: &s,
        top_dir: &host.top_dir,
        spawner: &host.spawner,
        ledger: &mut host.ledger,
        apt_updated: &mut host.apt_updated,
    };
    python::install(&mut machine, &reqs, true).map_err(|e| match e {
        python::PythonError::Process { what, source } => ServiceError::Process {
            service: NAME.into(),
            what,
            source,
        },
        other => ServiceError::caused(NAME, "installing tempest", other),
    })?;
    // The workspace is the directory with the venv in it (as DevStack's checkout with
    // its .tox): `tempest init` refuses a directory that is not empty, so the
    // workspace's .stestr.conf is written here, as tempest init writes it.
    let package = fs_err::read_dir(venv(&s).join("lib"))
        .map_err(|source| ServiceError::Io {
            service: NAME.into(),
            path: venv(&s).join("lib"),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/tempest"))
        .find(|p| p.is_dir())
        .ok_or_else(|| ServiceError::failed(NAME, "tempest is not in its venv"))?;
    for sub in ["etc", "logs", "tempest_lock"] {
        oslo::make_dir(host, NAME, &workspace.join(sub))?;
    }
    let stestr = workspace.join(".stestr.conf");
    let text = format!(
        "[DEFAULT]\ntest_path={}\ntop_dir={}\ngroup_regex=([^\\.]*\\.)*\n",
        package.join("test_discover").display(),
        package.display()
    );
    fs_err::write(&stestr, text).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: stestr.clone(),
        source,
    })?;
    host.ledger.record_file(&stestr);
    Ok(())
}

/// What tempest.conf needs to know of the running cloud.
#[derive(Debug, Default)]
pub(crate) struct Cloud {
    pub(crate) image_ref: Option<String>,
    pub(crate) image_ref_alt: Option<String>,
    pub(crate) flavor_ref: Option<String>,
    pub(crate) flavor_ref_alt: Option<String>,
    pub(crate) public_network_id: Option<String>,
    /// The aliases neutron really serves: tempest's `api_extensions = all` would
    /// expect every extension it knows (metering, dvr) to be there.
    pub(crate) network_extensions: Vec<String>,
}

/// DevStack's m1.nano (42) and m1.micro (84), created unless there.
fn flavors(
    api: &oslo::Api,
    s: &Settings,
    disk_gb: u64,
    warnings: &mut Vec<String>,
) -> Result<(String, String), ServiceError> {
    let base = nova::CATALOG.url(s);
    let listed = api.get(&format!("{base}/flavors"))?;
    let ids: Vec<&str> = listed["flavors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["id"].as_str())
        .collect();
    for (id, name, ram) in [
        ("42", "m1.nano", s.number("TEMPEST_FLAVOR_RAM", 192)),
        ("84", "m1.micro", s.number("TEMPEST_FLAVOR_ALT_RAM", 256)),
    ] {
        if ids.contains(&id) {
            continue;
        }
        let body = serde_json::json!({"flavor": {
            "name": name, "id": id, "ram": ram, "disk": disk_gb, "vcpus": 1,
        }});
        api.post(&format!("{base}/flavors"), &body)?;
        // A guest's virtio-rng (the test image asks for one) needs the flavor's
        // consent. nova's path has an underscore (os-extra_specs).
        let spec = serde_json::json!({"extra_specs": {"hw_rng:allowed": "True"}});
        if let Err(e) = api.post(&format!("{base}/flavors/{id}/os-extra_specs"), &spec) {
            warnings.push(format!("tempest: flavor {name}: {e}"));
        }
    }
    Ok(("42".into(), "84".into()))
}

/// The images, flavors and public network tempest will use.
fn discover(host: &mut Host) -> Result<Cloud, ServiceError> {
    let s = host.settings.clone();
    let api = oslo::Api::new(host, NAME)?;
    let mut cloud = Cloud::default();
    let mut disk_gb = 1;
    if s.is_enabled(glance::DESCRIPTOR.enabled_by) {
        let images = api.get(&format!(
            "{}/v2/images?status=active",
            glance::CATALOG.url(&s)
        ))?;
        let usable: Vec<&serde_json::Value> = images["images"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|i| !matches!(i["disk_format"].as_str(), Some("aki" | "ari" | "iso")))
            .collect();
        let wanted = s.str("DEFAULT_IMAGE_NAME");
        let first = usable
            .iter()
            .find(|i| i["name"].as_str() == Some(wanted))
            .or_else(|| usable.first());
        if let Some(image) = first {
            cloud.image_ref = image["id"].as_str().map(str::to_owned);
            let size = image["size"].as_u64().unwrap_or(0);
            disk_gb = size.div_ceil(1 << 30).max(1);
            cloud.image_ref_alt = usable
                .iter()
                .find(|i| i["id"] != image["id"])
                .unwrap_or(image)["id"]
                .as_str()
                .map(str::to_owned);
        }
    }
    if s.is_enabled(&["n-api"]) {
        let mut warnings = Vec::new();
        let (a, b) = flavors(&api, &s, disk_gb, &mut warnings)?;
        for w in warnings {
            host.warn(&w);
        }
        cloud.flavor_ref = Some(a);
        cloud.flavor_ref_alt = Some(b);
    }
    if s.is_enabled(neutron::DESCRIPTOR.enabled_by) {
        let public = vars::PUBLIC_NETWORK_NAME.read(&s);
        let nets = api.get(&format!(
            "{}v2.0/networks?name={public}&router:external=true",
            neutron::CATALOG.url(&s).trim_end_matches('/').to_owned() + "/"
        ))?;
        cloud.public_network_id = nets["networks"][0]["id"].as_str().map(str::to_owned);
        let extensions = api.get(&format!(
            "{}/v2.0/extensions",
            neutron::CATALOG.url(&s).trim_end_matches('/')
        ))?;
        cloud.network_extensions = extensions["extensions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["alias"].as_str().map(str::to_owned))
            .collect();
    }
    Ok(cloud)
}

/// Whether tempest logs into its guests: they are real, and reachable through a
/// floating IP on the public network.
fn validates(s: &Settings, cloud: &Cloud) -> bool {
    cloud.public_network_id.is_some() && s.str("VIRT_DRIVER") != "fake"
}

/// Every address tempest talks to on the host: keystone's and each entry's of the
/// enabled services' `catalog` (one front proxy for most of them).
pub(crate) fn api_addresses(s: &Settings, catalog: &[ServiceAccount]) -> Vec<std::net::SocketAddr> {
    let mut urls: Vec<String> = catalog.iter().map(|account| account.url(s)).collect();
    urls.push(s.str("KEYSTONE_SERVICE_URI").to_owned());
    let mut addrs: Vec<std::net::SocketAddr> =
        urls.iter().filter_map(|u| netns::url_address(u)).collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs
}

/// tempest.conf as DevStack's configure_tempest writes it, for this stack.
pub(crate) fn write_conf(doc: &mut IniDoc, s: &Settings, cloud: &Cloud) {
    let on = |b: bool| if b { "True" } else { "False" };
    let state = s.path("TEMPEST_STATE_PATH");
    doc.set("DEFAULT", "use_stderr", "False");
    doc.set("DEFAULT", "log_file", "tempest.log");
    doc.set("DEFAULT", "debug", "True");
    doc.set(
        "oslo_concurrency",
        "lock_path",
        &state.display().to_string(),
    );
    doc.set("identity", "uri_v3", s.str("KEYSTONE_SERVICE_URI_V3"));
    doc.set("identity", "auth_version", "v3");
    doc.set("identity", "region", s.get_or("REGION_NAME", "RegionOne"));
    doc.set("auth", "admin_username", "admin");
    doc.set("auth", "admin_password", s.str("ADMIN_PASSWORD"));
    doc.set("auth", "admin_project_name", "admin");
    doc.set(
        "auth",
        "admin_domain_name",
        s.get_or("ADMIN_DOMAIN_NAME", "Default"),
    );
    doc.set("auth", "use_dynamic_credentials", "True");
    // Without a public network there are no project networks to isolate tests in.
    let networking = cloud.public_network_id.is_some();
    doc.set("auth", "create_isolated_networks", on(networking));
    for flag in ["project_tags", "application_credentials", "access_rules"] {
        doc.set("identity-feature-enabled", flag, "True");
    }
    let build_timeout = s.get_or("BUILD_TIMEOUT", "196");
    doc.set("compute", "build_timeout", build_timeout);
    for (key, value) in [
        ("image_ref", &cloud.image_ref),
        ("image_ref_alt", &cloud.image_ref_alt),
        ("flavor_ref", &cloud.flavor_ref),
        ("flavor_ref_alt", &cloud.flavor_ref_alt),
    ] {
        if let Some(v) = value {
            doc.set("compute", key, v);
        }
    }
    doc.set("compute", "max_microversion", "latest");
    let fake = s.str("VIRT_DRIVER") == "fake";
    doc.set("compute-feature-enabled", "resize", "True");
    doc.set("compute-feature-enabled", "change_password", "False");
    doc.set("compute-feature-enabled", "live_migration", "False");
    doc.set("compute-feature-enabled", "personality", "False");
    // nova's fake driver keeps no disks: nothing to snapshot, rescue or attach.
    doc.set("compute-feature-enabled", "snapshot", on(!fake));
    doc.set("compute-feature-enabled", "console_output", on(!fake));
    doc.set(
        "compute-feature-enabled",
        "nova_policy_roles",
        "admin,manager,member,reader,service",
    );
    doc.set("validation", "run_validation", on(validates(s, cloud)));
    doc.set("validation", "connect_method", "floating");
    doc.set("validation", "ip_version_for_ssh", "4");
    doc.set("validation", "ssh_timeout", build_timeout);
    doc.set("validation", "image_ssh_user", "cirros");
    doc.set("validation", "image_alt_ssh_user", "cirros");
    doc.set(
        "validation",
        "network_for_ssh",
        vars::PRIVATE_NETWORK_NAME.read(s),
    );
    let fixed = s.get_or("FIXED_RANGE", "10.0.0.0/26");
    doc.set("network", "project_network_cidr", fixed);
    doc.set("network", "project_networks_reachable", "false");
    doc.set("network", "default_network", fixed);
    doc.set("network", "public_router_id", "");
    if let Some(id) = &cloud.public_network_id {
        doc.set("network", "public_network_id", id);
    }
    doc.set("network-feature-enabled", "ipv6", "True");
    // DevStack's NETWORK_API_EXTENSIONS, else what neutron serves.
    let extensions = match s.get("NETWORK_API_EXTENSIONS") {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ if cloud.network_extensions.is_empty() => "all".to_owned(),
        _ => cloud.network_extensions.join(","),
    };
    doc.set("network-feature-enabled", "api_extensions", &extensions);
    doc.set("volume", "build_timeout", build_timeout);
    doc.set("volume", "max_microversion", "latest");
    doc.set(
        "volume-feature-enabled",
        "backup",
        on(s.is_enabled(&["c-bak"])),
    );
    doc.set("volume-feature-enabled", "api_extensions", "all");
    volume_backend_features(doc, s);
    doc.set("placement", "max_microversion", "latest");
    if horizon::DESCRIPTOR.enabled(s) {
        doc.set("dashboard", "dashboard_url", &horizon::url(s));
    }
    doc.set("image-feature-enabled", "import_image", "False");
    for (key, names) in [
        ("keystone", &["key"][..]),
        ("glance", &["g-api", "glance"][..]),
        ("nova", &["n-api"][..]),
        ("neutron", &["q-svc", "neutron-api"][..]),
        ("cinder", &["c-api"][..]),
        ("swift", &["s-proxy", "swift"][..]),
        ("horizon", &["horizon"][..]),
        ("placement", &["placement-api"][..]),
    ] {
        doc.set("service_available", key, on(s.is_enabled(names)));
    }
}

/// What DevStack's configure_tempest sets from `CINDER_ENABLED_BACKENDS`: the LVM
/// driver manages and reverts volumes (and extends attached ones under libvirt);
/// two or more backends are tested as such.
fn volume_backend_features(doc: &mut IniDoc, s: &Settings) {
    let backends = crate::services::cinder::backends(s);
    if backends.iter().any(|b| b.kind == "lvm") {
        for feature in ["manage_snapshot", "manage_volume", "volume_revert"] {
            doc.set("volume-feature-enabled", feature, "True");
        }
        if s.str("VIRT_DRIVER") == "libvirt" {
            doc.set("volume-feature-enabled", "extend_attached_volume", "True");
        }
    }
    if backends.len() > 1 {
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        doc.set("volume", "backend_names", &names.join(","));
        doc.set("volume-feature-enabled", "multi_backend", "True");
    }
}

impl Service for Tempest {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn install(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        install(cx.host)
    }
    fn test_config(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let cloud = discover(cx.host)?;
        if cloud.image_ref.is_none() && s.is_enabled(&["g-api"]) {
            cx.host.warn(
                "tempest: no image in glance to test with (DevStack stops here: \
                 'Found no valid images to use!'); tests that boot servers will fail",
            );
        }
        let path = config(&s);
        oslo::make_dir(cx.host, NAME, &s.path("TEMPEST_STATE_PATH"))?;
        // Rebuilt from scratch at every stack, as DevStack's configure_tempest does.
        let _ = fs_err::remove_file(&path);
        oslo::write_conf(cx.host, NAME, &path, |doc| write_conf(doc, &s, &cloud))?;
        // It holds the admin password.
        fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|source| ServiceError::Io {
                service: NAME.into(),
                path: path.clone(),
                source,
            })?;
        let mut text = dir(&s).display().to_string();
        let _ = write!(text, "\t{}", path.display());
        cx.host.ledger.set_fact(WORKSPACE_FACT, text);
        // The floating IPs answer only inside the public namespace (unless the user
        // put the gateway in the host, as DevStack does): tempest runs there.
        if validates(&s, &cloud) && !ovn_public::in_host(cx.host) {
            let addrs: Vec<String> = api_addresses(&s, &cx.catalog())
                .iter()
                .map(ToString::to_string)
                .collect();
            let ns = ovn_public::namespace(cx.host);
            cx.host
                .ledger
                .set_fact(NETNS_FACT, format!("{ns}\t{}", addrs.join(" ")));
        } else {
            cx.host.ledger.forget_fact(NETNS_FACT);
        }
        cx.host
            .note(&format!("tempest: {} written", path.display()));
        Ok(())
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let _ = fs_err::remove_file(config(&s));
        let _ = fs_err::remove_dir_all(s.path("TEMPEST_STATE_PATH"));
        cx.host.ledger.forget_fact(WORKSPACE_FACT);
        cx.host.ledger.forget_fact(NETNS_FACT);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(pairs: &[(&str, &str)]) -> String {
        let mut doc = IniDoc::default();
        volume_backend_features(&mut doc, &Settings::from_pairs(pairs));
        doc.render()
    }

    #[test]
    fn volume_features_follow_the_backends_as_devstack_sets_them() {
        assert_eq!(features(&[("CINDER_ENABLED_BACKENDS", "nfs:nfs")]), "");
        let lvm = features(&[
            ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1"),
            ("VIRT_DRIVER", "libvirt"),
        ]);
        assert!(lvm.contains("volume_revert = True"), "{lvm}");
        assert!(lvm.contains("manage_volume = True"), "{lvm}");
        assert!(lvm.contains("extend_attached_volume = True"), "{lvm}");
        assert!(!lvm.contains("multi_backend"), "{lvm}");
        let two = features(&[
            ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1,nfs:nfs-1"),
            ("VIRT_DRIVER", "fake"),
        ]);
        assert!(two.contains("backend_names = lvmdriver-1,nfs-1"), "{two}");
        assert!(two.contains("multi_backend = True"), "{two}");
        assert!(!two.contains("extend_attached_volume"), "{two}");
    }
}
