//! cinder's backends: what the host can hold, which backends a stack gets, and
//! DevStack's LVM backend.
//!
//! The decision is split in two so it can be tested without the machine:
//! [`StorageHost`] is what the probe saw (device-mapper, loop devices, an iSCSI
//! target: LIO or tgt, dm-thin-pool), filled by [`probe`] and kept in the ledger
//! for the boot; [`choose`] is a pure function from it and the settings to a
//! [`Choice`], or to an error that names what is missing.
//!
//! The probe answers before anything is installed: the lib/ defaults ask it
//! (`cinder-default`, a shell op), so `CINDER_ENABLED_BACKENDS`,
//! `CINDER_TARGET_HELPER` and `CINDER_LVM_TYPE` hold the chosen values for the
//! package step and for plugins, as DevStack's variables do. cinder's configure
//! checks the values again against it (a user's explicit `lvm` on a host that
//! cannot do it fails there).
//!
//! The LVM backend, as lib/lvm and lib/cinder_backends/lvm set it up: per backend a
//! sparse file `$DATA_DIR/<vg>$BACKING_FILE_SUFFIX` of `VOLUME_BACKING_FILE_SIZE`,
//! a loop device, volume group `$VOLUME_GROUP_NAME-<backend>`; lvm.conf's
//! `global_filter` accepting only the PVs LVM knows; the target tgt's `tgtd` (a
//! [`Daemon`]) or LIO through `cinder-rtstool`. The volume groups made are recorded
//! in the ledger, and clean removes them from there (whatever the settings say by
//! then). Two things of DevStack's are left out: the `stack-volumes-default` group
//! (`init_default_lvm_volume_group`; no cinder backend uses it) and the systemd unit
//! that attaches the backing file at boot (there may be no systemd; the next stack
//! attaches it again, and finds the group).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::settings::Settings;
use crate::config::vars;
use crate::context::Host;
use crate::services::daemon::{self, Daemon};
use crate::services::{ServiceError, oslo};
use crate::system::supervisor::ProcessSpec;

const SERVICE: &str = "cinder";

/// One need of the LVM backend: what the probe saw (`Ok`) or what is missing
/// (`Err`), each in words for the terminal.
pub(crate) type Check = Result<String, String>;

/// What the host offers DevStack's LVM backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StorageHost {
    /// The kernel's device-mapper (logical volumes are dm devices).
    pub(crate) device_mapper: Check,
    /// A file can be attached to a loop device (the volume group's PV).
    pub(crate) loop_device: Check,
    /// LIO, the kernel's iSCSI target (`lioadm`, DevStack's default helper).
    pub(crate) lio: Check,
    /// tgt's userspace `tgtd` (`tgtadm`).
    pub(crate) tgt: Check,
    /// dm-thin-pool: cinder's `lvm_type = auto` makes a thin pool where it can.
    pub(crate) thin: Check,
}

/// DevStack's default backend, for a host that can hold it.
pub(crate) const LVM_DEFAULT: &str = "lvm:lvmdriver-1";
/// The backend of a host that cannot.
pub(crate) const NFS_DEFAULT: &str = "nfs:nfs";
/// lib/cinder's `CINDER_TARGET_PREFIX` (iSCSI).
pub(crate) const TARGET_PREFIX: &str = "iqn.2010-10.org.openstack:";
/// lib/cinder's `CINDER_TARGET_PORT` (iSCSI).
pub(crate) const TARGET_PORT: u16 = 3260;

impl StorageHost {
    /// What LVM lacks here, each named; empty when it can work.
    pub(crate) fn lvm_missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(why) = &self.device_mapper {
            out.push(why.clone());
        }
        if let Err(why) = &self.loop_device {
            out.push(why.clone());
        }
        if let (Err(lio), Err(tgt)) = (&self.lio, &self.tgt) {
            out.push(format!("no iSCSI target ({lio}; {tgt})"));
        }
        out
    }

    /// `CINDER_ENABLED_BACKENDS` when the user did not set it.
    pub(crate) fn default_backends(&self) -> &'static str {
        if self.lvm_missing().is_empty() {
            LVM_DEFAULT
        } else {
            NFS_DEFAULT
        }
    }

    /// `CINDER_TARGET_HELPER` when the user did not set it: DevStack's `lioadm`
    /// where the kernel has LIO, else tgt's.
    pub(crate) fn default_target_helper(&self) -> TargetHelper {
        if self.lio.is_ok() || self.tgt.is_err() {
            TargetHelper::Lio
        } else {
            TargetHelper::Tgt
        }
    }

    /// `CINDER_LVM_TYPE` when the user did not set it: DevStack's `auto` (thin where
    /// LVM can), but thick where the kernel has no dm-thin-pool: cinder's `auto`
    /// looks at the LVM version only, and its thin pool would then fail.
    pub(crate) fn default_lvm_type(&self) -> &'static str {
        if self.thin.is_ok() { "auto" } else { "default" }
    }
}

/// cinder's iSCSI target helper (`target_helper`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetHelper {
    /// LIO through `cinder-rtstool`.
    Lio,
    /// tgt's `tgtadm`, with our `tgtd`.
    Tgt,
}

impl TargetHelper {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Lio => "lioadm",
            Self::Tgt => "tgtadm",
        }
    }

    /// The helper `CINDER_TARGET_HELPER` holds (DevStack's `lioadm` unless
    /// `tgtadm`): for the steps that only read the settings (packages, clean).
    pub(crate) fn configured(s: &Settings) -> Self {
        if s.str("CINDER_TARGET_HELPER") == "tgtadm" {
            Self::Tgt
        } else {
            Self::Lio
        }
    }

    /// The Debian packages it needs.
    pub(crate) fn packages(self) -> &'static [&'static str] {
        match self {
            Self::Lio => &["targetcli-fb", "python3-rtslib-fb"],
            Self::Tgt => &["tgt"],
        }
    }
}

/// One enabled backend: `TYPE:NAME` of `CINDER_ENABLED_BACKENDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Backend {
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// Parses `CINDER_ENABLED_BACKENDS` (`lvm:lvmdriver-1,nfs:nfs`); a bare `TYPE` is
/// its own name.
pub(crate) fn parse_backends(text: &str) -> Vec<Backend> {
    text.split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(|b| {
            let (kind, name) = b.split_once(':').unwrap_or((b, b));
            Backend {
                kind: kind.to_owned(),
                name: name.to_owned(),
            }
        })
        .collect()
}

/// What the settings ask for.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Request<'a> {
    pub(crate) backends: &'a str,
    pub(crate) target_helper: &'a str,
    pub(crate) lvm_type: &'a str,
}

impl<'a> Request<'a> {
    pub(crate) fn from_settings(s: &'a Settings) -> Self {
        Self {
            backends: s.str("CINDER_ENABLED_BACKENDS"),
            target_helper: s.str("CINDER_TARGET_HELPER"),
            lvm_type: s.str("CINDER_LVM_TYPE"),
        }
    }
}

/// The backends a stack gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    /// `CINDER_ENABLED_BACKENDS` as given (or the probe's default).
    pub(crate) spec: String,
    pub(crate) backends: Vec<Backend>,
    /// For the LVM backends.
    pub(crate) target_helper: TargetHelper,
    pub(crate) lvm_type: String,
    /// Which backends and why, in one line (the terminal and `devstack status`).
    pub(crate) summary: String,
}

impl Choice {
    pub(crate) fn has(&self, kind: &str) -> bool {
        self.backends.iter().any(|b| b.kind == kind)
    }

    /// The LVM backends' names.
    pub(crate) fn lvm_names(&self) -> impl Iterator<Item = &str> {
        self.backends
            .iter()
            .filter(|b| b.kind == "lvm")
            .map(|b| b.name.as_str())
    }
}

/// The backend types this project configures; any other is DevStack's backend
/// convention's (`lib/cinder_backends/TYPE`, or a plugin's functions: [`Backend::in_shell`]).
const BUILT: &[&str] = &["lvm", "nfs"];

impl Backend {
    /// Configured by shell functions (`configure_cinder_backend_TYPE NAME` and the
    /// rest of DevStack's convention), not by us.
    pub(crate) fn in_shell(&self) -> bool {
        !BUILT.contains(&self.kind.as_str())
    }
}

/// The choice for `req` on a host that offers `host` (None: no volume service on
/// this node, so nothing here has to hold the backends).
pub(crate) fn choose(req: &Request<'_>, host: Option<&StorageHost>) -> Result<Choice, String> {
    let spec = match (req.backends.trim(), host) {
        ("", Some(h)) => h.default_backends(),
        ("", None) => LVM_DEFAULT,
        (given, _) => given,
    };
    let backends = parse_backends(spec);
    if backends.is_empty() {
        return Err(format!("CINDER_ENABLED_BACKENDS={spec:?} names no backend"));
    }
    let target_helper = match req.target_helper.trim() {
        "" => host.map_or(TargetHelper::Lio, StorageHost::default_target_helper),
        "lioadm" => TargetHelper::Lio,
        "tgtadm" => TargetHelper::Tgt,
        other => {
            return Err(format!(
                "CINDER_TARGET_HELPER={other} is not built here (lioadm or tgtadm)"
            ));
        }
    };
    let lvm = backends.iter().any(|b| b.kind == "lvm");
    if let (true, Some(h)) = (lvm, host) {
        let missing = h.lvm_missing();
        if !missing.is_empty() {
            return Err(format!(
                "CINDER_ENABLED_BACKENDS={spec} asks for LVM, which cannot work on this host: {}",
                missing.join("; ")
            ));
        }
        let helper_check = match target_helper {
            TargetHelper::Lio => &h.lio,
            TargetHelper::Tgt => &h.tgt,
        };
        if let Err(why) = helper_check {
            return Err(format!(
                "CINDER_TARGET_HELPER={} cannot work on this host: {why}",
                target_helper.as_str()
            ));
        }
    }
    let lvm_type = match (req.lvm_type.trim(), host) {
        ("", Some(h)) => h.default_lvm_type().to_owned(),
        ("", None) => "auto".to_owned(),
        ("thin", Some(StorageHost { thin: Err(why), .. })) if lvm => {
            return Err(format!(
                "CINDER_LVM_TYPE=thin cannot work on this host: {why}"
            ));
        }
        (given, _) => given.to_owned(),
    };
    let summary = summary(spec, &backends, target_helper, host);
    Ok(Choice {
        spec: spec.to_owned(),
        backends,
        target_helper,
        lvm_type,
        summary,
    })
}

/// "backends nfs:nfs (NFS: LVM cannot work here: …)" and the like.
fn summary(
    spec: &str,
    backends: &[Backend],
    helper: TargetHelper,
    host: Option<&StorageHost>,
) -> String {
    let mut kinds: Vec<String> = Vec::new();
    if backends.iter().any(|b| b.kind == "lvm") {
        kinds.push(format!("LVM, iSCSI target {}", helper.as_str()));
    }
    if backends.iter().any(|b| b.kind == "nfs") {
        kinds.push("NFS on a local export".into());
    }
    let what = kinds.join(" and ");
    let why = match host {
        None => "no c-vol on this node".to_owned(),
        Some(h) if spec != h.default_backends() => "as CINDER_ENABLED_BACKENDS says".to_owned(),
        Some(h) => match h.lvm_missing().as_slice() {
            [] => format!(
                "the host has device-mapper, loop devices and {}",
                match helper {
                    TargetHelper::Lio => "LIO",
                    TargetHelper::Tgt => "tgt",
                }
            ),
            missing => format!("LVM cannot work here: {}", missing.join("; ")),
        },
    };
    format!("backends {spec} ({what}: {why})")
}

// ---------------------------------------------------------------------------------
// the probe

const DM_CONTROL: &str = "/dev/mapper/control";
const DM_MODULE: &str = "/sys/module/dm_mod";
const LOOP_CONTROL: &str = "/dev/loop-control";
const LIO_CONFIGFS: &str = "/sys/kernel/config/target";
const LIO_MODULE: &str = "/sys/module/target_core_mod";
const THIN_MODULE: &str = "/sys/module/dm_thin_pool";
const TGTD: &str = "/usr/sbin/tgtd";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// The ledger fact holding the probe's answer, keyed by [`probe_key`].
pub(crate) const PROBE_FACT: &str = "cinder-storage-probe";
const PROBE_CMD_TIMEOUT: Duration = Duration::from_secs(15);

/// The line of a failed command's output that says why (the first that says
/// "failed", else the last), for a one-line reason.
fn reason_line(e: &crate::system::process::ProcessError) -> String {
    let tail = e.tail();
    tail.iter()
        .find(|l| l.to_lowercase().contains("failed"))
        .or_else(|| tail.last())
        .map_or_else(|| e.to_string(), |l| l.trim().to_owned())
}

fn probe_device_mapper(host: &Host) -> Check {
    let module = Path::new(DM_MODULE).is_dir();
    if Path::new(DM_CONTROL).exists() {
        match host
            .cmd("dmsetup")
            .arg("version")
            .capture()
            .timeout(PROBE_CMD_TIMEOUT)
            .run()
        {
            Ok(out) => {
                let driver = out
                    .stdout
                    .lines()
                    .find(|l| l.starts_with("Driver version"))
                    .map_or_else(|| "dmsetup version".to_owned(), |l| l.trim().to_owned());
                return Ok(format!("{DM_CONTROL} ({driver})"));
            }
            Err(_) if module => {}
            Err(e) => {
                return Err(format!(
                    "no device-mapper (`dmsetup version`: {})",
                    reason_line(&e)
                ));
            }
        }
    }
    if module {
        return Ok("dm_mod is loaded".into());
    }
    Err(format!(
        "no device-mapper ({DM_CONTROL} is missing and dm_mod is not loaded)"
    ))
}

/// A real attach: a 1 MiB sparse file on a free loop device, detached at once
/// (a container may see `/dev/loop-control` and still be refused the attach).
fn probe_loop(host: &Host) -> Check {
    if !Path::new(LOOP_CONTROL).exists() {
        return Err(format!("no loop devices ({LOOP_CONTROL} is missing)"));
    }
    let file =
        std::env::temp_dir().join(format!("devstack-rs-loop-probe.{}.img", std::process::id()));
    let made = fs_err::File::create(&file).and_then(|f| f.set_len(1 << 20));
    if let Err(e) = made {
        return Err(format!("no loop probe file: {e}"));
    }
    let attached = host
        .cmd("losetup")
        .args(["--find", "--show"])
        .arg(&file)
        .capture()
        .timeout(PROBE_CMD_TIMEOUT)
        .run();
    let result = match attached {
        Ok(out) => {
            let dev = out.stdout.trim().to_owned();
            let _ = host
                .cmd("losetup")
                .args(["--detach", &dev])
                .timeout(PROBE_CMD_TIMEOUT)
                .run();
            Ok(format!("a file attached as {dev} and detached"))
        }
        Err(e) => Err(format!("no loop device (losetup: {})", reason_line(&e))),
    };
    let _ = fs_err::remove_file(&file);
    result
}

/// Is a kernel module available to load (`modinfo` finds it)?
fn module_available(host: &Host, module: &str) -> bool {
    host.cmd("modinfo")
        .args(["-n", module])
        .capture()
        .timeout(PROBE_CMD_TIMEOUT)
        .run()
        .is_ok()
}

/// LIO: its configfs directory, or the module that makes it (rtslib loads it and
/// mounts configfs on first use).
fn probe_lio(host: &Host) -> Check {
    if Path::new(LIO_CONFIGFS).is_dir() {
        return Ok(LIO_CONFIGFS.into());
    }
    if Path::new(LIO_MODULE).is_dir() {
        return Ok("target_core_mod is loaded".into());
    }
    if module_available(host, "target_core_mod") {
        return Ok("target_core_mod can be loaded".into());
    }
    Err(format!(
        "no LIO ({LIO_CONFIGFS} is missing and the kernel has no target_core_mod)"
    ))
}

/// tgt: a userspace daemon, so installed or installable is enough.
fn probe_tgt(host: &Host) -> Check {
    if Path::new(TGTD).is_file() {
        return Ok(format!("{TGTD} is installed"));
    }
    let policy = host
        .cmd("apt-cache")
        .args(["policy", "tgt"])
        .capture()
        .timeout(PROBE_CMD_TIMEOUT)
        .run();
    let candidate = policy.ok().and_then(|o| apt_candidate(&o.stdout));
    match candidate {
        Some(v) => Ok(format!("package tgt {v} can be installed")),
        None => Err("no tgt (tgtd is not installed and apt has no tgt package)".into()),
    }
}

/// The `Candidate:` version of `apt-cache policy` output, unless `(none)`.
fn apt_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|l| l.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|v| !v.is_empty() && *v != "(none)")
        .map(str::to_owned)
}

fn probe_thin(host: &Host) -> Check {
    if Path::new(THIN_MODULE).is_dir() {
        return Ok("dm_thin_pool is loaded".into());
    }
    if module_available(host, "dm_thin_pool") {
        return Ok("dm_thin_pool can be loaded".into());
    }
    Err("no dm-thin-pool in the kernel".into())
}

/// Looks at the machine: every need of the LVM backend, each with its reason.
pub(crate) fn probe(host: &Host) -> StorageHost {
    StorageHost {
        device_mapper: probe_device_mapper(host),
        loop_device: probe_loop(host),
        lio: probe_lio(host),
        tgt: probe_tgt(host),
        thin: probe_thin(host),
    }
}

/// The probe's cache key: this boot, and which of the kernel's storage parts are
/// present now (a module loaded since makes a new probe).
pub(crate) fn probe_key() -> String {
    let boot = fs_err::read_to_string(BOOT_ID).unwrap_or_default();
    let present: String = [
        DM_CONTROL,
        DM_MODULE,
        LOOP_CONTROL,
        LIO_CONFIGFS,
        LIO_MODULE,
        THIN_MODULE,
    ]
    .iter()
    .map(|p| if Path::new(p).exists() { '1' } else { '0' })
    .collect();
    format!("{}/{present}", boot.trim())
}

/// The cached answer for `key` (`key\tjson`).
pub(crate) fn cached(fact: Option<&str>, key: &str) -> Option<StorageHost> {
    let (k, json) = fact?.split_once('\t')?;
    if k != key {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// The ledger fact for `answer` under `key`.
pub(crate) fn cache_entry(key: &str, answer: &StorageHost) -> String {
    format!(
        "{key}\t{}",
        serde_json::to_string(answer).expect("plain data serialises")
    )
}

/// What the host offers: the answer kept for this boot, else a new probe (a loop
/// attach, `dmsetup`, `modinfo`, `apt-cache`: cheap, but it touches devices, so
/// once is enough).
pub(crate) fn storage_host(host: &mut Host) -> StorageHost {
    let key = probe_key();
    if let Some(answer) = cached(host.ledger.fact(PROBE_FACT), &key) {
        return answer;
    }
    let answer = probe(host);
    host.note(&format!("cinder: storage probe: {answer:?}"));
    host.ledger.set_fact(PROBE_FACT, cache_entry(&key, &answer));
    host.checkpoint();
    answer
}

/// Which variable the `cinder-default` op fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LibDefault {
    Backends,
    TargetHelper,
    LvmType,
}

/// The lib/ default of a backend variable: the probe's choice where this node runs
/// c-vol, DevStack's own value elsewhere (nothing here has to hold it).
pub(crate) fn default_value(host: &mut Host, which: LibDefault) -> String {
    if !host.settings.is_enabled(&["c-vol"]) {
        return match which {
            LibDefault::Backends => LVM_DEFAULT,
            LibDefault::TargetHelper => TargetHelper::Lio.as_str(),
            LibDefault::LvmType => "auto",
        }
        .to_owned();
    }
    // Without an LVM backend the helper and the type do not matter: no probe.
    let lvm = parse_backends(host.settings.str("CINDER_ENABLED_BACKENDS"))
        .iter()
        .any(|b| b.kind == "lvm");
    if which != LibDefault::Backends && !lvm {
        return match which {
            LibDefault::LvmType => "auto",
            _ => TargetHelper::Lio.as_str(),
        }
        .to_owned();
    }
    let h = storage_host(host);
    match which {
        LibDefault::Backends => h.default_backends(),
        LibDefault::TargetHelper => h.default_target_helper().as_str(),
        LibDefault::LvmType => h.default_lvm_type(),
    }
    .to_owned()
}

/// The lib/ default text that asks the op (`${VAR:-$(...)}` runs it only when the
/// variable is unset). The variables it reads go along.
pub(crate) const fn default_expr(which: LibDefault) -> &'static str {
    match which {
        LibDefault::Backends => {
            "$(_ds_call -v ENABLED_SERVICES -v DISABLED_SERVICES cinder-default backends)"
        }
        LibDefault::TargetHelper => {
            "$(_ds_call -v ENABLED_SERVICES -v DISABLED_SERVICES -v CINDER_ENABLED_BACKENDS cinder-default target-helper)"
        }
        LibDefault::LvmType => {
            "$(_ds_call -v ENABLED_SERVICES -v DISABLED_SERVICES -v CINDER_ENABLED_BACKENDS cinder-default lvm-type)"
        }
    }
}

// ---------------------------------------------------------------------------------
// the LVM backend

/// One backend's volume group and its backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeGroup {
    pub(crate) name: String,
    pub(crate) backing_file: PathBuf,
    /// `truncate -s` syntax (`30G`).
    pub(crate) size: String,
}

/// lib/lvm's names: `$VOLUME_GROUP_NAME-<backend>` on
/// `$DATA_DIR/<vg>$BACKING_FILE_SUFFIX`.
pub(crate) fn volume_group(s: &Settings, backend: &str) -> VolumeGroup {
    let name = format!("{}-{backend}", vars::VOLUME_GROUP_NAME.read(s));
    let file = format!("{name}{}", s.get_or("BACKING_FILE_SUFFIX", "-backing-file"));
    VolumeGroup {
        backing_file: s.path("DATA_DIR").join(file),
        size: vars::VOLUME_BACKING_FILE_SIZE.read(s).to_owned(),
        name,
    }
}

/// The ledger fact listing the volume groups we made (`vg\tbacking file` lines).
pub(crate) const LVM_FACT: &str = "cinder-lvm-volume-groups";

fn recorded_groups(host: &Host) -> Vec<(String, PathBuf)> {
    host.ledger
        .fact(LVM_FACT)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(vg, file)| (vg.to_owned(), PathBuf::from(file)))
        .collect()
}

fn record_group(host: &mut Host, vg: &VolumeGroup) {
    let mut groups = recorded_groups(host);
    if groups.iter().any(|(name, _)| *name == vg.name) {
        return;
    }
    groups.push((vg.name.clone(), vg.backing_file.clone()));
    set_groups(host, &groups);
}

fn set_groups(host: &mut Host, groups: &[(String, PathBuf)]) {
    if groups.is_empty() {
        host.ledger.forget_fact(LVM_FACT);
    } else {
        let text: Vec<String> = groups
            .iter()
            .map(|(vg, file)| format!("{vg}\t{}", file.display()))
            .collect();
        host.ledger.set_fact(LVM_FACT, text.join("\n"));
    }
    host.checkpoint();
}

fn failed(what: String) -> impl FnOnce(crate::system::process::ProcessError) -> ServiceError {
    move |source| ServiceError::Process {
        service: SERVICE.into(),
        what,
        source,
    }
}

/// Does LVM know volume group `vg`?
fn vg_exists(host: &Host, vg: &str) -> bool {
    host.cmd("vgs")
        .arg(vg)
        .capture()
        .timeout(PROBE_CMD_TIMEOUT)
        .run()
        .is_ok()
}

/// The loop devices `file` is attached to (`losetup --associated`).
fn loop_devices(host: &Host, file: &Path) -> Vec<String> {
    host.cmd("losetup")
        .arg("--associated")
        .arg(file)
        .capture()
        .allow_failure()
        .timeout(PROBE_CMD_TIMEOUT)
        .run()
        .map(|o| parse_associated(&o.stdout))
        .unwrap_or_default()
}

/// `/dev/loop0: []: (/path)` lines → the devices.
fn parse_associated(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(dev, _)| dev.trim().to_owned())
        .filter(|d| d.starts_with("/dev/"))
        .collect()
}

/// lib/lvm's `_create_lvm_volume_group`: the sparse backing file, a loop device on
/// it, the volume group; each step only when missing, so a re-stack (or one after
/// a reboot, when the loop device is gone) finds the group.
fn ensure_volume_group(host: &mut Host, vg: &VolumeGroup) -> Result<(), ServiceError> {
    if !vg.backing_file.exists() {
        if let Some(dir) = vg.backing_file.parent() {
            oslo::make_dir(host, SERVICE, dir)?;
        }
        host.cmd("truncate")
            .args(["-s", &vg.size])
            .arg(&vg.backing_file)
            .timeout(PROBE_CMD_TIMEOUT)
            .run()
            .map_err(failed(format!(
                "creating the backing file {}",
                vg.backing_file.display()
            )))?;
    }
    record_group(host, vg);
    let attached = loop_devices(host, &vg.backing_file).into_iter().next();
    let device = if let Some(dev) = attached {
        dev
    } else {
        let out = host
            .cmd("losetup")
            .args(["--find", "--show"])
            .arg(&vg.backing_file)
            .capture()
            .timeout(PROBE_CMD_TIMEOUT)
            .run()
            .map_err(failed(format!(
                "attaching {} to a loop device",
                vg.backing_file.display()
            )))?;
        out.stdout.trim().to_owned()
    };
    if vg_exists(host, &vg.name) {
        host.note(&format!(
            "cinder: volume group {} found on {device}",
            vg.name
        ));
        return Ok(());
    }
    host.cmd("vgcreate")
        .args([&vg.name, &device])
        .timeout(Duration::from_secs(60))
        .run()
        .map_err(failed(format!("vgcreate {} {device}", vg.name)))?;
    host.note(&format!(
        "cinder: volume group {} created on {device} ({}, {})",
        vg.name,
        vg.backing_file.display(),
        vg.size
    ));
    Ok(())
}

/// lib/lvm's `init_lvm_volume_group` for each LVM backend, then lvm.conf's filter:
/// the groups exist, stale targets of ours are gone and so are the logical volumes
/// (a re-stack's new database knows none of them).
pub(crate) fn init(host: &mut Host, choice: &Choice) -> Result<(), ServiceError> {
    // A filter from an earlier boot names the loop device of then: without it
    // LVM sees the backing file's device, whatever its number now.
    set_lvm_filter_text(host, None)?;
    let s = host.settings.clone();
    for name in choice.lvm_names() {
        let vg = volume_group(&s, name);
        ensure_volume_group(host, &vg)?;
        remove_stale_targets(host, choice.target_helper);
        let _ = host
            .cmd("lvremove")
            .args(["-f", &vg.name])
            .timeout(Duration::from_secs(120))
            .run();
    }
    let pvs = host
        .cmd("pvs")
        .args(["--noheadings", "-o", "name"])
        .capture()
        .timeout(PROBE_CMD_TIMEOUT)
        .run()
        .map_err(failed("listing LVM's physical volumes".into()))?;
    let devices: Vec<&str> = pvs.stdout.split_whitespace().collect();
    let line = filter_line(&devices);
    set_lvm_filter_text(host, Some(&line))?;
    host.note(&format!("cinder: lvm.conf device global_filter: {line}"));
    Ok(())
}

/// Our iSCSI targets (named with cinder's prefix) that a crashed or earlier c-vol
/// left: they hold the logical volumes open.
fn remove_stale_targets(host: &Host, helper: TargetHelper) {
    match helper {
        TargetHelper::Lio => {
            let rtstool = crate::system::python::venv_bin(&host.settings, "cinder-rtstool");
            if !rtstool.is_file() {
                return;
            }
            let Ok(out) = host
                .cmd(&rtstool)
                .arg("get-targets")
                .capture()
                .timeout(PROBE_CMD_TIMEOUT)
                .run()
            else {
                return;
            };
            for iqn in out.stdout.split_whitespace() {
                if iqn.starts_with(TARGET_PREFIX) {
                    let _ = host
                        .cmd(&rtstool)
                        .args(["delete", iqn])
                        .timeout(PROBE_CMD_TIMEOUT)
                        .run();
                }
            }
        }
        TargetHelper::Tgt => {
            let Ok(out) = host
                .cmd("tgtadm")
                .args(["--lld", "iscsi", "--mode", "target", "--op", "show"])
                .capture()
                .timeout(PROBE_CMD_TIMEOUT)
                .run()
            else {
                // No tgtd running: no targets.
                return;
            };
            for tid in tgt_target_ids(&out.stdout, TARGET_PREFIX) {
                let _ = host
                    .cmd("tgtadm")
                    .args(["--lld", "iscsi", "--mode", "target", "--op", "delete"])
                    .args(["--force", "--tid", &tid])
                    .timeout(PROBE_CMD_TIMEOUT)
                    .run();
            }
        }
    }
}

/// The ids of `tgtadm --op show --mode target`'s targets named with `prefix`
/// (`Target 1: iqn.…` lines).
fn tgt_target_ids(show: &str, prefix: &str) -> Vec<String> {
    show.lines()
        .filter_map(|l| l.strip_prefix("Target "))
        .filter_map(|l| l.split_once(": "))
        .filter(|(_, iqn)| iqn.trim().starts_with(prefix))
        .map(|(tid, _)| tid.trim().to_owned())
        .collect()
}

/// Clean: our volume groups go (their logical volumes with them), their loop
/// devices are detached and their backing files removed (lib/lvm's
/// `clean_lvm_volume_group`), then lvm.conf's filter.
pub(crate) fn clean(host: &mut Host, helper: TargetHelper) {
    let groups = recorded_groups(host);
    if !groups.is_empty() {
        remove_stale_targets(host, helper);
    }
    let mut left = Vec::new();
    for (vg, file) in groups {
        if vg_exists(host, &vg) {
            let removed = host
                .cmd("vgremove")
                .args(["-f", &vg])
                .timeout(Duration::from_secs(120))
                .run();
            if let Err(e) = removed {
                host.warn(&format!(
                    "cinder: volume group {vg} could not be removed: {e}; its backing file {} is kept",
                    file.display()
                ));
                left.push((vg, file));
                continue;
            }
        }
        for dev in loop_devices(host, &file) {
            let _ = host
                .cmd("losetup")
                .args(["--detach", &dev])
                .timeout(PROBE_CMD_TIMEOUT)
                .run();
        }
        let _ = fs_err::remove_file(&file);
        host.note(&format!(
            "cinder: volume group {vg} removed with {}",
            file.display()
        ));
    }
    set_groups(host, &left);
    if left.is_empty() {
        let _ = set_lvm_filter_text(host, None);
    }
}

// ---------------------------------------------------------------------------------
// lvm.conf

const LVM_CONF: &str = "/etc/lvm/lvm.conf";
/// The end of every line DevStack's `set_lvm_filter` writes (`clean_lvm_filter`
/// removes the lines ending so).
const FILTER_MARK: &str = "# from devstack";

/// DevStack's `set_lvm_filter` line: each PV LVM knows accepted (its name without
/// `/dev/`), everything else rejected, so LVM scans no guest's volume group inside
/// a cinder volume.
pub(crate) fn filter_line(pvs: &[&str]) -> String {
    let mut line = String::from("global_filter = [ ");
    for pv in pvs {
        let pv = pv.trim().replace("/dev/", "");
        let _ = write!(line, "\"a|{pv}|\", ");
    }
    line.push_str("\"r|.*|\" ]  ");
    line.push_str(FILTER_MARK);
    line
}

/// lvm.conf with our filter lines removed and, with `line`, `line` added after the
/// commented example `# global_filter = [ … ]`, where DevStack's `sed … a\` puts
/// it. None: there is no such example (an lvm.conf not Debian's), nothing to do.
pub(crate) fn with_filter(conf: &str, line: Option<&str>) -> Option<String> {
    let mut out = String::with_capacity(conf.len() + 80);
    let mut placed = line.is_none();
    for l in conf.lines() {
        if l.trim_end().ends_with(FILTER_MARK) {
            continue;
        }
        out.push_str(l);
        out.push('\n');
        let example = l.trim_start().strip_prefix("# global_filter = [");
        if let (false, Some(rest), Some(line)) = (placed, example, line) {
            if rest.trim_end().ends_with(']') {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
                placed = true;
            }
        }
    }
    placed.then_some(out)
}

/// Writes lvm.conf with our filter `line`, or without any (None).
fn set_lvm_filter_text(host: &mut Host, line: Option<&str>) -> Result<(), ServiceError> {
    let path = Path::new(LVM_CONF);
    let Ok(old) = fs_err::read_to_string(path) else {
        return Ok(());
    };
    match with_filter(&old, line) {
        Some(new) if new != old => fs_err::write(path, new).map_err(|source| ServiceError::Io {
            service: SERVICE.into(),
            path: path.to_path_buf(),
            source,
        }),
        Some(_) => Ok(()),
        None => {
            host.warn(&format!(
                "cinder: {LVM_CONF} has no `# global_filter = [...]` example line; the device filter is not set"
            ));
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------------
// tgtd

/// tgt's include of cinder's target files: cinder's `TgtAdm` writes one file per
/// volume into `$state_path/volumes` and runs `tgt-admin --update`, which reads
/// `/etc/tgt/targets.conf` and its `conf.d` (DevStack writes the same file; clean
/// removes `/etc/tgt/conf.d/*`).
/// (`CINDER_TGT_CONF` moves it, for tests.)
pub(crate) const TGT_CONF: &str = "/etc/tgt/conf.d/stack.conf";

pub(crate) fn tgt_conf_text(volumes_dir: &Path) -> String {
    format!("include {}/*\n", volumes_dir.display())
}

/// tgt's `tgtd`: the distro's `tgt` unit under systemd, else ours in the
/// foreground, its portal on `HOST_IP` only (it listens on every address
/// otherwise).
pub(crate) struct Tgtd;

fn portal(s: &Settings) -> String {
    s.get_or("HOST_IP", "127.0.0.1").to_owned()
}

impl Daemon for Tgtd {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: "tgtd",
            unit: "tgt",
            probe_what: "tgtadm --mode system --op show",
        }
    }
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>) {
        (portal(settings), vec![TARGET_PORT])
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let ip = portal(&host.settings);
        let addr = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip
        };
        Ok(ProcessSpec {
            name: "tgtd".into(),
            command: format!("exec {TGTD} -f --iscsi portal={addr}:{TARGET_PORT}"),
            log: daemon::daemon_log(&host.settings, "tgtd"),
            workdir: Some("/".into()),
            address: Some(format!("{addr}:{TARGET_PORT}")),
            ..ProcessSpec::default()
        })
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        daemon::probe_cmd(
            &host
                .cmd("tgtadm")
                .args(["--lld", "iscsi", "--mode", "system", "--op", "show"]),
        )
    }
}

/// Starts tgtd (reused when one already answers: Debian's package may have
/// started its own).
pub(crate) fn start_tgtd(host: &mut Host) -> Result<(), ServiceError> {
    if !daemon::use_systemctl()
        && daemon::running(host, "tgtd").is_none()
        && Tgtd.probe(host).is_ok()
    {
        host.note("cinder: a tgtd of the system already answers; using it");
        return Ok(());
    }
    daemon::start(host, &Tgtd)
}

/// Stops our tgtd: it ignores SIGTERM, so it is asked to shut down first.
pub(crate) fn stop_tgtd(host: &mut Host) -> Result<(), ServiceError> {
    let ours = daemon::recorded(host, "tgtd").is_some() || host.ledger.has_system_service("tgtd");
    if !ours {
        return Ok(());
    }
    if !daemon::use_systemctl() {
        let _ = host
            .cmd("tgtadm")
            .args(["--lld", "iscsi", "--mode", "system", "--op", "delete"])
            .timeout(PROBE_CMD_TIMEOUT)
            .run();
    }
    daemon::stop(host, &Tgtd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A need that is met (`ok`) or missing (`no`), with its words.
    fn check(met: bool, words: &str) -> Check {
        if met {
            Ok(words.into())
        } else {
            Err(words.into())
        }
    }

    fn ok(s: &str) -> Check {
        check(true, s)
    }

    fn no(s: &str) -> Check {
        check(false, s)
    }

    /// A host with everything LVM needs (LIO and tgt, thin pools).
    fn capable() -> StorageHost {
        StorageHost {
            device_mapper: ok("/dev/mapper/control"),
            loop_device: ok("loop0"),
            lio: ok("/sys/kernel/config/target"),
            tgt: ok("tgtd"),
            thin: ok("dm_thin_pool"),
        }
    }

    /// This project's machine: no device-mapper, no LIO, loop and tgt work.
    fn no_device_mapper() -> StorageHost {
        StorageHost {
            device_mapper: no("no device-mapper (/dev/mapper/control is missing)"),
            lio: no("no LIO"),
            thin: no("no dm-thin-pool"),
            ..capable()
        }
    }

    fn req(backends: &str) -> Request<'_> {
        Request {
            backends,
            ..Request::default()
        }
    }

    #[test]
    fn a_capable_host_gets_devstacks_lvm_default_with_lio() {
        let c = choose(&req(""), Some(&capable())).unwrap();
        assert_eq!(c.spec, "lvm:lvmdriver-1");
        assert_eq!(c.target_helper, TargetHelper::Lio);
        assert_eq!(c.lvm_type, "auto");
        assert_eq!(c.lvm_names().collect::<Vec<_>>(), ["lvmdriver-1"]);
        assert!(
            c.summary.contains("device-mapper, loop devices and LIO"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn without_lio_the_target_is_tgt_and_without_thin_lvs_are_thick() {
        let h = StorageHost {
            lio: no("no LIO"),
            thin: no("no dm-thin-pool"),
            ..capable()
        };
        assert_eq!(h.default_backends(), LVM_DEFAULT);
        let c = choose(&req(""), Some(&h)).unwrap();
        assert_eq!(c.target_helper, TargetHelper::Tgt);
        assert_eq!(c.lvm_type, "default");
        assert!(c.summary.contains("iSCSI target tgtadm"), "{}", c.summary);
    }

    #[test]
    fn a_host_without_device_mapper_gets_nfs_and_says_why() {
        let h = no_device_mapper();
        assert_eq!(h.default_backends(), NFS_DEFAULT);
        let c = choose(&req(""), Some(&h)).unwrap();
        assert_eq!(c.spec, "nfs:nfs");
        assert!(!c.has("lvm"));
        assert_eq!(
            c.summary,
            "backends nfs:nfs (NFS on a local export: LVM cannot work here: \
             no device-mapper (/dev/mapper/control is missing))"
        );
        // The probe's default reaches configure as the variable's value: the same
        // explanation.
        assert_eq!(
            choose(&req("nfs:nfs"), Some(&h)).unwrap().summary,
            c.summary
        );
    }

    #[test]
    fn every_missing_part_is_named() {
        let h = StorageHost {
            device_mapper: no("no device-mapper"),
            loop_device: no("no loop device"),
            lio: no("no LIO"),
            tgt: no("no tgt"),
            thin: no("no thin"),
        };
        assert_eq!(
            h.lvm_missing(),
            [
                "no device-mapper",
                "no loop device",
                "no iSCSI target (no LIO; no tgt)"
            ]
        );
        // One target is enough.
        assert!(capable().lvm_missing().is_empty());
        let only_lio = StorageHost {
            tgt: no("no tgt"),
            ..capable()
        };
        assert!(only_lio.lvm_missing().is_empty());
    }

    #[test]
    fn an_explicit_lvm_on_a_host_that_cannot_is_an_error_naming_what_is_missing() {
        let err = choose(&req("lvm:lvmdriver-1"), Some(&no_device_mapper())).unwrap_err();
        assert_eq!(
            err,
            "CINDER_ENABLED_BACKENDS=lvm:lvmdriver-1 asks for LVM, which cannot work on \
             this host: no device-mapper (/dev/mapper/control is missing)"
        );
        // Also among others.
        let err = choose(&req("nfs:nfs,lvm:lvmdriver-1"), Some(&no_device_mapper())).unwrap_err();
        assert!(err.contains("no device-mapper"), "{err}");
    }

    #[test]
    fn an_explicit_choice_is_kept_and_said_so() {
        let c = choose(&req("nfs:nfs-1"), Some(&capable())).unwrap();
        assert_eq!(c.backends, parse_backends("nfs:nfs-1"));
        assert_eq!(
            c.summary,
            "backends nfs:nfs-1 (NFS on a local export: as CINDER_ENABLED_BACKENDS says)"
        );
        let c = choose(&req("lvm:lvmdriver-1,nfs:nfs-1"), Some(&capable())).unwrap();
        assert!(c.has("lvm") && c.has("nfs"));
        assert!(
            c.summary.contains("LVM, iSCSI target lioadm and NFS"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn an_explicit_target_helper_or_lvm_type_the_host_lacks_is_an_error() {
        let h = StorageHost {
            lio: no("no LIO (no target_core_mod)"),
            thin: no("no dm-thin-pool in the kernel"),
            ..capable()
        };
        let r = Request {
            backends: "lvm:lvmdriver-1",
            target_helper: "lioadm",
            lvm_type: "",
        };
        assert_eq!(
            choose(&r, Some(&h)).unwrap_err(),
            "CINDER_TARGET_HELPER=lioadm cannot work on this host: no LIO (no target_core_mod)"
        );
        let r = Request {
            target_helper: "tgtadm",
            lvm_type: "thin",
            ..r
        };
        assert!(
            choose(&r, Some(&h))
                .unwrap_err()
                .contains("CINDER_LVM_TYPE=thin")
        );
        let r = Request {
            target_helper: "nvmet",
            ..r
        };
        assert!(
            choose(&r, Some(&h))
                .unwrap_err()
                .contains("CINDER_TARGET_HELPER=nvmet")
        );
        // With NFS only, the helper and type do not matter.
        let r = Request {
            backends: "nfs:nfs",
            target_helper: "lioadm",
            lvm_type: "thin",
        };
        assert!(choose(&r, Some(&h)).is_ok());
    }

    #[test]
    fn backend_types_we_do_not_build_go_to_the_shells_convention() {
        let c = choose(&req("ceph:ceph,lvm:lvmdriver-1"), Some(&capable())).unwrap();
        let shell: Vec<&str> = c
            .backends
            .iter()
            .filter(|b| b.in_shell())
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(shell, ["ceph"]);
        assert!(c.has("lvm"));
    }

    #[test]
    fn without_a_volume_service_nothing_is_checked() {
        let c = choose(&req("lvm:lvmdriver-1"), None).unwrap();
        assert!(c.has("lvm"));
        assert!(c.summary.contains("no c-vol on this node"), "{}", c.summary);
        assert_eq!(choose(&req(""), None).unwrap().spec, LVM_DEFAULT);
    }

    #[test]
    fn backends_follow_devstack_syntax() {
        assert_eq!(
            parse_backends("lvm:lvmdriver-1, nfs:nfs,ceph"),
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
        assert!(parse_backends("").is_empty());
    }

    #[test]
    fn the_probe_answer_is_reused_only_for_the_same_boot_and_kernel_parts() {
        let entry = cache_entry("boot-1/100000", &no_device_mapper());
        assert_eq!(
            cached(Some(&entry), "boot-1/100000"),
            Some(no_device_mapper())
        );
        // dm_mod loaded since, or a reboot: probe again.
        assert_eq!(cached(Some(&entry), "boot-1/110000"), None);
        assert_eq!(cached(Some(&entry), "boot-2/100000"), None);
        assert_eq!(cached(None, "boot-1/100000"), None);
        assert_eq!(
            cached(Some("boot-1/100000\tnot json"), "boot-1/100000"),
            None
        );
    }

    #[test]
    fn volume_groups_have_devstacks_names() {
        let s = Settings::from_pairs(&[("DATA_DIR", "/opt/stack/data")]);
        assert_eq!(
            volume_group(&s, "lvmdriver-1"),
            VolumeGroup {
                name: "stack-volumes-lvmdriver-1".into(),
                backing_file: "/opt/stack/data/stack-volumes-lvmdriver-1-backing-file".into(),
                size: "30G".into(),
            }
        );
        let s = Settings::from_pairs(&[
            ("DATA_DIR", "/d"),
            ("VOLUME_GROUP_NAME", "vg"),
            ("BACKING_FILE_SUFFIX", ".img"),
            ("VOLUME_BACKING_FILE_SIZE", "24G"),
        ]);
        let vg = volume_group(&s, "b");
        assert_eq!(vg.name, "vg-b");
        assert_eq!(vg.backing_file, Path::new("/d/vg-b.img"));
        assert_eq!(vg.size, "24G");
    }

    /// Debian's lvm.conf around the example line (bookworm's lvm2 2.03.16).
    const LVM_CONF_EXCERPT: &str = "devices {\n\
        \t# Example\n\
        \t# Accept every block device:\n\
        \t# global_filter = [ \"a|.*|\" ]\n\
        \t# This configuration option has an automatic default value.\n\
        }\n";

    #[test]
    fn the_lvm_filter_is_devstacks_line_after_the_example_and_cleans_away() {
        let line = filter_line(&["/dev/loop0", " /dev/sda2 "]);
        assert_eq!(
            line,
            "global_filter = [ \"a|loop0|\", \"a|sda2|\", \"r|.*|\" ]  # from devstack"
        );
        let set = with_filter(LVM_CONF_EXCERPT, Some(&line)).unwrap();
        assert_eq!(
            set,
            "devices {\n\
             \t# Example\n\
             \t# Accept every block device:\n\
             \t# global_filter = [ \"a|.*|\" ]\n    \
             global_filter = [ \"a|loop0|\", \"a|sda2|\", \"r|.*|\" ]  # from devstack\n\
             \t# This configuration option has an automatic default value.\n\
             }\n"
        );
        // Set again with another device: one line, the new one.
        let line2 = filter_line(&["/dev/loop3"]);
        let again = with_filter(&set, Some(&line2)).unwrap();
        assert_eq!(again.matches(FILTER_MARK).count(), 1);
        assert!(again.contains("a|loop3|") && !again.contains("a|loop0|"));
        // Clean: as before.
        assert_eq!(with_filter(&again, None).unwrap(), LVM_CONF_EXCERPT);
        // No example line to follow: nothing is written.
        assert_eq!(with_filter("devices {\n}\n", Some(&line)), None);
    }

    #[test]
    fn loop_and_target_listings_are_read() {
        assert_eq!(
            parse_associated(
                "/dev/loop0: []: (/opt/stack/data/stack-volumes-lvmdriver-1-backing-file)\n\
                 /dev/loop7: [2049]:1234 (/opt/stack/data/stack-volumes-lvmdriver-1-backing-file)\n"
            ),
            ["/dev/loop0", "/dev/loop7"]
        );
        assert!(parse_associated("").is_empty());
        let show = "Target 1: iqn.2010-10.org.openstack:volume-1\n    System information:\n\
                    Target 2: iqn.2003-01.org.example:other\n\
                    Target 12: iqn.2010-10.org.openstack:volume-2\n";
        assert_eq!(tgt_target_ids(show, TARGET_PREFIX), ["1", "12"]);
        assert_eq!(
            apt_candidate("tgt:\n  Installed: (none)\n  Candidate: 1:1.0.85-1+deb12u1\n"),
            Some("1:1.0.85-1+deb12u1".into())
        );
        assert_eq!(
            apt_candidate("tgt:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
    }

    #[test]
    fn tgtd_serves_its_portal_on_host_ip_only() {
        let (_dir, host) = crate::context::test_host(Settings::from_pairs(&[
            ("HOST_IP", "10.0.0.5"),
            ("LOGDIR", "/tmp/logs"),
        ]));
        let spec = Tgtd.spec(&host).unwrap();
        assert_eq!(
            spec.command,
            "exec /usr/sbin/tgtd -f --iscsi portal=10.0.0.5:3260"
        );
        assert_eq!(Tgtd.listen(&host.settings), ("10.0.0.5".into(), vec![3260]));
        assert_eq!(
            tgt_conf_text(Path::new("/opt/stack/data/cinder/volumes")),
            "include /opt/stack/data/cinder/volumes/*\n"
        );
    }
}
