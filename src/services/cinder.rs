//! cinder (`c-api`, `c-sch`, `c-vol`): block storage. `c-api` is `cinder.wsgi.api`
//! under uWSGI behind the front proxy at `/volume`, registered as DevStack registers
//! it (`block-storage` and `volumev3` at `/volume/v3`); the scheduler and the volume
//! service are supervised processes.
//!
//! The backends are chosen by what the host can do (`cinder_backend.rs`): DevStack's
//! `lvm:lvmdriver-1` (a loop-backed volume group, an iSCSI target) where the kernel
//! has device-mapper, loop devices and a target, `nfs:nfs` otherwise;
//! `CINDER_ENABLED_BACKENDS` chooses explicitly, as in DevStack. The NFS backend
//! needs no NFS server and no kernel client: the export is a directory under
//! `$DATA_DIR`, bind-mounted where os-brick computes its mount point
//! (`nfs_mount_point_base/<md5 of the share>`), which os-brick then finds mounted
//! and uses as it is. Volumes are real sparse files; snapshots work.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::Digest as _;

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::openstack::accounts::ServiceAccount;
use crate::services::cinder_backend::{self as backend, Choice, LibDefault, TargetHelper};
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
    rpc_backend: Some(("cinder", "CINDER_CONF", "DEFAULT")),
    python: &[Project {
        dist: "cinder",
        repo_var: "CINDER_REPO",
    }],
    defaults: &[
        ("CINDER_CONF_DIR", "/etc/cinder"),
        ("CINDER_CONF", "$CINDER_CONF_DIR/cinder.conf"),
        ("CINDER_STATE_PATH", "$DATA_DIR/cinder"),
        // Asked of the storage probe (in Rust) when unset, so the package step and
        // plugins see the backends this host gets.
        (
            "CINDER_ENABLED_BACKENDS",
            backend::default_expr(LibDefault::Backends),
        ),
        (
            "CINDER_TARGET_HELPER",
            backend::default_expr(LibDefault::TargetHelper),
        ),
        (
            "CINDER_LVM_TYPE",
            backend::default_expr(LibDefault::LvmType),
        ),
        ("CINDER_VOLUME_CLEAR", "zero"),
        // DevStack's backend files (lib/cinder_backends/TYPE), for the types we
        // do not build.
        ("CINDER_BACKENDS", "$TOP_DIR/lib/cinder_backends"),
        // lib/lvm's (VOLUME_GROUP_NAME, VOLUME_BACKING_FILE_SIZE: stackrc's).
        ("BACKING_FILE_SUFFIX", "-backing-file"),
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

/// The backends `CINDER_ENABLED_BACKENDS` names (`lvm:lvmdriver-1,nfs:nfs`).
pub(crate) fn backends(s: &Settings) -> Vec<backend::Backend> {
    backend::parse_backends(s.str("CINDER_ENABLED_BACKENDS"))
}

/// The backends this stack gets: the settings checked against what the host can
/// hold (probed once per boot) where this node runs c-vol.
fn decide(host: &mut Host) -> Result<Choice, ServiceError> {
    let storage = host
        .settings
        .is_enabled(&["c-vol"])
        .then(|| backend::storage_host(host));
    let s = &host.settings;
    backend::choose(&backend::Request::from_settings(s), storage.as_ref()).map_err(|why| {
        ServiceError::failed(
            NAME,
            format!(
                "{why}\nhint: set CINDER_ENABLED_BACKENDS={} in local.conf, or give the host what is missing",
                backend::NFS_DEFAULT
            ),
        )
    })
}

/// Where cinder's tgt helper writes its target files (cinder's `volumes_dir`).
fn volumes_dir(s: &Settings) -> PathBuf {
    state_dir(s).join("volumes")
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

/// cinder.conf, the NFS share list, tgt's include, api-paste and uWSGI's ini, for
/// `choice`; the route on the front proxy.
pub(crate) fn write_config(host: &mut Host, choice: &Choice) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let dir = conf_dir(&s);
    let state = state_dir(&s);
    oslo::make_dir(host, NAME, &state.join("lock"))?;
    let enabled = &choice.backends;
    let shares = dir.join("nfs_shares");
    let rootwrap = oslo::configure_rootwrap(host, NAME, "cinder", &dir)?;
    oslo::write_conf(host, NAME, &conf(&s), |doc| {
        oslo::common_defaults(doc, &s);
        if let Some(url) = crate::services::rabbit::configured_transport_url(&s) {
            doc.set("DEFAULT", "transport_url", &url);
        }
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
            "resource_query_filters_file",
            &dir.join("resource_filters.json").display().to_string(),
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
        // lib/cinder: the user's URL, else DevStack's etcd when etcd3 runs; no
        // backend (tooz's file locks on one node) without either.
        let url = match s.str("CINDER_COORDINATION_URL") {
            "" => crate::services::etcd3::backend_url(&s),
            url => Some(url.to_owned()),
        };
        if let Some(url) = url {
            doc.set("coordination", "backend_url", &url);
        }
        doc.set(
            "oslo_concurrency",
            "lock_path",
            &state.join("lock").display().to_string(),
        );
        oslo::authtoken(doc, &s, NAME);
        // Assisted snapshots and volume extends call nova as the service user.
        oslo::keystoneauth(doc, &s, "nova", "nova");
        for b in enabled.iter().filter(|b| !b.in_shell()) {
            let sec = b.name.as_str();
            if b.kind == "lvm" {
                lvm_section(doc, &s, choice, sec);
                continue;
            }
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
    if choice.has("lvm") && choice.target_helper == TargetHelper::Tgt {
        write_tgt_conf(host)?;
    }
    if choice.has("nfs") {
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
    // As DevStack copies it: without it a user's `volume list --name` (any filter
    // a non-admin sends) is refused with "Invalid filters".
    oslo::copy_file(
        host,
        NAME,
        &oslo::venv_etc(host, "cinder/resource_filters.json"),
        &dir.join("resource_filters.json"),
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

/// DevStack's backend convention for the types we do not build (ceph, glusterfs,
/// a plugin's): with c-vol, `STEP_cinder_backend_TYPE NAME` (configure after
/// cinder.conf is written, init after the database sync, cleanup at clean), the
/// functions of `$CINDER_BACKENDS/TYPE` (or a plugin's
/// `devstack/lib/cinder_backends/TYPE`), sourced first, or a plugin's own.
pub(crate) fn shell_backends(
    cx: &mut ServiceCtx<'_>,
    step: &str,
    choice: &Choice,
) -> Result<(), ServiceError> {
    if !cx.settings().is_enabled(&["c-vol"]) {
        return Ok(());
    }
    shell_steps(cx, step, &choice.backends)
}

fn shell_steps(
    cx: &mut ServiceCtx<'_>,
    step: &str,
    backends: &[backend::Backend],
) -> Result<(), ServiceError> {
    for b in backends.iter().filter(|b| b.in_shell()) {
        let file = backend_file(cx.host, &b.kind)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let status = cx
            .call_function(CINDER_BACKEND_STEP, &[step, &b.kind, &b.name, &file])
            .map_err(|source| ServiceError::Shell {
                service: NAME.into(),
                source,
            })?;
        if status != 0 {
            return Err(ServiceError::failed(
                NAME,
                format!(
                    "{step}_cinder_backend_{} {} returned {status}",
                    b.kind, b.name
                ),
            ));
        }
    }
    Ok(())
}

/// The shell function (lib/cinder) that runs one step of a backend's convention.
const CINDER_BACKEND_STEP: &str = "_ds_cinder_backend";

/// `$CINDER_BACKENDS/TYPE`, else the first enabled plugin's
/// `devstack/lib/cinder_backends/TYPE`.
fn backend_file(host: &Host, kind: &str) -> Option<PathBuf> {
    let tree = Some(host.settings.path("CINDER_BACKENDS"))
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(kind));
    tree.into_iter()
        .chain(
            host.plugins
                .plugins()
                .iter()
                .map(|p| p.dir.join("devstack/lib/cinder_backends").join(kind)),
        )
        .find(|p| p.is_file())
}

/// lib/cinder_backends/lvm's `configure_cinder_backend_lvm`.
fn lvm_section(doc: &mut crate::ini::IniDoc, s: &Settings, choice: &Choice, sec: &str) {
    doc.set(
        sec,
        "volume_driver",
        "cinder.volume.drivers.lvm.LVMVolumeDriver",
    );
    doc.set(sec, "volume_backend_name", sec);
    doc.set(sec, "volume_group", &backend::volume_group(s, sec).name);
    doc.set(sec, "target_helper", choice.target_helper.as_str());
    doc.set(sec, "target_protocol", "iscsi");
    doc.set(sec, "target_port", &backend::TARGET_PORT.to_string());
    doc.set(sec, "target_prefix", backend::TARGET_PREFIX);
    doc.set(sec, "lvm_type", &choice.lvm_type);
    doc.set(sec, "volume_clear", s.get_or("CINDER_VOLUME_CLEAR", "zero"));
}

/// tgt's include of cinder's target files (recorded: clean removes it).
fn write_tgt_conf(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let volumes = volumes_dir(&s);
    oslo::make_dir(host, NAME, &volumes)?;
    let path = s.path("CINDER_TGT_CONF");
    let path = if path.as_os_str().is_empty() {
        Path::new(backend::TGT_CONF)
    } else {
        &path
    };
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(|source| ServiceError::Io {
            service: NAME.into(),
            path: dir.to_path_buf(),
            source,
        })?;
    }
    fs_err::write(path, backend::tgt_conf_text(&volumes)).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: path.to_path_buf(),
        source,
    })?;
    host.ledger.record_file(path);
    Ok(())
}

/// nova-compute's `mount` (`cinder_nfs_mount.sh`): nova's libvirt driver mounts the
/// share itself before it attaches a volume, and with no NFS client here that
/// `mount -t nfs` fails ("No such device"); this one binds the export instead.
const COMPUTE_MOUNT: &str = include_str!("cinder_nfs_mount.sh");

/// Where this stack's NFS share is the local export (cinder configured here with
/// an `nfs` backend), writes nova-compute's `mount` and returns the directory to put
/// first on its PATH; None otherwise (the system's `mount` then, as in DevStack).
///
/// `nova_mount_base` (nova's `nfs_mount_point_base`) is made a shared mount first:
/// libvirt runs each QEMU in a mount namespace of its own, and where the host's
/// mounts are private (no systemd: a container) a bind made after a guest started
/// would not reach its QEMU ("Could not open …/volume-…: No such file or directory"
/// at attach); under a shared mount it propagates.
pub(crate) fn compute_mount_dir(
    host: &mut Host,
    nova_mount_base: &Path,
) -> Result<Option<PathBuf>, ServiceError> {
    let s = host.settings.clone();
    let export = nfs_export(&s);
    if !backends(&s).iter().any(|b| b.kind == "nfs") || !export.is_dir() {
        return Ok(None);
    }
    oslo::make_dir(host, NAME, nova_mount_base)?;
    let mount = |args: &[&std::ffi::OsStr], what: &str| {
        host.cmd("mount")
            .args(args)
            .timeout(Duration::from_secs(30))
            .run()
            .map(|_| ())
            .map_err(|source| ServiceError::Process {
                service: NAME.into(),
                what: format!("{what} {}", nova_mount_base.display()),
                source,
            })
    };
    let base = nova_mount_base.as_os_str();
    if !mounted(nova_mount_base) {
        mount(&["--bind".as_ref(), base, base], "bind-mounting")?;
    }
    mount(&["--make-shared".as_ref(), base], "making shared")?;
    let dir = state_dir(&s).join("compute-bin");
    oslo::make_dir(host, NAME, &dir)?;
    let path = dir.join("mount");
    let text = COMPUTE_MOUNT
        .replace("@SHARE@", &nfs_share(&s))
        .replace("@EXPORT@", &export.display().to_string());
    let io = |source| ServiceError::Io {
        service: NAME.into(),
        path: path.clone(),
        source,
    };
    fs_err::write(&path, text).map_err(io)?;
    fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(io)?;
    Ok(Some(dir))
}

/// Unmounts `base` and every mount point under it (deepest first): nova's binds of
/// the share, which nova itself never unmounts (it does not see them as mounts),
/// and the shared mount of `compute_mount_dir`.
pub(crate) fn unmount_under(host: &Host, base: &Path) {
    let exact = base.display().to_string();
    let prefix = format!("{exact}/");
    let mut points: Vec<String> = mount_points()
        .into_iter()
        .filter(|p| *p == exact || p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = host
            .cmd("umount")
            .arg(&point)
            .timeout(Duration::from_secs(30))
            .run();
    }
}

/// Is `dir` a mount point (in /proc/mounts)?
fn mounted(dir: &Path) -> bool {
    let want = dir.display().to_string();
    mount_points().contains(&want)
}

/// The mount points of /proc/mounts (none when it cannot be read).
fn mount_points() -> Vec<String> {
    fs_err::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
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

/// The enabled backends that `get_pools?detail=True`'s answer has no pool of: a
/// pool is a backend's when its `volume_backend_name`, or the part of its name
/// between `@` and `#` (`host@lvmdriver-1#lvmdriver-1`), is the backend's name.
fn backends_without_pool(wanted: &[String], pools: &serde_json::Value) -> Vec<String> {
    let pools = pools["pools"].as_array().map_or(&[][..], Vec::as_slice);
    let has = |name: &str| {
        pools.iter().any(|p| {
            p["capabilities"]["volume_backend_name"].as_str() == Some(name)
                || p["name"]
                    .as_str()
                    .and_then(|n| n.split_once('@'))
                    .is_some_and(|(_, rest)| rest.split('#').next() == Some(name))
        })
    };
    wanted.iter().filter(|w| !has(w)).cloned().collect()
}

/// How long the scheduler may take to list the pools, at least: should c-vol's first
/// capability report still miss the scheduler (it is started only once the
/// scheduler is up, [`wait_for_scheduler`]), the next comes with its periodic
/// tasks, after `periodic_interval` (60 s) and a `periodic_fuzzy_delay` of up to
/// 60 s more. Started together, a default stack measured 60.2 s.
const POOLS_TIMEOUT: Duration = Duration::from_secs(150);

/// Readiness as a user's first `volume create` needs it: the scheduler has every
/// enabled backend's pool (c-vol reports its capabilities only once its driver is
/// set up; before that the scheduler answers "No weighed backends available" and
/// the volume goes to error). Polls the admin API's `scheduler-stats/get_pools`
/// within SERVICE_TIMEOUT or [`POOLS_TIMEOUT`], the longer; fails at once when
/// c-vol or c-sch exited.
fn wait_for_pools(host: &mut Host) -> Result<(), ServiceError> {
    use crate::state::ProcessKind;
    let s = host.settings.clone();
    let wanted: Vec<String> = backends(&s).into_iter().map(|b| b.name).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let api = oslo::Api::new(host, NAME)?;
    let url = format!(
        "{}/scheduler-stats/get_pools?detail=True",
        crate::services::frontproxy::probe_url(&s, &format!("{}/v3", ROUTE.path))
    );
    let records: Vec<crate::state::ProcessRecord> = ["c-vol", "c-sch"]
        .iter()
        .filter_map(|n| host.ledger.process(ProcessKind::Service, n).cloned())
        .collect();
    let log = records.first().map(|r| r.log.clone()).unwrap_or_default();
    let took = daemon::wait_until(
        NAME,
        "the scheduler to list every volume backend's pool (scheduler-stats/get_pools)",
        &log,
        daemon::service_timeout(&s).max(POOLS_TIMEOUT),
        || {
            let pools = api.get(&url).map_err(|e| e.to_string())?;
            let missing = backends_without_pool(&wanted, &pools);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("no pool yet of {}", missing.join(", ")))
            }
        },
        || records.iter().any(|r| !oslo::alive(host, r)),
    )?;
    host.note(&format!(
        "cinder: the scheduler lists a pool of {} after {:.1} s",
        wanted.join(", "),
        took.as_secs_f64()
    ));
    Ok(())
}

/// Waits until cinder's API lists the scheduler as up: its service record is
/// written as it starts consuming, so c-vol's first capability report, which
/// comes once its driver is set up, reaches it (started together, the report went
/// before the scheduler listened and the pools came a minute later).
fn wait_for_scheduler(host: &mut Host) -> Result<(), ServiceError> {
    use crate::state::ProcessKind;
    let s = host.settings.clone();
    let api = oslo::Api::new(host, NAME)?;
    let url = format!(
        "{}/os-services?binary=cinder-scheduler",
        crate::services::frontproxy::probe_url(&s, &format!("{}/v3", ROUTE.path))
    );
    let Some(record) = host.ledger.process(ProcessKind::Service, "c-sch").cloned() else {
        return Ok(());
    };
    let took = daemon::wait_until(
        NAME,
        "cinder's API to list the scheduler as up (os-services)",
        &record.log,
        daemon::service_timeout(&s),
        || {
            let answer = api.get(&url).map_err(|e| e.to_string())?;
            if scheduler_up(&answer) {
                Ok(())
            } else {
                Err("the scheduler is not listed up yet".into())
            }
        },
        || !oslo::alive(host, &record),
    )?;
    host.note(&format!(
        "cinder: the scheduler is up after {:.1} s",
        took.as_secs_f64()
    ));
    Ok(())
}

/// Whether an `os-services` answer lists a cinder-scheduler that is up.
fn scheduler_up(answer: &serde_json::Value) -> bool {
    answer["services"].as_array().is_some_and(|list| {
        list.iter().any(|svc| {
            svc["binary"].as_str() == Some("cinder-scheduler")
                && svc["state"].as_str() == Some("up")
        })
    })
}

impl Service for Cinder {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn packages(&self, s: &Settings) -> Vec<String> {
        let mut out: Vec<String> = uwsgi::PACKAGES.iter().map(|p| (*p).to_owned()).collect();
        let enabled = backends(s);
        if enabled.iter().any(|b| b.kind == "nfs") {
            // The NFS driver checks that mount.nfs exists before it looks at shares.
            out.push("nfs-common".into());
        }
        // The settings hold the probe's choice by now (the lib/ defaults asked it).
        if enabled.iter().any(|b| b.kind == "lvm") && s.is_enabled(&["c-vol"]) {
            out.extend(["lvm2", "thin-provisioning-tools"].map(str::to_owned));
            let helper = TargetHelper::configured(s);
            out.extend(helper.packages().iter().map(|p| (*p).to_owned()));
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
    fn install(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = &cx.host.settings;
        let lio = s.is_enabled(&["c-vol"])
            && backends(s).iter().any(|b| b.kind == "lvm")
            && TargetHelper::configured(s) == TargetHelper::Lio;
        if lio && !venv_has_rtslib(cx.host) {
            // cinder-rtstool runs from the venv: Debian's python3-rtslib-fb is not
            // on its path.
            let reqs = [crate::system::python::Req::Pypi("rtslib-fb".into())];
            crate::system::python::install(&mut cx.host.machine(), &reqs, false)
                .map_err(|e| ServiceError::caused(NAME, "installing rtslib-fb", e))?;
        }
        Ok(())
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let choice = decide(cx.host)?;
        let line = format!("cinder: {}", choice.summary);
        cx.host.note(&line);
        cx.host.progress.summary(&line);
        cx.host.ledger.set_choice(NAME, choice.summary.clone());
        write_config(cx.host, &choice)?;
        shell_backends(cx, "configure", &choice)
    }
    fn init(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        if !cx.host.settings.is_enabled(&["c-vol"]) {
            return Ok(());
        }
        let choice = decide(cx.host)?;
        if choice.has("lvm") {
            backend::init(cx.host, &choice)?;
        }
        shell_backends(cx, "init", &choice)
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let choice = decide(cx.host)?;
        if choice.has("nfs") {
            mount_share(cx.host)?;
        }
        if s.is_enabled(&["c-vol"])
            && choice.has("lvm")
            && choice.target_helper == TargetHelper::Tgt
        {
            // c-vol exports its volumes again as it starts.
            backend::start_tgtd(cx.host)?;
        }
        let c = conf(&s).display().to_string();
        if s.is_enabled(&["c-api"]) {
            uwsgi::start_routed(cx.host, NAME, "c-api", &uwsgi_ini(&s), ROUTE)?;
        }
        let api_answers = s.is_enabled(&["c-api"]) && s.is_enabled(&["key"]);
        for (svc, script) in [("c-sch", "cinder-scheduler"), ("c-vol", "cinder-volume")] {
            if s.is_enabled(&[svc]) {
                let bin = crate::system::python::venv_bin(&s, script);
                let cmd = format!("exec {} --config-file {c}", bin.display());
                oslo::start_process(cx.host, NAME, svc, &cmd, &[], None)?;
            }
            if svc == "c-sch" && api_answers && s.is_enabled(&["c-sch"]) && s.is_enabled(&["c-vol"])
            {
                // c-vol reports its capabilities once, as its driver is set up; a
                // scheduler not consuming yet misses it, and the next report comes a
                // minute later with c-vol's periodic tasks.
                wait_for_scheduler(cx.host)?;
            }
        }
        if s.is_enabled(&["c-api"]) && s.is_enabled(&["key"]) {
            create_volume_types(cx.host)?;
            if s.is_enabled(&["c-sch"]) && s.is_enabled(&["c-vol"]) {
                daemon::wait_or_defer(cx.host, NAME, wait_for_pools)?;
            }
        }
        Ok(())
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        let result = oslo::stop_processes(cx.host, NAME, PROCESSES);
        unmount_share(cx.host);
        // The volume groups stay for the next stack; their target goes with c-vol.
        result.and(backend::stop_tgtd(cx.host))
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        if s.is_enabled(&["c-vol"]) {
            let backends = backend::parse_backends(s.str("CINDER_ENABLED_BACKENDS"));
            if let Err(e) = shell_steps(cx, "cleanup", &backends) {
                cx.host.warn(&e.to_string());
            }
        }
        unmount_share(cx.host);
        backend::clean(cx.host, TargetHelper::configured(&s));
        for name in PROCESSES.iter().chain(&["tgtd"]) {
            daemon::remove_daemon_log(&s, name);
        }
        uwsgi::clean_api(cx.host, &conf_dir(&s));
        // NFS volumes are files in the export, tgt's target files are in
        // volumes/: they go with the state directory.
        let state = state_dir(&s);
        if !mounted(&nfs_mount_point(&s)) {
            let _ = fs_err::remove_dir_all(&state);
        }
        cx.host.ledger.forget_choice(NAME);
        Ok(())
    }
}

/// Does the venv import rtslib_fb (cinder-rtstool's library)?
fn venv_has_rtslib(host: &Host) -> bool {
    let python = crate::system::python::venv_bin(&host.settings, "python3");
    python.is_file()
        && host
            .cmd(&python)
            .args(["-c", "import rtslib_fb"])
            .capture()
            .timeout(Duration::from_secs(30))
            .run()
            .is_ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scheduler_counts_once_os_services_lists_it_up() {
        let up = serde_json::json!({"services": [
            {"binary": "cinder-volume", "state": "up"},
            {"binary": "cinder-scheduler", "state": "up"}]});
        let down = serde_json::json!({"services": [
            {"binary": "cinder-volume", "state": "up"},
            {"binary": "cinder-scheduler", "state": "down"}]});
        assert!(scheduler_up(&up));
        assert!(!scheduler_up(&down));
        assert!(!scheduler_up(&serde_json::json!({"services": []})));
        assert!(!scheduler_up(&serde_json::json!({"error": "x"})));
    }

    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs)
    }

    #[test]
    fn a_backend_counts_as_seen_once_the_scheduler_lists_its_pool() {
        let wanted = vec!["lvmdriver-1".to_owned(), "nfs".to_owned()];
        let none = serde_json::json!({"pools": []});
        assert_eq!(backends_without_pool(&wanted, &none), wanted);
        // By the pool's name (no details) or by its volume_backend_name.
        let some = serde_json::json!({"pools": [
            {"name": "host1@lvmdriver-1#lvmdriver-1"},
            {"name": "host1@other#x", "capabilities": {"volume_backend_name": "other"}},
        ]});
        assert_eq!(backends_without_pool(&wanted, &some), ["nfs"]);
        let all = serde_json::json!({"pools": [
            {"name": "host1@lvmdriver-1#lvmdriver-1"},
            {"name": "host1@nfs#nfs", "capabilities": {"volume_backend_name": "nfs"}},
        ]});
        assert!(backends_without_pool(&wanted, &all).is_empty());
        // An error body is no pool.
        let error = serde_json::json!({"error": "boom"});
        assert_eq!(backends_without_pool(&wanted, &error), wanted);
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
    #[ignore = "reason: bind-mounts a temporary directory (root): ./run_tests.sh runs it"]
    fn nova_computes_nfs_mount_of_the_local_share_is_one_bind_and_unstack_undoes_it() {
        let (dir, mut host) = crate::context::test_host(settings(&[
            ("HOST_IP", "127.0.0.1"),
            ("CINDER_ENABLED_BACKENDS", "nfs:nfs"),
        ]));
        let data = dir.path().join("data");
        host.settings.set("DATA_DIR", data.display().to_string());
        host.settings.set(
            "CINDER_STATE_PATH",
            data.join("cinder").display().to_string(),
        );
        let base = data.join("nova/mnt");
        // No export yet (cinder not configured here): the system's mount.
        assert_eq!(compute_mount_dir(&mut host, &base).unwrap(), None);
        let export = nfs_export(&host.settings);
        fs_err::create_dir_all(&export).unwrap();
        fs_err::write(export.join("volume-1"), "data").unwrap();
        let bin = compute_mount_dir(&mut host, &base)
            .unwrap()
            .expect("the wrapper");
        // nova's mount base is shared (binds under it reach QEMU's namespaces).
        let base_arg = base.display().to_string();
        let info = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.split_whitespace().nth(4) == Some(base_arg.as_str()))
            .expect("the base is a mount point");
        assert!(line.contains(" shared:"), "{line}");
        let point = base.join("cc80");
        fs_err::create_dir_all(&point).unwrap();
        let share = nfs_share(&host.settings);
        let mount = |args: &[&str]| {
            host.cmd(bin.join("mount"))
                .args(args)
                .allow_failure()
                .run()
                .unwrap()
                .status
        };
        let point_arg = point.display().to_string();
        // As nova calls it, twice (it asks again at every attach): one bind.
        for _ in 0..2 {
            assert!(mount(&["-t", "nfs", &share, &point_arg]).success());
        }
        let count = || {
            fs_err::read_to_string("/proc/mounts")
                .unwrap()
                .lines()
                .filter(|l| l.split_whitespace().nth(1) == Some(point_arg.as_str()))
                .count()
        };
        assert_eq!(count(), 1);
        assert_eq!(
            fs_err::read_to_string(point.join("volume-1")).unwrap(),
            "data"
        );
        // Another share is the system's mount's to refuse.
        assert!(!mount(&["-t", "nfs", "127.0.0.1:/elsewhere", &point_arg]).success());
        unmount_under(&host, &base);
        assert_eq!(count(), 0);
        assert!(!mounted(&base));
        assert!(export.join("volume-1").exists());
    }

    /// A host whose probe answer (kept in the ledger for this boot) is `storage`.
    fn host_with(
        pairs: &[(&str, &str)],
        storage: &backend::StorageHost,
    ) -> (tempfile::TempDir, Host) {
        let (dir, mut host) = crate::context::test_host(settings(pairs));
        host.ledger.set_fact(
            backend::PROBE_FACT,
            backend::cache_entry(&backend::probe_key(), storage),
        );
        (dir, host)
    }

    fn no_device_mapper() -> backend::StorageHost {
        backend::StorageHost {
            device_mapper: Err("no device-mapper (/dev/mapper/control is missing)".into()),
            loop_device: Ok("loop0".into()),
            lio: Err("no LIO".into()),
            tgt: Ok("tgtd".into()),
            thin: Err("no dm-thin-pool".into()),
        }
    }

    #[test]
    fn an_explicit_lvm_on_a_host_without_device_mapper_fails_configure_naming_it() {
        let (_dir, mut host) = host_with(
            &[
                ("ENABLED_SERVICES", "c-api,c-sch,c-vol"),
                ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1"),
                ("CINDER_CONF_DIR", "/nonexistent-cinder"),
            ],
            &no_device_mapper(),
        );
        let err = decide(&mut host).unwrap_err().to_string();
        assert!(
            err.contains("CINDER_ENABLED_BACKENDS=lvm:lvmdriver-1 asks for LVM"),
            "{err}"
        );
        assert!(err.contains("no device-mapper"), "{err}");
        assert!(
            err.contains("hint: set CINDER_ENABLED_BACKENDS=nfs:nfs"),
            "{err}"
        );
    }

    #[test]
    fn the_lvm_packages_come_only_with_an_lvm_backend_on_a_volume_node() {
        let pkgs = |pairs: &[(&str, &str)]| Cinder.packages(&settings(pairs));
        let lvm = pkgs(&[
            ("ENABLED_SERVICES", "c-vol"),
            ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1"),
            ("CINDER_TARGET_HELPER", "tgtadm"),
        ]);
        assert!(lvm.contains(&"lvm2".to_owned()) && lvm.contains(&"tgt".to_owned()));
        assert!(!lvm.contains(&"targetcli-fb".to_owned()));
        assert!(!lvm.contains(&"nfs-common".to_owned()));
        let lio = pkgs(&[
            ("ENABLED_SERVICES", "c-vol"),
            ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1"),
            ("CINDER_TARGET_HELPER", "lioadm"),
        ]);
        assert!(lio.contains(&"targetcli-fb".to_owned()) && !lio.contains(&"tgt".to_owned()));
        let nfs = pkgs(&[
            ("ENABLED_SERVICES", "c-vol"),
            ("CINDER_ENABLED_BACKENDS", "nfs:nfs"),
        ]);
        assert!(nfs.contains(&"nfs-common".to_owned()));
        assert!(!nfs.contains(&"lvm2".to_owned()) && !nfs.contains(&"tgt".to_owned()));
        // An API-only node holds no volumes.
        let api = pkgs(&[
            ("ENABLED_SERVICES", "c-api"),
            ("CINDER_ENABLED_BACKENDS", "lvm:lvmdriver-1"),
        ]);
        assert!(!api.contains(&"lvm2".to_owned()));
    }
}
