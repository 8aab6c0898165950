//! The files the services generate, as snapshots: each service driven through its
//! `Service` steps with a fake context (a host on a temporary tree, no pipeline),
//! so a change to any generated file shows in review as a snapshot diff.

use std::path::Path;

use crate::config::settings::Settings;
use crate::context::{Host, NoPipeline, ServiceCtx};
use crate::services::{
    Registry, Service, cinder, cinder_backend, credentials, glance, keystone, neutron, nova,
    placement,
};

/// The settings a default stack has after its defaults are applied, with every
/// directory under `root` and fixed passwords.
fn settings(root: &Path) -> Settings {
    let r = root.display();
    let pairs = [
        (
            "ENABLED_SERVICES",
            crate::config::settings::DEFAULT_SERVICES.to_owned(),
        ),
        ("DEST", format!("{r}/opt/stack")),
        ("DATA_DIR", format!("{r}/opt/stack/data")),
        ("LOGDIR", format!("{r}/opt/stack/logs")),
        ("DEVSTACK_VENV", format!("{r}/opt/stack/venv")),
        ("HOST_IP", "127.0.0.1".to_owned()),
        ("SERVICE_HOST", "127.0.0.1".to_owned()),
        ("SERVICE_LISTEN_ADDRESS", "127.0.0.1".to_owned()),
        ("SERVICE_PROTOCOL", "http".to_owned()),
        ("DATABASE_TYPE", "mysql".to_owned()),
        ("DATABASE_HOST", "127.0.0.1".to_owned()),
        ("DATABASE_USER", "devstack".to_owned()),
        ("DATABASE_PASSWORD", "db-secret".to_owned()),
        ("RABBIT_HOST", "127.0.0.1".to_owned()),
        ("RABBIT_USERID", "stackrabbit".to_owned()),
        ("RABBIT_PASSWORD", "rabbit-secret".to_owned()),
        ("ADMIN_PASSWORD", "admin-secret".to_owned()),
        ("SERVICE_PASSWORD", "service-secret".to_owned()),
        ("MEMCACHE_SERVERS", "127.0.0.1:11211".to_owned()),
        ("REGION_NAME", "RegionOne".to_owned()),
        ("API_WORKERS", "1".to_owned()),
        ("KEYSTONE_SERVICE_URI", "http://127.0.0.1:5000".to_owned()),
        ("KEYSTONE_SERVICE_PORT", "5000".to_owned()),
        ("KEYSTONE_CONF_DIR", format!("{r}/etc/keystone")),
        ("KEYSTONE_CONF", format!("{r}/etc/keystone/keystone.conf")),
        ("GLANCE_CONF_DIR", format!("{r}/etc/glance")),
        ("GLANCE_API_CONF", format!("{r}/etc/glance/glance-api.conf")),
        ("PLACEMENT_CONF_DIR", format!("{r}/etc/placement")),
        (
            "PLACEMENT_CONF",
            format!("{r}/etc/placement/placement.conf"),
        ),
        ("NEUTRON_CONF_DIR", format!("{r}/etc/neutron")),
        ("NEUTRON_CONF", format!("{r}/etc/neutron/neutron.conf")),
        ("NOVA_CONF_DIR", format!("{r}/etc/nova")),
        ("NOVA_CONF", format!("{r}/etc/nova/nova.conf")),
        ("NOVA_CPU_CONF", format!("{r}/etc/nova/nova-cpu.conf")),
        ("CINDER_CONF_DIR", format!("{r}/etc/cinder")),
        ("CINDER_CONF", format!("{r}/etc/cinder/cinder.conf")),
        ("CINDER_STATE_PATH", format!("{r}/opt/stack/data/cinder")),
        ("CINDER_ENABLED_BACKENDS", "nfs:nfs".to_owned()),
        ("ETCD_PORT", "2379".to_owned()),
        (
            "NOVNCPROXY_URL",
            "http://127.0.0.1:6080/vnc_lite.html".to_owned(),
        ),
        ("VNCSERVER_LISTEN", "127.0.0.1".to_owned()),
        ("VNCSERVER_PROXYCLIENT_ADDRESS", "127.0.0.1".to_owned()),
        (
            "SUDO_SECURE_PATH_FILE",
            format!("{r}/etc/sudoers.d/zz-secure-path"),
        ),
    ];
    Settings::new(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A host on a temporary tree, with the files the venv's wheels ship.
pub(super) fn host() -> (tempfile::TempDir, Host) {
    let (dir, mut host) = crate::context::test_host(Settings::default());
    host.settings = settings(dir.path());
    let etc = dir.path().join("opt/stack/venv/etc");
    for file in [
        "nova/api-paste.ini",
        "glance/glance-api-paste.ini",
        "neutron/api-paste.ini",
        "cinder/api-paste.ini",
        "cinder/resource_filters.json",
        "cinder/rootwrap.d/volume.filters",
    ] {
        let path = etc.join(file);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, "[pipeline:main]\n").unwrap();
    }
    // This project's machine, as cinder's storage probe found it (kept for the boot,
    // so no test probes the real one).
    seed_storage_probe(
        &mut host,
        &cinder_backend::StorageHost {
            device_mapper: Err("no device-mapper (/dev/mapper/control is missing)".into()),
            loop_device: Ok("a file attached as /dev/loop0 and detached".into()),
            lio: Err("no LIO".into()),
            tgt: Ok("package tgt can be installed".into()),
            thin: Err("no dm-thin-pool in the kernel".into()),
        },
    );
    (dir, host)
}

fn seed_storage_probe(host: &mut Host, storage: &cinder_backend::StorageHost) {
    host.ledger.set_fact(
        cinder_backend::PROBE_FACT,
        cinder_backend::cache_entry(&cinder_backend::probe_key(), storage),
    );
}

/// A generated file with the temporary root and the machine's uwsgi python plugin
/// name taken out, so the snapshot is the same on every machine.
pub(super) fn read(root: &Path, path: &str) -> String {
    let text = fs_err::read_to_string(root.join(path)).unwrap();
    let plugin = format!("plugin = {}\n", crate::services::uwsgi::python_plugin());
    text.replace(&root.display().to_string(), "/ROOT")
        .replace(&plugin, "plugin = python3XY\n")
}

fn configure(host: &mut Host, service: &dyn Service) {
    let mut ops = NoPipeline;
    let mut cx = ServiceCtx::new(host, &mut ops);
    service.configure(&mut cx).unwrap();
}

#[test]
fn keystone_files() {
    let (dir, mut host) = host();
    configure(&mut host, &keystone::Keystone);
    insta::assert_snapshot!(
        "keystone.conf",
        read(dir.path(), "etc/keystone/keystone.conf")
    );
    insta::assert_snapshot!(
        "keystone-uwsgi-public.ini",
        read(dir.path(), "etc/keystone/keystone-uwsgi-public.ini")
    );
}

#[test]
fn glance_placement_neutron_files() {
    let (dir, mut host) = host();
    configure(&mut host, &glance::Glance);
    configure(&mut host, &placement::Placement);
    configure(&mut host, &neutron::Neutron);
    insta::assert_snapshot!(
        "glance-api.conf",
        read(dir.path(), "etc/glance/glance-api.conf")
    );
    insta::assert_snapshot!(
        "placement.conf",
        read(dir.path(), "etc/placement/placement.conf")
    );
    insta::assert_snapshot!("neutron.conf", read(dir.path(), "etc/neutron/neutron.conf"));
    insta::assert_snapshot!(
        "ml2_conf.ini",
        read(dir.path(), "etc/neutron/plugins/ml2/ml2_conf.ini")
    );
    insta::assert_snapshot!(
        "neutron-api-uwsgi.ini",
        read(dir.path(), "etc/neutron/neutron-api-uwsgi.ini")
    );
    // q-ovn-agent (the default set's): the OVN agent with its metadata extension.
    insta::assert_snapshot!(
        "ovn_agent.ini",
        read(dir.path(), "etc/neutron/plugins/ml2/ovn_agent.ini")
    );
}

#[test]
fn nova_files() {
    let (dir, mut host) = host();
    configure(&mut host, &nova::Nova);
    {
        let mut ops = NoPipeline;
        let mut cx = ServiceCtx::new(&mut host, &mut ops);
        nova::Nova.init(&mut cx).unwrap();
    }
    insta::assert_snapshot!("nova.conf", read(dir.path(), "etc/nova/nova.conf"));
    insta::assert_snapshot!("nova-cpu.conf", read(dir.path(), "etc/nova/nova-cpu.conf"));
    insta::assert_snapshot!(
        "nova-api-uwsgi.ini",
        read(dir.path(), "etc/nova/nova-api-uwsgi.ini")
    );
}

#[test]
fn cinder_files() {
    let (dir, mut host) = host();
    configure(&mut host, &cinder::Cinder);
    insta::assert_snapshot!("cinder.conf", read(dir.path(), "etc/cinder/cinder.conf"));
    // What the terminal and `devstack status` say.
    assert_eq!(
        host.ledger.choices(),
        [(
            "cinder".to_owned(),
            "backends nfs:nfs (NFS on a local export: LVM cannot work here: no \
             device-mapper (/dev/mapper/control is missing))"
                .to_owned()
        )]
    );
    insta::assert_snapshot!("nfs_shares", read(dir.path(), "etc/cinder/nfs_shares"));
    insta::assert_snapshot!(
        "cinder-api-uwsgi.ini",
        read(dir.path(), "etc/cinder/cinder-api-uwsgi.ini")
    );
    insta::assert_snapshot!(
        "cinder-api-site.conf",
        read(
            dir.path(),
            "opt/stack/data/apache/sites-available/cinder-api.conf"
        )
    );
    insta::assert_snapshot!(
        "cinder-rootwrap.conf",
        read(dir.path(), "etc/cinder/rootwrap.conf")
    );
    insta::assert_snapshot!(
        "zz-secure-path",
        read(dir.path(), "etc/sudoers.d/zz-secure-path")
    );
}

/// The LVM backend where the host can hold it (with tgt: this host has no LIO): the
/// `[lvmdriver-1]` section and tgt's include. (This project's machines have no
/// device-mapper: the LVM path is tested here, not on a real cloud.)
#[test]
fn cinder_lvm_files() {
    let (dir, mut host) = host();
    seed_storage_probe(
        &mut host,
        &cinder_backend::StorageHost {
            device_mapper: Ok("/dev/mapper/control (Driver version: 4.48.0)".into()),
            loop_device: Ok("a file attached as /dev/loop0 and detached".into()),
            lio: Err("no LIO".into()),
            tgt: Ok("/usr/sbin/tgtd is installed".into()),
            thin: Ok("dm_thin_pool is loaded".into()),
        },
    );
    let root = dir.path().display().to_string();
    let s = &mut host.settings;
    // What the lib/ defaults hold on such a host.
    s.set("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1");
    s.set("CINDER_TARGET_HELPER", "tgtadm");
    s.set("CINDER_LVM_TYPE", "auto");
    s.set(
        "CINDER_TGT_CONF",
        format!("{root}/etc/tgt/conf.d/stack.conf"),
    );
    configure(&mut host, &cinder::Cinder);
    insta::assert_snapshot!(
        "cinder-lvm.conf",
        read(dir.path(), "etc/cinder/cinder.conf")
    );
    insta::assert_snapshot!(
        "tgt-stack.conf",
        read(dir.path(), "etc/tgt/conf.d/stack.conf")
    );
    assert!(!dir.path().join("etc/cinder/nfs_shares").exists());
    assert_eq!(
        host.ledger.choices(),
        [(
            "cinder".to_owned(),
            "backends lvm:lvmdriver-1 (LVM, iSCSI target tgtadm: the host has \
             device-mapper, loop devices and tgt)"
                .to_owned()
        )]
    );
}

#[test]
fn tempest_conf() {
    let (dir, mut host) = host();
    let s = &mut host.settings;
    s.set("KEYSTONE_SERVICE_URI_V3", "http://127.0.0.1:5000/v3");
    s.set("TEMPEST_STATE_PATH", "/ROOT/opt/stack/data/tempest");
    s.set("VIRT_DRIVER", "libvirt");
    let cloud = crate::services::tempest::Cloud {
        image_ref: Some("image-1".into()),
        image_ref_alt: Some("image-1".into()),
        flavor_ref: Some("42".into()),
        flavor_ref_alt: Some("84".into()),
        public_network_id: Some("net-public".into()),
        network_extensions: vec!["router".into(), "security-group".into()],
    };
    let mut doc = crate::ini::IniDoc::default();
    crate::services::tempest::write_conf(&mut doc, &host.settings, &cloud);
    let text = doc
        .render()
        .replace(&dir.path().display().to_string(), "/ROOT");
    insta::assert_snapshot!("tempest.conf", text);
}

#[test]
fn openrc_and_clouds_yaml() {
    let (dir, host) = host();
    let root = dir.path().display().to_string();
    insta::assert_snapshot!(
        "openrc",
        credentials::openrc_text(&host.settings).replace(&root, "/ROOT")
    );
    insta::assert_snapshot!(
        "clouds.yaml",
        credentials::clouds_yaml(&host.settings).replace(&root, "/ROOT")
    );
}

#[test]
fn every_config_file_is_recorded_for_clean_and_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, mut host) = host();
    for svc in Registry::builtin().enabled(&host.settings.clone()) {
        // horizon's configure reads the installed dashboard: it has its own snapshots.
        if svc.layer() == crate::services::Layer::OpenStack && svc.name() != "horizon" {
            configure(&mut host, svc);
        }
    }
    let files = host.ledger.files();
    assert!(files.len() >= 10, "{files:?}");
    let secrets = [
        "db-secret",
        "rabbit-secret",
        "service-secret",
        "admin-secret",
    ];
    let mut private = 0;
    for f in &files {
        assert!(
            f.starts_with(dir.path()),
            "{} is outside the tree",
            f.display()
        );
        let text = fs_err::read_to_string(f).unwrap_or_default();
        if secrets.iter().any(|p| text.contains(p)) {
            let mode = fs_err::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode & 0o007,
                0,
                "{} holds a password: mode {mode:o}",
                f.display()
            );
            private += 1;
        }
    }
    assert!(
        private >= 5,
        "the services' config files hold their passwords"
    );
}

/// tempest inside the public namespace talks to every API of the default cloud
/// through these addresses (keystone's own URI included), each forwarded once.
#[test]
fn tempest_reaches_every_api_address_of_the_default_cloud() {
    let (_dir, host) = host();
    let catalog = Registry::builtin().catalog(&host.settings);
    let addrs: Vec<String> = crate::services::tempest::api_addresses(&host.settings, &catalog)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(addrs.contains(&"127.0.0.1:80".to_owned()), "{addrs:?}");
    assert!(addrs.contains(&"127.0.0.1:5000".to_owned()), "{addrs:?}");
    let mut unique = addrs.clone();
    unique.dedup();
    assert_eq!(unique, addrs);
}
