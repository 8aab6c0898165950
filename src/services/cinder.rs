//! cinder (`c-api`, `c-sch`, `c-vol`): block storage. `c-api` is `cinder.wsgi.api`
//! under uWSGI behind the front proxy at `/volume`, registered as DevStack registers
//! it (`block-storage` and `volumev3` at `/volume/v3`); the scheduler and the volume
//! service are supervised processes.
//!
//! The backend is chosen by what the host can do, as `CINDER_ENABLED_BACKENDS` says
//! (its default is probed: DevStack's `lvm:lvmdriver-1` where the kernel has
//! device-mapper and an iSCSI target, `nfs:nfs` otherwise). The NFS backend needs no
//! NFS server and no kernel client: the export is a directory under `$DATA_DIR`,
//! bind-mounted where os-brick computes its mount point
//! (`nfs_mount_point_base/<md5 of the share>`), which os-brick then finds mounted
//! and uses as it is. Volumes are real sparse files; snapshots work.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::openstack::accounts::ServiceAccount;
use crate::services::uwsgi::{self, Route, WsgiApp};
use crate::services::{Descriptor, Layer, Service, ServiceError, daemon, database, oslo};
use crate::system::process::Cmd;
use crate::system::python::Project;

pub(crate) const NAME: &str = "cinder";
const PREFIX: &str = "CINDER";
const PORT: u16 = 8776;
/// The processes, in start order.
pub(crate) const PROCESSES: &[&str] = &["c-api", "c-sch", "c-vol"];

pub(crate) struct Cinder;

/// DevStack's probe for its LVM default: device-mapper in the kernel (logical volumes)
/// and an iSCSI target (LIO's configfs) or initiator. Rendered into the defaults, so
/// plugins read the chosen value as DevStack's `CINDER_ENABLED_BACKENDS`.
const BACKENDS_DEFAULT: &str = "$(grep -qw device-mapper /proc/devices 2>/dev/null && \
     { [[ -d /sys/kernel/config/target ]] || [[ -d /sys/module/iscsi_tcp ]]; } && \
     echo lvm:lvmdriver-1 || echo nfs:nfs)";

/// DevStack's `write_uwsgi_config "$CINDER_UWSGI_CONF" "$CINDER_UWSGI" "/volume" ""
/// "cinder-api"`: the uwsgi protocol on a socket, the proxy routing `/volume` to it.
const ROUTE: Route = Route {
    site: "cinder-api",
    path: "/volume",
    socket: true,
};

/// `$CINDER_SERVICE_PROTOCOL://$CINDER_SERVICE_HOST/volume/v3`, as DevStack registers
/// it (without a project id: the v3 API takes the project from the token).
pub(crate) const BLOCK_STORAGE: ServiceAccount = ServiceAccount {
    name: NAME,
    service_type: "block-storage",
    description: "Cinder Volume Service",
    extra_role: Some("admin"),
    prefix: PREFIX,
    default_port: PORT,
    path: "/v3",
    route: ROUTE.path,
};

/// The same API under the type older clients (and nova's default catalog_info) ask
/// for. DevStack names this service `cinderv3`; here both are `cinder`, so one
/// service user serves both.
pub(crate) const VOLUMEV3: ServiceAccount = ServiceAccount {
    service_type: "volumev3",
    ..BLOCK_STORAGE
};

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: PROCESSES,
    after: &["keystone", "glance"],
    catalog: &[BLOCK_STORAGE, VOLUMEV3],
    python: &[Project {
        dist: "cinder",
        repo_var: "CINDER_REPO",
    }],
    defaults: &[
        ("CINDER_CONF_DIR", "/etc/cinder"),
        ("CINDER_CONF", "$CINDER_CONF_DIR/cinder.conf"),
        ("CINDER_STATE_PATH", "$DATA_DIR/cinder"),
        ("CINDER_ENABLED_BACKENDS", BACKENDS_DEFAULT),
        ("CINDER_VOLUME_CLEAR", "zero"),
    ],
    databases: &["cinder"],
    processes: PROCESSES,
    ..Descriptor::named(NAME, Layer::OpenStack)
};

fn conf_dir(s: &Settings) -> PathBuf {
    s.path("CINDER_CONF_DIR")
}

fn conf(s: &Settings) -> PathBuf {
    s.path("CINDER_CONF")
}

fn state_dir(s: &Settings) -> PathBuf {
    let p = s.path("CINDER_STATE_PATH");
    if p.as_os_str().is_empty() {
        s.path("DATA_DIR").join("cinder")
    } else {
        p
    }
}

fn uwsgi_ini(s: &Settings) -> PathBuf {
    conf_dir(s).join("cinder-api-uwsgi.ini")
}

/// One enabled backend: `TYPE:NAME` of `CINDER_ENABLED_BACKENDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// Parses `CINDER_ENABLED_BACKENDS` (`lvm:lvmdriver-1,nfs:nfs`).
pub(crate) fn backends(s: &Settings) -> Vec<Backend> {
    s.str("CINDER_ENABLED_BACKENDS")
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| match b.split_once(':') {
            Some((kind, name)) => Backend {
                kind: kind.to_owned(),
                name: name.to_owned(),
            },
            None => Backend {
                kind: b.to_owned(),
                name: b.to_owned(),
            },
        })
        .collect()
}

/// The NFS export (a directory of ours) and the share string cinder is given.
fn nfs_export(s: &Settings) -> PathBuf {
    state_dir(s).join("nfs-export")
}

fn nfs_share(s: &Settings) -> String {
    format!(
        "{}:{}",
        s.get_or("HOST_IP", "127.0.0.1"),
        nfs_export(s).display()
    )
}

fn nfs_mount_base(s: &Settings) -> PathBuf {
    state_dir(s).join("mnt")
}

/// Where os-brick looks for the share: `<base>/<md5 of the share string>`.
pub(crate) fn nfs_mount_point(s: &Settings) -> PathBuf {
    let digest = md5_hex(nfs_share(s).as_bytes());
    nfs_mount_base(s).join(digest)
}

/// MD5 as os-brick's `_get_hash_str` computes it (hex of the UTF-8 share string).
fn md5_hex(bytes: &[u8]) -> String {
    crate::state::hex(&md5::Md5::digest(bytes))
}

fn write_config(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let dir = conf_dir(&s);
    let state = state_dir(&s);
    oslo::make_dir(host, NAME, &state.join("lock"))?;
    let enabled = backends(&s);
    for b in &enabled {
        if b.kind != "nfs" {
            return Err(ServiceError::failed(
                NAME,
                format!(
                    "CINDER_ENABLED_BACKENDS={}: only the nfs backend is built; this host {} \
                     (set CINDER_ENABLED_BACKENDS=nfs:nfs)",
                    s.str("CINDER_ENABLED_BACKENDS"),
                    if lvm_possible() {
                        "has device-mapper and an iSCSI target, but the LVM backend is not built yet"
                    } else {
                        "has no device-mapper or no iSCSI target, so LVM cannot work here"
                    }
                ),
            ));
        }
    }
    let shares = dir.join("nfs_shares");
    let rootwrap = oslo::configure_rootwrap(host, NAME, "cinder", &dir)?;
    oslo::write_conf(host, NAME, &conf(&s), |doc| {
        oslo::common_defaults(doc, &s);
        doc.set(
            "DEFAULT",
            "transport_url",
            &crate::services::rabbit::transport_url(&s),
        );
        doc.set("DEFAULT", "my_ip", s.get_or("HOST_IP", "127.0.0.1"));
        doc.set("DEFAULT", "state_path", &state.display().to_string());
        doc.set("DEFAULT", "auth_strategy", "keystone");
        doc.set(
            "DEFAULT",
            "rootwrap_config",
            &rootwrap.display().to_string(),
        );
        doc.set(
            "DEFAULT",
            "api_paste_config",
            &dir.join("api-paste.ini").display().to_string(),
        );
        doc.set(
            "DEFAULT",
            "glance_api_servers",
            &crate::services::glance::CATALOG.url(&s),
        );
        doc.set(
            "DEFAULT",
            "osapi_volume_workers",
            s.get_or("API_WORKERS", "1"),
        );
        let names: Vec<&str> = enabled.iter().map(|b| b.name.as_str()).collect();
        doc.set("DEFAULT", "enabled_backends", &names.join(","));
        if let Some(first) = names.first() {
            doc.set("DEFAULT", "default_volume_type", first);
        }
        doc.set(
            "DEFAULT",
            "volume_clear",
            s.get_or("CINDER_VOLUME_CLEAR", "zero"),
        );
        doc.set(
            "database",
            "connection",
            &database::connection_url(&s, "cinder"),
        );
        doc.set(
            "oslo_concurrency",
            "lock_path",
            &state.join("lock").display().to_string(),
        );
        oslo::authtoken(doc, &s, NAME);
        // Assisted snapshots and volume extends call nova as the service user.
        oslo::keystoneauth(doc, &s, "nova", "nova");
        for b in &enabled {
            let sec = b.name.as_str();
            doc.set(sec, "volume_driver", "cinder.volume.drivers.nfs.NfsDriver");
            doc.set(sec, "volume_backend_name", sec);
            doc.set(sec, "nfs_shares_config", &shares.display().to_string());
            doc.set(
                sec,
                "nfs_mount_point_base",
                &nfs_mount_base(&s).display().to_string(),
            );
            doc.set(sec, "nfs_snapshot_support", "True");
            doc.set(sec, "nfs_sparsed_volumes", "True");
            // As root, with files we own: no secure-file checks to fail.
            doc.set(sec, "nas_secure_file_operations", "False");
            doc.set(sec, "nas_secure_file_permissions", "False");
        }
    })?;
    if enabled.iter().any(|b| b.kind == "nfs") {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServiceError::Io {
                service: NAME.into(),
                path,
                source,
            }
        };
        fs_err::write(&shares, format!("{}\n", nfs_share(&s))).map_err(io(&shares))?;
        host.ledger.record_file(&shares);
        oslo::make_dir(host, NAME, &nfs_export(&s))?;
    }
    oslo::copy_file(
        host,
        NAME,
        &oslo::venv_etc(host, "cinder/api-paste.ini"),
        &dir.join("api-paste.ini"),
    )?;
    let app = WsgiApp {
        wsgi: "cinder.wsgi.api:application".into(),
        http: uwsgi::bind(&s, Some(ROUTE), PREFIX, PORT),
        venv: crate::system::python::venv_dir(&s),
        env: Vec::new(),
        processes: s.number("API_WORKERS", 1),
        name: "cinder-api".into(),
    };
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)?;
    uwsgi::publish(host, NAME, ROUTE, PREFIX, PORT)
}

/// Can this host hold DevStack's LVM backend (device-mapper and an iSCSI target)?
fn lvm_possible() -> bool {
    fs_err::read_to_string("/proc/devices").is_ok_and(|d| {
        d.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("device-mapper"))
    }) && (Path::new("/sys/kernel/config/target").is_dir()
        || Path::new("/sys/module/iscsi_tcp").is_dir())
}

/// Is `dir` a mount point (in /proc/mounts)?
fn mounted(dir: &Path) -> bool {
    let want = dir.display().to_string();
    fs_err::read_to_string("/proc/mounts").is_ok_and(|m| {
        m.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(&want))
    })
}

/// The share "mounted" where os-brick looks: a bind mount of the export.
fn mount_share(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let point = nfs_mount_point(&s);
    oslo::make_dir(host, NAME, &point)?;
    if mounted(&point) {
        return Ok(());
    }
    host.cmd("mount")
        .arg("--bind")
        .arg(nfs_export(&s))
        .arg(&point)
        .timeout(Duration::from_secs(30))
        .run()
        .map_err(|source| ServiceError::Process {
            service: NAME.into(),
            what: format!("bind-mounting the NFS export on {}", point.display()),
            source,
        })?;
    host.note(&format!(
        "cinder: NFS share {} bound at {}",
        nfs_share(&s),
        point.display()
    ));
    Ok(())
}

fn unmount_share(host: &Host) {
    let point = nfs_mount_point(&host.settings);
    if mounted(&point) {
        let _ = host
            .cmd("umount")
            .arg(&point)
            .timeout(Duration::from_secs(30))
            .run();
    }
}

/// The volume types of the enabled backends (`volume_backend_name` = the backend),
/// through cinder's API, as DevStack's `create_volume_types`; existing ones are kept.
fn create_volume_types(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let api = oslo::Api::new(host, NAME)?;
    let base = crate::services::frontproxy::probe_url(&s, &format!("{}/v3", ROUTE.path));
    let types = api.get(&format!("{base}/types"))?;
    let existing: Vec<&str> = types["volume_types"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for b in backends(&s) {
        if existing.contains(&b.name.as_str()) {
            continue;
        }
        let body = serde_json::json!({"volume_type": {
            "name": b.name,
            "extra_specs": {"volume_backend_name": b.name},
        }});
        api.post(&format!("{base}/types"), &body)?;
        host.note(&format!("cinder: volume type {} created", b.name));
    }
    Ok(())
}

/// What `status` says about the backend.
fn backend_note(s: &Settings) -> String {
    let mut text = format!("backends {}", s.str("CINDER_ENABLED_BACKENDS"));
    if backends(s).iter().any(|b| b.kind == "nfs") {
        let _ = write!(
            text,
            " (NFS over a bind mount of {}: {})",
            nfs_export(s).display(),
            if lvm_possible() {
                "chosen"
            } else {
                "no device-mapper or iSCSI target for LVM here"
            }
        );
    }
    text
}

impl Service for Cinder {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn packages(&self, s: &Settings) -> Vec<String> {
        let mut out: Vec<String> = uwsgi::PACKAGES.iter().map(|p| (*p).to_owned()).collect();
        if backends(s).iter().any(|b| b.kind == "nfs") {
            // The NFS driver checks that mount.nfs exists before it looks at shares.
            out.push("nfs-common".into());
        }
        out
    }
    fn db_sync(&self, host: &Host) -> Vec<Cmd> {
        vec![
            oslo::venv_cmd(host, "cinder-manage")
                .arg("--config-file")
                .arg(conf(&host.settings))
                .args(["db", "sync"])
                .label("cinder-manage"),
        ]
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        write_config(cx.host)
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let note = backend_note(&s);
        cx.host.note(&format!("cinder: {note}"));
        cx.host.ledger.set_choice(NAME, note);
        if backends(&s).iter().any(|b| b.kind == "nfs") {
            mount_share(cx.host)?;
        }
        let c = conf(&s).display().to_string();
        if s.is_enabled(&["c-api"]) {
            uwsgi::start_routed(cx.host, NAME, "c-api", &uwsgi_ini(&s), ROUTE)?;
        }
        for (svc, script) in [("c-sch", "cinder-scheduler"), ("c-vol", "cinder-volume")] {
            if s.is_enabled(&[svc]) {
                let bin = crate::system::python::venv_bin(&s, script);
                let cmd = format!("exec {} --config-file {c}", bin.display());
                oslo::start_process(cx.host, NAME, svc, &cmd, &[], None)?;
            }
        }
        if s.is_enabled(&["c-api"]) && s.is_enabled(&["key"]) {
            create_volume_types(cx.host)?;
        }
        Ok(())
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        let result = oslo::stop_processes(cx.host, NAME, PROCESSES);
        unmount_share(cx.host);
        result
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        unmount_share(cx.host);
        for name in PROCESSES {
            daemon::remove_daemon_log(&s, name);
        }
        uwsgi::clean_api(cx.host, &conf_dir(&s));
        // Volumes are files in the export: they go with the state directory.
        let state = state_dir(&s);
        if !mounted(&nfs_mount_point(&s)) {
            let _ = fs_err::remove_dir_all(&state);
        }
        cx.host.ledger.forget_choice(NAME);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs)
    }

    #[test]
    fn backends_follow_devstack_syntax() {
        let s = settings(&[("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1, nfs:nfs,ceph")]);
        assert_eq!(
            backends(&s),
            [
                Backend {
                    kind: "lvm".into(),
                    name: "lvmdriver-1".into()
                },
                Backend {
                    kind: "nfs".into(),
                    name: "nfs".into()
                },
                Backend {
                    kind: "ceph".into(),
                    name: "ceph".into()
                },
            ]
        );
        assert!(backends(&settings(&[])).is_empty());
    }

    #[test]
    fn the_mount_point_is_where_os_brick_looks() {
        // os-brick: mount_point_base/<md5 hex of the share string>.
        let s = settings(&[
            ("HOST_IP", "127.0.0.1"),
            ("DATA_DIR", "/opt/stack/data"),
            ("CINDER_STATE_PATH", "/opt/stack/data/cinder"),
        ]);
        assert_eq!(nfs_share(&s), "127.0.0.1:/opt/stack/data/cinder/nfs-export");
        // RFC 1321's test vectors.
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
        let point = nfs_mount_point(&s);
        assert!(point.starts_with("/opt/stack/data/cinder/mnt"));
        assert_eq!(point.file_name().unwrap().len(), 32);
    }

    #[test]
    fn the_lvm_default_is_refused_with_the_reason() {
        let (_dir, mut host) = crate::context::test_host(settings(&[
            ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1"),
            ("CINDER_CONF_DIR", "/nonexistent-cinder"),
        ]));
        let err = write_config(&mut host).unwrap_err().to_string();
        assert!(
            err.contains("CINDER_ENABLED_BACKENDS=lvm:lvmdriver-1"),
            "{err}"
        );
        assert!(err.contains("nfs:nfs"), "{err}");
    }
}
