//! nova's libvirt driver on this machine: the work behind
//! `lib/nova_plugins/hypervisor-libvirt`'s five functions.
//!
//! - install: libvirt and QEMU from Debian (`qemu-system-x86` from the backports
//!   suite of the configured mirror: bookworm's Breaks the backports `qemu-utils`
//!   this machine kind ships), the `libvirt` Python module in the venv (built from
//!   `libvirt-python` against the installed libvirt), the test image.
//! - configure: `[libvirt] virt_type` is `kvm` only when a guest really boots under
//!   KVM (a bounded boot of the test image, once per kernel and QEMU version, kept
//!   in the ledger): `/dev/kvm` exists on nested paravirtual hosts where KVM guests
//!   fail. `LIBVIRT_TYPE` in localrc overrides. nova.conf gets the driver.
//! - start: `/dev/kvm` group-readable (mode 0600 makes libvirt re-probe QEMU on
//!   every call: 52 s per `virsh define` here), the default network kept from
//!   autostarting, then virtlogd and libvirtd as [`Daemon`]s.
//! - stop: our guests destroyed (QEMU runs in its own session: stopping libvirtd
//!   or nova-compute leaves it running), then libvirtd and virtlogd.
//! - cleanup: our guests undefined, their logs removed, `/dev/kvm` as it was.
//!
//! "Our" guests: nova's (their XML carries nova's metadata namespace) and the
//! project's own test domains (`devstack-rs-*`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::settings::Settings;
use crate::context::Host;
use crate::services::daemon::{self, Daemon};
use crate::services::{ServiceError, images};
use crate::system::process::{Cmd, LineSink, Stream};
use crate::system::supervisor::ProcessSpec;

pub(crate) const NAME: &str = "libvirt";
pub(crate) const URI: &str = "qemu:///system";
/// Packages from the release itself.
pub(crate) const PACKAGES: &[&str] = &[
    "libvirt-daemon-system",
    "libvirt-clients",
    // libvirt-python is built against these in the venv.
    "libvirt-dev",
    "pkg-config",
    // nova builds the config drive ISO with it.
    "genisoimage",
];
/// Packages taken from `<codename>-backports` (they must match each other).
pub(crate) const BACKPORTS_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils"];
/// Domains of ours that nova did not make are named so.
pub(crate) const TEST_DOMAIN_PREFIX: &str = "devstack-rs-";
const NOVA_XMLNS: &str = "http://openstack.org/xmlns/libvirt/nova/";
/// The ledger fact holding the KVM probe's answer, keyed by kernel and QEMU.
pub(crate) const PROBE_FACT: &str = "libvirt-virt-type";
/// The ledger fact holding the virt type nova was configured with, and why (for
/// `devstack status`).
pub(crate) const IN_USE_FACT: &str = "libvirt-virt-type-in-use";
/// The ledger fact holding `/dev/kvm`'s mode and group before we changed them.
const KVM_MODE_FACT: &str = "libvirt-dev-kvm-mode";
const DEV_KVM: &str = "/dev/kvm";
/// The KVM probe boots the test image for at most this long (TCG takes ~7 s to
/// the login prompt, a working KVM 1-3 s).
const KVM_PROBE_LIMIT: Duration = Duration::from_secs(30);
/// libvirtd's first start probes QEMU's capabilities: 12 s idle, 76 s measured on
/// this machine under load.
const LIBVIRTD_FIRST_START: Duration = Duration::from_secs(240);
const VIRSH_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_NETWORK_AUTOSTART: &str = "/etc/libvirt/qemu/networks/autostart/default.xml";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError {
    let path = path.to_path_buf();
    move |source| ServiceError::Io {
        service: NAME.into(),
        path,
        source,
    }
}

// ---------------------------------------------------------------------------------
// install

/// The deb822 stanza for `<codename>-backports`, from the stanza of the configured
/// mirror that carries `<codename>` itself (same URIs and key). None when no such
/// stanza is found, or when a stanza already has the backports suite.
pub(crate) fn backports_stanza(sources: &str, codename: &str) -> Option<String> {
    let backports = format!("{codename}-backports");
    let stanzas: Vec<&str> = sources.split("\n\n").collect();
    let field = |stanza: &str, name: &str| -> Option<String> {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(|v| v.trim().to_owned())
    };
    if stanzas
        .iter()
        .any(|s| field(s, "Suites").is_some_and(|v| v.split_whitespace().any(|x| x == backports)))
    {
        return None;
    }
    let main = stanzas.iter().find(|s| {
        field(s, "Suites").is_some_and(|v| v.split_whitespace().any(|x| x == codename))
            && field(s, "Types").is_some_and(|t| t.split_whitespace().any(|x| x == "deb"))
    })?;
    let uris = field(main, "URIs")?;
    let mut out = format!("Types: deb\nURIs: {uris}\nSuites: {backports}\nComponents: main\n");
    if let Some(key) = field(main, "Signed-By") {
        let _ = writeln!(out, "Signed-By: {key}");
    }
    Some(out)
}

/// The release's codename (`bookworm`).
fn codename() -> Option<String> {
    let text = fs_err::read_to_string("/etc/os-release").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_owned())
}

/// Adds `<codename>-backports` of the configured mirror, once (kept by clean, as
/// the packages are).
fn ensure_backports(host: &mut Host) -> Result<Option<String>, ServiceError> {
    let Some(codename) = codename() else {
        return Ok(None);
    };
    let backports = format!("{codename}-backports");
    let mut all = String::new();
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(rd) = fs_err::read_dir("/etc/apt/sources.list.d") {
        files.extend(rd.filter_map(Result::ok).map(|e| e.path()));
    }
    for f in &files {
        let text = fs_err::read_to_string(f).unwrap_or_default();
        // A one-line source of the suite counts too.
        if text.lines().any(|l| {
            !l.trim_start().starts_with('#') && l.split_whitespace().any(|w| w == backports)
        }) {
            return Ok(Some(backports));
        }
        if f.extension().is_some_and(|e| e == "sources") {
            all.push_str(&text);
            all.push_str("\n\n");
        }
    }
    let Some(stanza) = backports_stanza(&all, &codename) else {
        host.warn(&format!(
            "libvirt: no deb822 source of {codename} found to derive {backports} from; \
             installing QEMU from {codename}"
        ));
        return Ok(None);
    };
    let path = PathBuf::from(format!("/etc/apt/sources.list.d/{backports}.sources"));
    fs_err::write(&path, stanza).map_err(io(&path))?;
    host.note(&format!("libvirt: added {}", path.display()));
    // The lists must learn the new suite.
    host.apt_updated = false;
    Ok(Some(backports))
}

fn package_err(source: crate::system::packages::PackageError) -> ServiceError {
    ServiceError::caused(NAME, "installing libvirt and QEMU", source)
}

/// Is the `libvirt` module importable in the venv?
fn venv_has_libvirt(host: &Host) -> bool {
    let python = crate::system::python::venv_bin(&host.settings, "python3");
    python.is_file()
        && host
            .cmd(&python)
            .args(["-c", "import libvirt"])
            .capture()
            .timeout(Duration::from_secs(30))
            .run()
            .is_ok()
}

/// install_nova_hypervisor.
pub(crate) fn install(host: &mut Host) -> Result<(), ServiceError> {
    install_libvirt(host)?;
    // The KVM probe boots it; the images step uploads it.
    images::ensure_built(host)?;
    Ok(())
}

/// DevStack's `install_libvirt` (lib/nova_plugins/functions-libvirt): libvirt and
/// QEMU, and the libvirt Python module in the venv.
pub(crate) fn install_libvirt(host: &mut Host) -> Result<(), ServiceError> {
    install_packages(host)?;
    if !venv_has_libvirt(host) {
        let reqs = [crate::system::python::Req::Pypi("libvirt-python".into())];
        crate::system::python::install(&mut host.machine(), &reqs, false)
            .map_err(|e| ServiceError::caused(NAME, "installing libvirt-python", e))?;
    }
    Ok(())
}

/// libvirt and QEMU from Debian, QEMU from the backports suite.
pub(crate) fn install_packages(host: &mut Host) -> Result<(), ServiceError> {
    let target = ensure_backports(host)?;
    let back: Vec<String> = BACKPORTS_PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    let missing: Vec<String> = {
        let m = host.machine();
        let have = crate::system::packages::installed(&m, &back);
        back.iter()
            .filter(|p| !have.contains(*p))
            .cloned()
            .collect()
    };
    if !missing.is_empty() {
        // Both together from backports: a lone qemu-system-x86 would not match a
        // qemu-utils of another release.
        crate::system::packages::install_from(&mut host.machine(), &back, target.as_deref())
            .map_err(package_err)?;
    }
    let pkgs: Vec<String> = PACKAGES.iter().map(|p| (*p).to_owned()).collect();
    crate::system::packages::install(&mut host.machine(), &pkgs).map_err(package_err)?;
    Ok(())
}

// ---------------------------------------------------------------------------------
// KVM or QEMU

/// What the KVM probe saw.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProbeOutcome {
    /// No `/dev/kvm`, or it cannot be opened.
    NoDevice(String),
    /// The login prompt appeared after this many seconds.
    Booted(f64),
    /// QEMU said KVM failed (internal error, emulation failure, MSR abort) or exited.
    Failed(String),
    /// No login prompt within the limit.
    TimedOut,
}

/// `[libvirt] virt_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VirtType {
    Kvm,
    Qemu,
}

impl VirtType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Kvm => "kvm",
            Self::Qemu => "qemu",
        }
    }
}

/// KVM only when a guest really booted under it.
pub(crate) fn verdict(outcome: &ProbeOutcome) -> VirtType {
    match outcome {
        ProbeOutcome::Booted(_) => VirtType::Kvm,
        _ => VirtType::Qemu,
    }
}

/// Why, in a few words (terminal, status).
pub(crate) fn describe(outcome: &ProbeOutcome) -> String {
    match outcome {
        ProbeOutcome::NoDevice(why) => format!("no usable /dev/kvm ({why})"),
        ProbeOutcome::Booted(s) => format!("a KVM guest booted to its login prompt in {s:.1} s"),
        ProbeOutcome::Failed(why) => format!("KVM failed: {why}"),
        ProbeOutcome::TimedOut => format!(
            "no login prompt under KVM within {} s",
            KVM_PROBE_LIMIT.as_secs()
        ),
    }
}

/// Lines of QEMU's output that mean KVM cannot run this guest.
pub(crate) fn kvm_failure(line: &str) -> bool {
    [
        "KVM internal error",
        "emulation failure",
        "failed to set MSR",
        "Assertion",
        "failed to initialize kvm",
        "Could not access KVM kernel module",
    ]
    .iter()
    .any(|m| line.contains(m))
}

/// `nova.conf`'s CPU mode for a virt type: QEMU's own model under TCG (`none`;
/// host-model aborts here), the host's CPU under a KVM that passed the probe (it
/// ran with `-cpu host`). `LIBVIRT_CPU_MODE` overrides.
pub(crate) fn cpu_mode(virt: VirtType, user: &str) -> String {
    if !user.is_empty() {
        return user.to_owned();
    }
    match virt {
        VirtType::Kvm => "host-passthrough".into(),
        VirtType::Qemu => "none".into(),
    }
}

/// The probe cache key: the host kernel and the QEMU build.
fn probe_key(host: &Host) -> String {
    let kernel = fs_err::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = host
        .cmd("qemu-system-x86_64")
        .arg("--version")
        .capture()
        .timeout(Duration::from_secs(30))
        .run()
        .map(|o| o.stdout.lines().next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    format!("{} / {}", kernel.trim(), qemu.trim())
}

/// Reads the cached answer for `key` (`key\tvirt_type\treason`).
pub(crate) fn cached(fact: Option<&str>, key: &str) -> Option<(VirtType, String)> {
    let mut parts = fact?.splitn(3, '\t');
    if parts.next()? != key {
        return None;
    }
    let virt = match parts.next()? {
        "kvm" => VirtType::Kvm,
        "qemu" => VirtType::Qemu,
        _ => return None,
    };
    Some((virt, parts.next().unwrap_or_default().to_owned()))
}

/// Forwards QEMU's lines to the run log and notes the first KVM failure.
struct ProbeSink {
    inner: Arc<crate::ui::log::RunLog>,
    failure: Mutex<Option<String>>,
}

impl LineSink for ProbeSink {
    fn line(&self, source: &str, stream: Stream, line: &str) {
        if kvm_failure(line) {
            let mut f = self
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f.get_or_insert_with(|| line.trim().to_owned());
        }
        self.inner.line(source, stream, line);
    }
    fn note(&self, text: &str) {
        LineSink::note(&*self.inner, text);
    }
}

/// Can a process open /dev/kvm read-write?
fn kvm_device() -> Result<(), String> {
    fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open(DEV_KVM)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Boots the test image's kernel and initramfs under KVM (no disk, no network),
/// bounded, watching the serial log for the login prompt and QEMU's output for a
/// KVM failure.
fn run_kvm_probe(host: &Host, image: &images::TestImage) -> ProbeOutcome {
    if let Err(why) = kvm_device() {
        return ProbeOutcome::NoDevice(why);
    }
    let dir = std::env::temp_dir().join(format!("devstack-rs-kvm-probe.{}", std::process::id()));
    let _ = fs_err::create_dir_all(&dir);
    let serial = dir.join("serial.log");
    let pidfile = dir.join("qemu.pid");
    let sink = Arc::new(ProbeSink {
        inner: host.log.clone(),
        failure: Mutex::new(None),
    });
    let cmd = host
        .cmd("qemu-system-x86_64")
        .args(["-accel", "kvm", "-cpu", "host", "-m", "128", "-smp", "1"])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-pidfile")
        .arg(&pidfile)
        .arg("-kernel")
        .arg(image.kernel())
        .arg("-initrd")
        .arg(image.ramdisk())
        .arg("-append")
        .arg(image.cmdline())
        .timeout(KVM_PROBE_LIMIT + Duration::from_secs(5))
        .allow_failure()
        .label("kvm-probe")
        .sink(sink.clone());
    let t0 = Instant::now();
    let outcome = std::thread::scope(|scope| {
        let child = scope.spawn(|| cmd.run());
        let outcome = loop {
            std::thread::sleep(Duration::from_millis(100));
            let log = fs_err::read_to_string(&serial).unwrap_or_default();
            if log.contains("login:") {
                break ProbeOutcome::Booted(t0.elapsed().as_secs_f64());
            }
            if let Some(line) = sink
                .failure
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
            {
                break ProbeOutcome::Failed(line);
            }
            if child.is_finished() {
                break ProbeOutcome::Failed("QEMU exited before the login prompt".into());
            }
            if t0.elapsed() >= KVM_PROBE_LIMIT {
                break ProbeOutcome::TimedOut;
            }
        };
        // QEMU may hang paused after a KVM error: end it by its pid.
        if let Some(pid) = fs_err::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.join();
        outcome
    });
    let _ = fs_err::remove_dir_all(&dir);
    outcome
}

/// The virt type the user asked for: what localrc or the environment set before
/// stackrc's default (`LIBVIRT_TYPE_FROM_USER`); outside a run, `LIBVIRT_TYPE`.
pub(crate) fn user_virt_type(s: &Settings) -> &str {
    s.get("LIBVIRT_TYPE_FROM_USER")
        .unwrap_or_else(|| s.str("LIBVIRT_TYPE"))
}

/// `[libvirt] virt_type` for this run, and why: `LIBVIRT_TYPE` when the user set
/// it, else the cached or a new probe.
pub(crate) fn virt_type(host: &mut Host) -> Result<(VirtType, String), ServiceError> {
    match user_virt_type(&host.settings) {
        "" => {}
        "kvm" => return Ok((VirtType::Kvm, "LIBVIRT_TYPE=kvm in localrc".into())),
        "qemu" => return Ok((VirtType::Qemu, "LIBVIRT_TYPE=qemu in localrc".into())),
        other => {
            return Err(ServiceError::failed(
                NAME,
                format!("LIBVIRT_TYPE={other} is not supported here (kvm or qemu)"),
            ));
        }
    }
    let key = probe_key(host);
    if let Some(answer) = cached(host.ledger.fact(PROBE_FACT), &key) {
        return Ok(answer);
    }
    let image = images::ensure_built(host)?;
    let outcome = run_kvm_probe(host, &image);
    let virt = verdict(&outcome);
    let why = describe(&outcome);
    host.ledger
        .set_fact(PROBE_FACT, format!("{key}\t{}\t{why}", virt.as_str()));
    host.checkpoint();
    Ok((virt, why))
}

// ---------------------------------------------------------------------------------
// configure

/// Is a metadata service going to answer guests (else nova forces a config drive)?
fn metadata_available(s: &Settings) -> bool {
    s.is_enabled(&[
        "q-meta",
        "neutron-metadata-agent",
        "q-ovn-metadata-agent",
        "q-ovn-agent",
    ])
}

/// What the driver puts into nova.conf: (section, option, value).
pub(crate) fn nova_options(
    s: &Settings,
    virt: VirtType,
    privsep_helper: &str,
) -> Vec<(&'static str, &'static str, String)> {
    let mode = cpu_mode(virt, s.str("LIBVIRT_CPU_MODE"));
    let mut out = vec![
        (
            "DEFAULT",
            "compute_driver",
            "libvirt.LibvirtDriver".to_owned(),
        ),
        ("libvirt", "virt_type", virt.as_str().to_owned()),
        ("libvirt", "connection_uri", URI.to_owned()),
        ("libvirt", "cpu_mode", mode.clone()),
        // qcow2 overlays on the cached base image, as nova's default.
        ("libvirt", "images_type", "qcow2".to_owned()),
        // The cloud kernel of the test image has no AHCI: on q35 its config drive
        // would not show; `pc` is what the guest expects.
        ("libvirt", "hw_machine_type", "x86_64=pc".to_owned()),
        // One host, no live migration: libvirtd does not listen on TCP, and no
        // migration URI points at a network.
        ("libvirt", "live_migration_scheme", "unix".to_owned()),
    ];
    if mode == "custom" {
        out.push((
            "libvirt",
            "cpu_models",
            s.get_or("LIBVIRT_CPU_MODEL", "qemu64").to_owned(),
        ));
    }
    if !metadata_available(s) {
        out.push(("DEFAULT", "force_config_drive", "True".to_owned()));
    }
    // nova-compute runs as root under our supervisor: privsep's default
    // `sudo privsep-helper` would not find the venv's helper on sudo's PATH
    // (os-brick's, for volumes, goes through `sudo nova-rootwrap` otherwise).
    for section in [
        "nova_sys_admin",
        "privsep_osbrick",
        "vif_plug_ovs_privileged",
        "vif_plug_linux_bridge_privileged",
    ] {
        out.push((section, "helper_command", privsep_helper.to_owned()));
    }
    out
}

/// configure_nova_hypervisor: the driver and its options into `NOVA_CONF`. Returns
/// the virt type, which becomes `LIBVIRT_TYPE` (as DevStack's fallback to qemu).
pub(crate) fn configure(host: &mut Host) -> Result<VirtType, ServiceError> {
    let (virt, why) = virt_type(host)?;
    host.settings.set("LIBVIRT_TYPE", virt.as_str());
    let s = host.settings.clone();
    let conf = s.path("NOVA_CONF");
    let helper = format!(
        "{} --config-file {}",
        crate::system::python::venv_bin(&s, "privsep-helper").display(),
        s.path("NOVA_CPU_CONF").display()
    );
    let mut doc = crate::ini::IniDoc::load(&conf)
        .map_err(|e| ServiceError::failed(NAME, format!("{}: {e}", conf.display())))?;
    for (section, key, value) in nova_options(&s, virt, &helper) {
        doc.set(section, key, &value);
    }
    doc.save(&conf)
        .map_err(|e| ServiceError::failed(NAME, format!("{}: {e}", conf.display())))?;
    let text = format!(
        "libvirt: virt_type {} ({why}), cpu_mode {}",
        virt.as_str(),
        cpu_mode(virt, s.str("LIBVIRT_CPU_MODE"))
    );
    host.note(&text);
    host.progress.summary(&text);
    host.ledger.set_fact(
        IN_USE_FACT,
        format!(
            "{}, cpu_mode {} ({why})",
            virt.as_str(),
            cpu_mode(virt, s.str("LIBVIRT_CPU_MODE"))
        ),
    );
    host.checkpoint();
    Ok(virt)
}

// ---------------------------------------------------------------------------------
// the daemons

pub(crate) struct Virtlogd;
pub(crate) struct Libvirtd;

/// `LIBVIRT_LOG_OUTPUTS`: warnings and errors to stderr, which is the daemon's log
/// under our supervisor (with `-d` libvirtd logs nowhere).
const LOG_OUTPUTS: &str = "3:stderr";

fn daemon_spec(host: &Host, name: &str, binary: &str) -> ProcessSpec {
    ProcessSpec {
        name: name.into(),
        // In the foreground: our supervisor holds it.
        command: format!("exec {binary}"),
        env: vec![("LIBVIRT_LOG_OUTPUTS".into(), LOG_OUTPUTS.into())],
        log: daemon::daemon_log(&host.settings, name),
        workdir: Some("/".into()),
        ..ProcessSpec::default()
    }
}

impl Daemon for Virtlogd {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: "virtlogd",
            unit: "virtlogd",
            probe_what: "virtlogd socket",
        }
    }
    fn listen(&self, _settings: &Settings) -> (String, Vec<u16>) {
        (String::new(), Vec::new())
    }
    fn prepare(&self, _host: &mut Host) -> Result<(), ServiceError> {
        // The daemons make their subdirectories, not always the parent.
        fs_err::create_dir_all("/run/libvirt").map_err(io(Path::new("/run/libvirt")))
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        Ok(daemon_spec(host, "virtlogd", "/usr/sbin/virtlogd"))
    }
    fn probe(&self, _host: &Host) -> Result<(), String> {
        std::os::unix::net::UnixStream::connect("/run/libvirt/virtlogd-sock")
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Daemon for Libvirtd {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: "libvirtd",
            unit: "libvirtd",
            probe_what: "virsh -c qemu:///system version",
        }
    }
    fn listen(&self, _settings: &Settings) -> (String, Vec<u16>) {
        (String::new(), Vec::new())
    }
    fn ready_timeout(&self, settings: &Settings) -> Duration {
        daemon::service_timeout(settings).max(LIBVIRTD_FIRST_START)
    }
    fn prepare(&self, host: &mut Host) -> Result<(), ServiceError> {
        fs_err::create_dir_all("/run/libvirt").map_err(io(Path::new("/run/libvirt")))?;
        // An autostarted default network would make virbr0 and put a private
        // range route into the host's namespace.
        if Path::new(DEFAULT_NETWORK_AUTOSTART).exists() {
            fs_err::remove_file(DEFAULT_NETWORK_AUTOSTART)
                .map_err(io(Path::new(DEFAULT_NETWORK_AUTOSTART)))?;
            host.note("libvirt: the default network no longer autostarts (no virbr0)");
        }
        fix_kvm_mode(host);
        if cgroup_v1_read_only(Path::new(CGROUP_CPU)) {
            no_cgroup_controllers(host, Path::new(QEMU_CONF))?;
        }
        Ok(())
    }
    /// Under systemd (the distro's unit): the same qemu.conf setting, and a restart
    /// when it changed (Debian started libvirtd at install).
    fn configure_unit(&self, host: &mut Host) -> Result<bool, ServiceError> {
        fix_kvm_mode(host);
        if cgroup_v1_read_only(Path::new(CGROUP_CPU)) {
            return no_cgroup_controllers(host, Path::new(QEMU_CONF));
        }
        Ok(false)
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        Ok(daemon_spec(host, "libvirtd", "/usr/sbin/libvirtd"))
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        daemon::probe_cmd(&host.cmd("virsh").args(["-c", URI, "version"]))
    }
}

/// A cgroup v1 controller libvirt places each guest under.
const CGROUP_CPU: &str = "/sys/fs/cgroup/cpu";
const QEMU_CONF: &str = "/etc/libvirt/qemu.conf";
/// The line that makes libvirt use no cgroup controller, with our mark.
const NO_CGROUP_CONTROLLERS: &str =
    "cgroup_controllers = [ ]  # devstack-rs: the cgroup v1 controllers are read-only here";

/// Whether the cgroup v1 controllers are mounted read-only (a container such as
/// systemd-nspawn's): libvirt then fails every guest with "Failed to create v1
/// controller cpu for group: Read-only file system".
fn cgroup_v1_read_only(controller: &Path) -> bool {
    controller.is_dir()
        && nix::sys::statvfs::statvfs(controller)
            .is_ok_and(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// `cgroup_controllers = [ ]` in qemu.conf (once; an uncommented setting of the
/// user's is left alone), before libvirtd reads it. True when it wrote it.
fn no_cgroup_controllers(host: &mut Host, conf: &Path) -> Result<bool, ServiceError> {
    let text = fs_err::read_to_string(conf).unwrap_or_default();
    if text
        .lines()
        .any(|l| l.trim_start().starts_with("cgroup_controllers"))
    {
        return Ok(false);
    }
    let mut out = text;
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(NO_CGROUP_CONTROLLERS);
    out.push('\n');
    fs_err::write(conf, out).map_err(io(conf))?;
    host.note("libvirt: the cgroup controllers are read-only here (a container): qemu.conf gets cgroup_controllers = [ ]");
    Ok(true)
}

/// The user QEMU runs as under Debian's libvirt (`user` in qemu.conf).
pub(crate) const QEMU_USER: &str = "libvirt-qemu";

/// A directory on the way to nova's instances that QEMU cannot enter: the guests'
/// disks below it would fail to open ("Cannot access storage file ... Permission
/// denied") after a stack that otherwise completes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unreachable {
    /// The directory without search permission for QEMU's user.
    pub dir: PathBuf,
    pub mode: u32,
    /// What QEMU must reach below it.
    pub target: PathBuf,
}

impl Unreachable {
    pub(crate) fn headline(&self) -> String {
        format!(
            "QEMU (user {QEMU_USER}) cannot reach the guests' disks under {}: {} has mode {:04o}, no search permission for {QEMU_USER}",
            self.target.display(),
            self.dir.display(),
            self.mode
        )
    }

    pub(crate) fn hint(&self) -> String {
        format!(
            "chmod o+x {} (each directory on the way to DEST must be enterable by {QEMU_USER}), or set DEST in localrc to such a directory, e.g. DEST=/opt/stack",
            self.dir.display()
        )
    }
}

/// Where nova's libvirt driver keeps what QEMU opens: the instances (disks, base
/// images, config drives) and the volume shares' mounts, all under `$DATA_DIR/nova`.
pub(crate) fn qemu_target(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("nova")
}

/// May `uid`/`gid`s search `dir` by its mode bits (root's override does not apply
/// to QEMU's user)?
fn can_search(meta: &std::fs::Metadata, user: Option<&nix::unistd::User>) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let mode = meta.mode();
    let Some(user) = user else {
        // Not installed yet: it will be a system user of its own, neither the owner
        // nor in the group of a directory that exists before libvirt does.
        return mode & 0o001 != 0;
    };
    if meta.uid() == user.uid.as_raw() {
        return mode & 0o100 != 0;
    }
    let in_group = meta.gid() == user.gid.as_raw()
        || nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(meta.gid()))
            .ok()
            .flatten()
            .is_some_and(|g| g.mem.iter().any(|m| m == &user.name));
    if in_group {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// The first existing directory on the way to `target` (from `/` down) that QEMU's
/// user cannot search (the ones still to be created are not looked at).
pub(crate) fn unreachable_ancestor(target: &Path) -> Option<Unreachable> {
    use std::os::unix::fs::MetadataExt as _;
    let user = nix::unistd::User::from_name(QEMU_USER).ok().flatten();
    let mut dirs: Vec<&Path> = target.ancestors().collect();
    dirs.reverse();
    for dir in dirs {
        let Ok(meta) = fs_err::metadata(dir) else {
            break;
        };
        if meta.is_dir() && !can_search(&meta, user.as_ref()) {
            return Some(Unreachable {
                dir: dir.to_path_buf(),
                mode: meta.mode() & 0o7777,
                target: target.to_path_buf(),
            });
        }
    }
    None
}

/// `/dev/kvm` readable by the `kvm` group (QEMU runs as `libvirt-qemu`, group
/// `kvm`), as Debian's udev rule makes it on a systemd machine. The old mode is
/// kept so clean can put it back.
fn fix_kvm_mode(host: &mut Host) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let Ok(meta) = fs_err::metadata(DEV_KVM) else {
        return;
    };
    let Ok(Some(kvm)) = nix::unistd::Group::from_name("kvm") else {
        return;
    };
    let mode = meta.mode() & 0o777;
    if meta.gid() == kvm.gid.as_raw() && mode & 0o060 == 0o060 {
        return;
    }
    if host.ledger.fact(KVM_MODE_FACT).is_none() {
        host.ledger
            .set_fact(KVM_MODE_FACT, format!("{mode:o}:{}", meta.gid()));
    }
    let _ = nix::unistd::chown(DEV_KVM, None, Some(kvm.gid));
    let _ = fs_err::set_permissions(DEV_KVM, std::fs::Permissions::from_mode(0o660));
    host.note("libvirt: /dev/kvm is now root:kvm 0660 (libvirt re-probes QEMU otherwise)");
    host.checkpoint();
}

/// Puts `/dev/kvm` back as it was before [`fix_kvm_mode`].
fn restore_kvm_mode(host: &mut Host) {
    use std::os::unix::fs::PermissionsExt as _;
    let Some(saved) = host.ledger.fact(KVM_MODE_FACT).map(str::to_owned) else {
        return;
    };
    if let Some((mode, gid)) = saved.split_once(':') {
        if let (Ok(mode), Ok(gid)) = (u32::from_str_radix(mode, 8), gid.parse::<u32>()) {
            let _ = nix::unistd::chown(DEV_KVM, None, Some(nix::unistd::Gid::from_raw(gid)));
            let _ = fs_err::set_permissions(DEV_KVM, std::fs::Permissions::from_mode(mode));
        }
    }
    host.ledger.forget_fact(KVM_MODE_FACT);
}

/// start_nova_hypervisor: virtlogd (libvirtd hands it the console logs), then
/// libvirtd.
pub(crate) fn start(host: &mut Host) -> Result<(), ServiceError> {
    let t0 = Instant::now();
    daemon::start(host, &Virtlogd)?;
    daemon::start(host, &Libvirtd)?;
    host.note(&format!(
        "libvirt: virtlogd and libvirtd answer after {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    // A stack recreates nova's databases (as DevStack's): guests of an earlier stack
    // are no instance of the new cloud, and nova-compute refuses to start beside
    // them ("My hypervisor has existing instances").
    if used_here(host) {
        let removed = remove_ours(host)?;
        if removed > 0 {
            host.note(&format!(
                "libvirt: {removed} guest(s) of the earlier stack removed (nova's databases were recreated)"
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// our guests

fn virsh(host: &Host) -> Cmd {
    host.cmd("virsh")
        .args(["-c", URI])
        .timeout(VIRSH_TIMEOUT)
        .label("virsh")
}

/// Is this domain ours (nova's metadata, or a project test domain)?
pub(crate) fn is_ours(name: &str, xml: &str) -> bool {
    name.starts_with(TEST_DOMAIN_PREFIX) || xml.contains(NOVA_XMLNS)
}

fn names(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Our domains: all of them (`running` false) or only the running ones.
fn our_domains(host: &Host, running: bool) -> Result<Vec<String>, ServiceError> {
    let list = virsh(host)
        .arg("list")
        .args(if running {
            &["--name"][..]
        } else {
            &["--all", "--name"][..]
        })
        .capture()
        .run()
        .map_err(|source| ServiceError::Process {
            service: NAME.into(),
            what: "virsh list".into(),
            source,
        })?;
    let mut ours = Vec::new();
    for name in names(&list.stdout) {
        let xml = virsh(host)
            .args(["dumpxml", &name])
            .capture()
            .allow_failure()
            .run()
            .map(|o| o.stdout)
            .unwrap_or_default();
        if is_ours(&name, &xml) {
            ours.push(name);
        }
    }
    Ok(ours)
}

fn libvirtd_answers(host: &Host) -> bool {
    Libvirtd.probe(host).is_ok()
}

/// Destroys our running guests (their QEMU processes end).
fn destroy_ours(host: &Host) -> Result<usize, ServiceError> {
    let ours = our_domains(host, true)?;
    for name in &ours {
        host.note(&format!("libvirt: destroying {name}"));
        let _ = virsh(host).args(["destroy", name]).allow_failure().run();
    }
    Ok(ours.len())
}

/// Destroys and undefines our guests, their QEMU logs removed; how many there were.
fn remove_ours(host: &Host) -> Result<usize, ServiceError> {
    destroy_ours(host)?;
    let ours = our_domains(host, false)?;
    for name in &ours {
        host.note(&format!("libvirt: undefining {name}"));
        let flags = ["--managed-save", "--snapshots-metadata", "--nvram"];
        if virsh(host)
            .args(["undefine", name])
            .args(flags)
            .allow_failure()
            .run()
            .map_or(true, |o| !o.status.success())
        {
            let _ = virsh(host).args(["undefine", name]).allow_failure().run();
        }
        let _ = fs_err::remove_file(format!("/var/log/libvirt/qemu/{name}.log"));
    }
    Ok(ours.len())
}

/// Did this tree's stack set nova up on libvirt? libvirtd and its guests are
/// host-wide: another tree's unstack (a test's, a second checkout's) must not
/// destroy this cloud's guests.
fn used_here(host: &Host) -> bool {
    host.ledger.fact(IN_USE_FACT).is_some()
}

/// A tap os-vif makes for a nova port: `tap` and the port id's first 11 characters.
fn is_port_tap_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() == 14
        && name.starts_with("tap")
        && b[11] == b'-'
        && b[3..11].iter().chain(&b[12..14]).all(u8::is_ascii_hexdigit)
}

/// On the userspace datapath os-vif makes each guest's tap a persistent tun device
/// and leaves it behind when the guest goes (unplug removes only the OVS port):
/// the taps of ports with no QEMU behind them (no carrier) are removed.
fn remove_stale_taps(host: &Host) {
    let Ok(entries) = fs_err::read_dir("/sys/class/net") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let dir = entry.path();
        if !is_port_tap_name(&name) || !dir.join("tun_flags").exists() {
            continue;
        }
        let carrier = fs_err::read_to_string(dir.join("carrier")).unwrap_or_default();
        if carrier.trim() == "1" {
            continue;
        }
        host.note(&format!(
            "libvirt: removing {name}, the tap of a guest that is gone"
        ));
        let _ = host
            .cmd("ip")
            .args(["link", "del", &name])
            .timeout(VIRSH_TIMEOUT)
            .allow_failure()
            .run();
    }
}

/// stop_nova_hypervisor: our guests destroyed (and their taps removed), then
/// libvirtd and virtlogd.
pub(crate) fn stop(host: &mut Host) -> Result<(), ServiceError> {
    if used_here(host) && libvirtd_answers(host) {
        destroy_ours(host)?;
    }
    if used_here(host) {
        remove_stale_taps(host);
    }
    let result = daemon::stop(host, &Libvirtd);
    daemon::stop(host, &Virtlogd)?;
    result
}

/// cleanup_nova_hypervisor: our guests undefined (libvirtd is started for it when
/// it does not run), their QEMU logs removed, `/dev/kvm` as it was.
pub(crate) fn cleanup(host: &mut Host) -> Result<(), ServiceError> {
    if used_here(host) && Path::new("/usr/sbin/libvirtd").exists() {
        let started = !libvirtd_answers(host);
        if started {
            start(host)?;
        }
        remove_ours(host)?;
        if started {
            stop(host)?;
        }
    }
    for name in ["libvirtd", "virtlogd"] {
        daemon::remove_daemon_log(&host.settings, name);
    }
    restore_kvm_mode(host);
    host.ledger.forget_fact(IN_USE_FACT);
    host.checkpoint();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dest_under_a_private_directory_is_unreachable_for_qemu() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("home");
        let target = private.join("stack/data/nova");
        fs_err::create_dir_all(private.join("stack")).unwrap();
        fs_err::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = unreachable_ancestor(&target).expect("the 0700 directory");
        assert_eq!(found.dir, private);
        assert_eq!(found.mode, 0o700);
        assert!(
            found.headline().contains("mode 0700"),
            "{}",
            found.headline()
        );
        assert!(
            found
                .hint()
                .starts_with(&format!("chmod o+x {}", private.display())),
            "{}",
            found.hint()
        );
        // Searchable by others (not readable: o+x is enough), nothing is in the way.
        fs_err::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(unreachable_ancestor(&target), None);
    }

    const DEBIAN_SOURCES: &str = "Types: deb\n\
        # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
        URIs: http://mirror.example/debian\n\
        Suites: bookworm bookworm-updates\n\
        Components: main\n\
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
        Types: deb\n\
        URIs: http://deb.debian.org/debian-security\n\
        Suites: bookworm-security\n\
        Components: main\n";

    #[test]
    fn backports_come_from_the_configured_mirror_once() {
        let stanza = backports_stanza(DEBIAN_SOURCES, "bookworm").unwrap();
        assert_eq!(
            stanza,
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm-backports\n\
             Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        let both = format!("{DEBIAN_SOURCES}\n\n{stanza}");
        assert_eq!(backports_stanza(&both, "bookworm"), None);
        assert_eq!(
            backports_stanza("Types: deb\nSuites: trixie\n", "bookworm"),
            None
        );
    }

    #[test]
    fn kvm_only_when_a_guest_booted() {
        assert_eq!(verdict(&ProbeOutcome::Booted(1.2)), VirtType::Kvm);
        for no in [
            ProbeOutcome::NoDevice("No such file".into()),
            ProbeOutcome::Failed("KVM internal error. Suberror: 1".into()),
            ProbeOutcome::TimedOut,
        ] {
            assert_eq!(verdict(&no), VirtType::Qemu, "{no:?}");
        }
        assert!(kvm_failure("KVM internal error. Suberror: 1"));
        assert!(kvm_failure(
            "qemu-system-x86_64: ../target/i386/kvm/kvm.c:3070: kvm_buf_set_msrs: Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."
        ));
        assert!(kvm_failure("error: failed to set MSR 0x10a to 0x0"));
        assert!(!kvm_failure(
            "warning: host doesn't support requested feature"
        ));
    }

    #[test]
    fn only_a_virt_type_set_before_stackrcs_default_overrides_the_probe() {
        // stackrc's default kvm, nothing from the user: probe.
        let s = settings(
            "n-cpu",
            &[("LIBVIRT_TYPE", "kvm"), ("LIBVIRT_TYPE_FROM_USER", "")],
        );
        assert_eq!(user_virt_type(&s), "");
        let s = settings(
            "n-cpu",
            &[("LIBVIRT_TYPE", "qemu"), ("LIBVIRT_TYPE_FROM_USER", "qemu")],
        );
        assert_eq!(user_virt_type(&s), "qemu");
        // Outside a run (devstack __call), LIBVIRT_TYPE itself.
        let s = settings("n-cpu", &[("LIBVIRT_TYPE", "kvm")]);
        assert_eq!(user_virt_type(&s), "kvm");
    }

    #[test]
    fn cpu_mode_avoids_host_model() {
        assert_eq!(cpu_mode(VirtType::Qemu, ""), "none");
        assert_eq!(cpu_mode(VirtType::Kvm, ""), "host-passthrough");
        assert_eq!(cpu_mode(VirtType::Qemu, "custom"), "custom");
    }

    #[test]
    fn the_probe_answer_is_reused_only_for_the_same_kernel_and_qemu() {
        let fact = "6.1.0 / QEMU emulator version 10.0.2\tqemu\tKVM failed: x";
        assert_eq!(
            cached(Some(fact), "6.1.0 / QEMU emulator version 10.0.2"),
            Some((VirtType::Qemu, "KVM failed: x".into()))
        );
        assert_eq!(
            cached(Some(fact), "6.2.0 / QEMU emulator version 10.0.2"),
            None
        );
        assert_eq!(cached(None, "k"), None);
        assert_eq!(cached(Some("k\tlxc\t"), "k"), None);
    }

    #[test]
    fn port_taps_are_tap_and_eleven_characters_of_the_port_id() {
        assert!(is_port_tap_name("tapd06f5160-54"));
        assert!(!is_port_tap_name("tapd06f5160-5"));
        assert!(!is_port_tap_name("tap0"));
        assert!(!is_port_tap_name("tapxyzxyzxy-54"));
        assert!(!is_port_tap_name("vethd06f5160-54"));
    }

    #[test]
    fn ours_are_novas_and_the_test_domains() {
        assert!(is_ours(
            "instance-00000001",
            "<domain><metadata><nova:instance xmlns:nova=\"http://openstack.org/xmlns/libvirt/nova/1.1\">"
        ));
        assert!(is_ours("devstack-rs-test-image", "<domain/>"));
        assert!(!is_ours(
            "someone-elses",
            "<domain><name>someone-elses</name></domain>"
        ));
    }

    fn settings(enabled: &str, extra: &[(&str, &str)]) -> Settings {
        let mut vars: std::collections::BTreeMap<String, String> =
            [("ENABLED_SERVICES".to_owned(), enabled.to_owned())].into();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        Settings::new(vars)
    }

    #[test]
    fn nova_conf_libvirt_options() {
        let s = settings("n-cpu", &[]);
        let opts = nova_options(&s, VirtType::Qemu, "/v/bin/privsep-helper --config-file /c");
        let mut text = String::new();
        for (s, k, v) in &opts {
            let _ = writeln!(text, "[{s}] {k} = {v}");
        }
        assert_eq!(
            text,
            "[DEFAULT] compute_driver = libvirt.LibvirtDriver\n\
             [libvirt] virt_type = qemu\n\
             [libvirt] connection_uri = qemu:///system\n\
             [libvirt] cpu_mode = none\n\
             [libvirt] images_type = qcow2\n\
             [libvirt] hw_machine_type = x86_64=pc\n\
             [libvirt] live_migration_scheme = unix\n\
             [DEFAULT] force_config_drive = True\n\
             [nova_sys_admin] helper_command = /v/bin/privsep-helper --config-file /c\n\
             [privsep_osbrick] helper_command = /v/bin/privsep-helper --config-file /c\n\
             [vif_plug_ovs_privileged] helper_command = /v/bin/privsep-helper --config-file /c\n\
             [vif_plug_linux_bridge_privileged] helper_command = /v/bin/privsep-helper --config-file /c\n"
        );
        // With a metadata service, no forced config drive; a custom CPU names its model.
        let s = settings("n-cpu,q-ovn-agent", &[("LIBVIRT_CPU_MODE", "custom")]);
        let opts = nova_options(&s, VirtType::Kvm, "h");
        assert!(!opts.iter().any(|o| o.1 == "force_config_drive"));
        assert!(opts.contains(&("libvirt", "cpu_models", "qemu64".into())));
        assert!(opts.contains(&("libvirt", "virt_type", "kvm".into())));
    }

    #[test]
    fn the_daemons_run_in_the_foreground_under_our_supervisor() {
        let dir = tempfile::tempdir().unwrap();
        let progress: Arc<dyn crate::ui::Progress> =
            Arc::new(crate::ui::TermProgress::new(crate::ui::Verbosity::Quiet));
        let log = Arc::new(crate::ui::log::RunLog::new(progress.clone()));
        let mut host = Host::new(
            dir.path().to_path_buf(),
            crate::state::Ledger::empty(dir.path()),
            log,
            progress,
        );
        host.settings = settings("n-cpu", &[("LOGDIR", "/opt/stack/logs")]);
        let spec = Libvirtd.spec(&host).unwrap();
        assert_eq!(spec.command, "exec /usr/sbin/libvirtd");
        assert_eq!(spec.log, Path::new("/opt/stack/logs/libvirtd.log"));
        assert!(
            spec.env
                .contains(&("LIBVIRT_LOG_OUTPUTS".into(), "3:stderr".into()))
        );
        let spec = Virtlogd.spec(&host).unwrap();
        assert_eq!(spec.command, "exec /usr/sbin/virtlogd");
        assert_eq!(Libvirtd.listen(&host.settings).1, Vec::<u16>::new());
        assert_eq!(Libvirtd.names().unit, "libvirtd");
        assert!(Libvirtd.ready_timeout(&host.settings) >= Duration::from_secs(120));
        assert_eq!(
            Virtlogd.ready_timeout(&host.settings),
            daemon::service_timeout(&host.settings)
        );
    }

    /// The domain the real test boots: the test image as a qcow2 overlay, the
    /// serial console logged to a file by virtlogd (nova's shape), no network.
    fn test_domain_xml(name: &str, disk: &Path, console: &Path) -> String {
        format!(
            "<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory>\
             <vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>\
             <features><acpi/><apic/></features><clock offset='utc'/><devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>\
             <serial type='pty'><log file='{}' append='off'/><target port='0'/></serial>\
             <console type='pty'><target type='serial' port='0'/></console>\
             <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>\
             </devices></domain>",
            disk.display(),
            console.display()
        )
    }

    /// The real thing: libvirtd and virtlogd under our supervisor, the test image
    /// defined and booted to its login prompt, then stop (destroys it) and cleanup
    /// (undefines it): no QEMU, no daemon and no domain of ours left.
    #[test]
    #[ignore = "reason: real libvirtd and QEMU: needs root (installs the libvirt packages) and takes the machine lock (run_tests.sh)"]
    fn libvirtd_boots_the_test_image_and_leaves_nothing() {
        use std::os::unix::fs::PermissionsExt as _;
        let lock = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(std::env::temp_dir().join("devstack-rs-layer1-tests.lock"))
            .unwrap()
            .into_parts()
            .0;
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs_err::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let progress: Arc<dyn crate::ui::Progress> =
            Arc::new(crate::ui::TermProgress::new(crate::ui::Verbosity::Quiet));
        let log = Arc::new(crate::ui::log::RunLog::new(progress.clone()));
        let mut host = Host::new(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
            crate::state::Ledger::empty(dir.path()),
            log,
            progress,
        );
        host.supervisor = Box::new(crate::system::supervisor::OwnSupervisor::default());
        host.settings = settings(
            "n-cpu",
            &[
                ("LOGDIR", &dir.path().join("logs").display().to_string()),
                ("TEST_IMAGE_DIR", "/var/cache/devstack-rs-test/test-image"),
            ],
        );
        // What install_nova_hypervisor installs (a no-op when present).
        install_packages(&mut host).unwrap();
        let image = images::ensure_built(&host).unwrap();
        let disk = dir.path().join("disk.qcow2");
        host.cmd("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image.file())
            .arg(&disk)
            .run()
            .unwrap();
        let console = dir.path().join("console.log");
        let name = format!("{TEST_DOMAIN_PREFIX}test-{}", std::process::id());
        let xml = dir.path().join("domain.xml");
        fs_err::write(&xml, test_domain_xml(&name, &disk, &console)).unwrap();

        start(&mut host).unwrap();
        // What configure_nova_hypervisor records: this tree uses libvirt.
        host.ledger.set_fact(IN_USE_FACT, "qemu");
        assert!(libvirtd_answers(&host));
        virsh(&host).arg("define").arg(&xml).run().unwrap();
        virsh(&host).args(["start", &name]).run().unwrap();
        let t0 = Instant::now();
        while !fs_err::read_to_string(&console)
            .unwrap_or_default()
            .contains("login:")
        {
            assert!(t0.elapsed() < Duration::from_secs(180), "no login prompt");
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(
            our_domains(&host, true).unwrap(),
            std::slice::from_ref(&name)
        );
        let spawner = host.spawner.clone();
        let qemu = |n: &str| {
            spawner
                .cmd("pgrep")
                .args(["-f", &format!("guest={n}")])
                .capture()
                .allow_failure()
                .run()
                .map(|o| o.stdout.trim().to_owned())
                .unwrap_or_default()
        };
        assert!(!qemu(&name).is_empty(), "a QEMU process runs the guest");

        stop(&mut host).unwrap();
        assert!(qemu(&name).is_empty(), "QEMU survived stop");
        assert!(!libvirtd_answers(&host), "libvirtd survived stop");
        assert!(daemon::recorded(&host, "libvirtd").is_none());
        assert!(daemon::recorded(&host, "virtlogd").is_none());

        cleanup(&mut host).unwrap();
        assert!(
            !Path::new(&format!("/etc/libvirt/qemu/{name}.xml")).exists(),
            "the domain is still defined"
        );
        assert!(!libvirtd_answers(&host), "cleanup left libvirtd running");
    }

    #[test]
    fn read_only_cgroups_give_qemu_conf_no_controllers_once() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("qemu.conf");
        fs_err::write(
            &conf,
            "#cgroup_controllers = [ \"cpu\" ]\nuser = \"libvirt-qemu\"",
        )
        .unwrap();
        let (_d, mut host) = crate::context::test_host(Settings::default());
        assert!(no_cgroup_controllers(&mut host, &conf).unwrap());
        assert!(!no_cgroup_controllers(&mut host, &conf).unwrap());
        let text = fs_err::read_to_string(&conf).unwrap();
        assert_eq!(
            text.matches("\ncgroup_controllers = [ ]").count(),
            1,
            "{text}"
        );
        assert!(text.starts_with("#cgroup_controllers"), "{text}");
        // A writable directory is not read-only; a missing one is not a controller.
        assert!(!cgroup_v1_read_only(dir.path()));
        assert!(!cgroup_v1_read_only(&dir.path().join("none")));
    }
}
