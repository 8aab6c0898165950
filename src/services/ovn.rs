//! Open vSwitch and OVN, the data plane of neutron's ML2/OVN (DevStack's
//! `lib/neutron_plugins/ovn_agent`): `ovsdb-server` and `ovs-vswitchd` (Debian's
//! `openvswitch-switch`), OVN's northbound and southbound `ovsdb-server`s and
//! `ovn-northd` (`ovn-central`), `ovn-controller` (`ovn-host`) bound to `br-int`, each a
//! [`Daemon`] with a readiness probe (`ovs-vsctl show`, `ovs-appctl version`,
//! `ovn-nbctl show`, `ovn-sbctl show`, `ovn-appctl status`, the chassis in the
//! southbound database).
//!
//! The datapath: the kernel's where `/sys/module/openvswitch` exists, else the
//! userspace one (`datapath_type=netdev` on every bridge and
//! `ovn-bridge-datapath-type=netdev` for ovn-controller), with
//! `userspace-tso-enable=true` set before ovs-vswitchd starts (without it TCP to guests
//! times out on bad checksums). The choice is said on the terminal and kept in the
//! ledger (`ovs-datapath`), which `devstack status` prints.
//!
//! The databases live under `$DATA_DIR/ovs` and `$DATA_DIR/ovn`; the sockets in the
//! distro's run directories (`/var/run/openvswitch`, `/var/run/ovn`), so `ovs-vsctl`
//! and `ovn-nbctl` work with no option. As DevStack's `stop_neutron` does with
//! `stop_ovn`, plain unstack stops them (`SKIP_STOP_OVN=True` keeps them); our bridges
//! are deleted first (`ovs-vswitchd` leaves the userspace datapath's tap devices behind
//! otherwise). clean removes the databases with `$DATA_DIR`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::services::daemon::{self, Daemon};
use crate::services::{Descriptor, Layer, Role, Service, ServiceError, oslo};
use crate::system::process::Cmd;
use crate::system::supervisor::ProcessSpec;

pub(crate) const NAME: &str = "ovn";
pub(crate) const OVS_RUNDIR: &str = "/var/run/openvswitch";
pub(crate) const OVN_RUNDIR: &str = "/var/run/ovn";
pub(crate) const OVS_DB_SOCK: &str = "unix:/var/run/openvswitch/db.sock";
pub(crate) const NB_SOCK: &str = "unix:/var/run/ovn/ovnnb_db.sock";
pub(crate) const SB_SOCK: &str = "unix:/var/run/ovn/ovnsb_db.sock";
const NB_PORT: u16 = 6641;
const SB_PORT: u16 = 6642;
const VSWITCH_SCHEMA: &str = "/usr/share/openvswitch/vswitch.ovsschema";
const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
const SB_SCHEMA: &str = "/usr/share/ovn/ovn-sb.ovsschema";
/// Ledger facts: the datapath chosen, and the chassis name (kept across re-stacks).
pub(crate) const DATAPATH_FACT: &str = "ovs-datapath";
const SYSTEM_ID_FACT: &str = "ovn-system-id";
/// A bridge this stack created (one fact per bridge: `ovs-bridge:br-int`).
const BRIDGE_FACT: &str = "ovs-bridge:";

/// The part of OVS/OVN a daemon is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    OvsDb,
    Vswitchd,
    NbDb,
    SbDb,
    Northd,
    Controller,
}

/// One OVS/OVN daemon.
#[derive(Debug)]
pub(crate) struct OvnDaemon(pub(crate) Part);

pub(crate) static OVSDB: OvnDaemon = OvnDaemon(Part::OvsDb);
pub(crate) static VSWITCHD: OvnDaemon = OvnDaemon(Part::Vswitchd);
pub(crate) static NB_DB: OvnDaemon = OvnDaemon(Part::NbDb);
pub(crate) static SB_DB: OvnDaemon = OvnDaemon(Part::SbDb);
pub(crate) static NORTHD: OvnDaemon = OvnDaemon(Part::Northd);
pub(crate) static CONTROLLER: OvnDaemon = OvnDaemon(Part::Controller);

/// In start order.
pub(crate) static ALL: [&OvnDaemon; 6] = [&OVSDB, &VSWITCHD, &NB_DB, &SB_DB, &NORTHD, &CONTROLLER];

/// The kernel datapath when its module is loaded, else the userspace one. An explicit
/// `OVN_DATAPATH_TYPE` (DevStack's variable, `netdev` for DPDK) wins.
pub(crate) fn datapath(s: &Settings) -> &'static str {
    match s.get("OVN_DATAPATH_TYPE").filter(|v| !v.is_empty()) {
        Some("netdev") => "netdev",
        Some(_) => "system",
        None if Path::new("/sys/module/openvswitch").exists() => "system",
        None => "netdev",
    }
}

/// `tcp:HOST:PORT` (DevStack's `OVN_NB_REMOTE`/`OVN_SB_REMOTE`) as the server's
/// passive remote `ptcp:PORT:HOST`, with the host and port; None for other schemes
/// (the unix socket alone serves them).
pub(crate) fn passive_remote(remote: &str) -> Option<(String, String, u16)> {
    let rest = remote.strip_prefix("tcp:")?;
    let (host, port) = rest.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    Some((format!("ptcp:{port}:{host}"), host.to_owned(), port))
}

pub(crate) fn nb_remote(s: &Settings) -> String {
    s.get("OVN_NB_REMOTE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || format!("tcp:{}:{NB_PORT}", s.get_or("SERVICE_HOST", "127.0.0.1")),
            str::to_owned,
        )
}

pub(crate) fn sb_remote(s: &Settings) -> String {
    s.get("OVN_SB_REMOTE")
        .filter(|v| !v.is_empty())
        .map_or_else(
            || format!("tcp:{}:{SB_PORT}", s.get_or("SERVICE_HOST", "127.0.0.1")),
            str::to_owned,
        )
}

fn ovs_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("ovs")
}

fn ovn_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("ovn")
}

/// The host name OVN's chassis and nova-compute share (port binding matches them).
pub(crate) fn hostname() -> String {
    // nova-compute's default `host` is the kernel's host name (socket.gethostname()).
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The chassis name: `OVN_UUID` when set, else the one this machine got before (a
/// fact), else a new random UUID.
pub(crate) fn system_id(host: &mut Host) -> String {
    if let Some(id) = host.settings.get("OVN_UUID").filter(|v| !v.is_empty()) {
        return id.to_owned();
    }
    if let Some(id) = host.ledger.fact(SYSTEM_ID_FACT) {
        return id.to_owned();
    }
    let id = random_uuid();
    host.ledger.set_fact(SYSTEM_ID_FACT, id.clone());
    id
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    if fs_err::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = t.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = crate::state::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A control program (`ovs-vsctl`, `ovn-nbctl`, ...) with its own timeout.
pub(crate) fn ctl(host: &Host, program: &str) -> Cmd {
    daemon::ctl(host, program, daemon::CTL_TIMEOUT)
}

/// A readiness probe's client: short, and retried by the wait loop. The first
/// `ovs-vsctl show` against a just-started ovsdb-server hung until it was killed
/// (5.4 s of ovsdb-server's start, socket already there); the next answered at once.
fn probe_ctl(host: &Host, program: &str) -> Cmd {
    daemon::ctl(host, program, Duration::from_secs(1))
}

fn run_ctl(cmd: &Cmd, what: &str) -> Result<String, ServiceError> {
    cmd.clone()
        .capture()
        .run()
        .map(|o| o.stdout)
        .map_err(|source| ServiceError::Process {
            service: NAME.into(),
            what: what.to_owned(),
            source,
        })
}

fn make_dir(host: &mut Host, dir: &Path) -> Result<(), ServiceError> {
    oslo::make_dir(host, NAME, dir)
}

/// Creates the database file from its schema when it does not exist yet.
fn create_db(host: &mut Host, file: &Path, schema: &str) -> Result<(), ServiceError> {
    if let Some(dir) = file.parent() {
        make_dir(host, dir)?;
    }
    if file.exists() {
        return Ok(());
    }
    run_ctl(
        &host
            .cmd("ovsdb-tool")
            .arg("create")
            .arg(file)
            .arg(schema)
            .label("ovsdb-tool"),
        "ovsdb-tool create",
    )?;
    host.ledger.record_file(file);
    Ok(())
}

/// What every OVS/OVN daemon logs: info to stderr (our log file), nothing to syslog
/// (no /dev/log in a container).
const VERBOSITY: &str = "-vconsole:info -vsyslog:off";

impl OvnDaemon {
    fn db_file(&self, s: &Settings) -> Option<(PathBuf, &'static str)> {
        match self.0 {
            Part::OvsDb => Some((ovs_dir(s).join("conf.db"), VSWITCH_SCHEMA)),
            Part::NbDb => Some((ovn_dir(s).join("ovnnb_db.db"), NB_SCHEMA)),
            Part::SbDb => Some((ovn_dir(s).join("ovnsb_db.db"), SB_SCHEMA)),
            _ => None,
        }
    }

    fn rundir(&self) -> &'static str {
        match self.0 {
            Part::OvsDb | Part::Vswitchd => OVS_RUNDIR,
            _ => OVN_RUNDIR,
        }
    }

    /// The pidfile name in the run directory (the control programs find the daemon
    /// by it: `ovs-appctl -t ovs-vswitchd`).
    fn pid_name(&self) -> &'static str {
        match self.0 {
            Part::OvsDb => "ovsdb-server",
            Part::Vswitchd => "ovs-vswitchd",
            Part::NbDb => "ovnnb_db",
            Part::SbDb => "ovnsb_db",
            Part::Northd => "ovn-northd",
            Part::Controller => "ovn-controller",
        }
    }

    /// The command our supervisor runs (in the foreground: the supervisor is its
    /// parent).
    pub(crate) fn command(&self, s: &Settings) -> String {
        let pid = format!("--pidfile={}/{}.pid", self.rundir(), self.pid_name());
        let db = |d: &Self| {
            d.db_file(s)
                .map(|(f, _)| f.display().to_string())
                .unwrap_or_default()
        };
        match self.0 {
            Part::OvsDb => format!(
                "exec ovsdb-server {} --remote=p{OVS_DB_SOCK} \
                 --remote=db:Open_vSwitch,Open_vSwitch,manager_options {pid} {VERBOSITY}",
                db(self)
            ),
            Part::Vswitchd => format!("exec ovs-vswitchd {OVS_DB_SOCK} {pid} {VERBOSITY}"),
            Part::NbDb | Part::SbDb => {
                let (sock, remote, ctl) = if self.0 == Part::NbDb {
                    (NB_SOCK, nb_remote(s), "ovnnb_db.ctl")
                } else {
                    (SB_SOCK, sb_remote(s), "ovnsb_db.ctl")
                };
                let tcp = passive_remote(&remote)
                    .map(|(p, _, _)| format!(" --remote={p}"))
                    .unwrap_or_default();
                format!(
                    "exec ovsdb-server {} --remote=p{sock}{tcp} {pid} \
                     --unixctl={OVN_RUNDIR}/{ctl} {VERBOSITY}",
                    db(self)
                )
            }
            Part::Northd => format!(
                "exec ovn-northd --ovnnb-db={NB_SOCK} --ovnsb-db={SB_SOCK} {pid} {VERBOSITY}"
            ),
            Part::Controller => format!("exec ovn-controller {OVS_DB_SOCK} {pid} {VERBOSITY}"),
        }
    }

    /// Which DevStack service names run this part.
    pub(crate) fn enabled(&self, s: &Settings) -> bool {
        match self.0 {
            Part::OvsDb | Part::Vswitchd => {
                s.is_enabled(&["ovsdb-server", "ovs-vswitchd", "ovn-controller"])
            }
            Part::NbDb | Part::SbDb | Part::Northd => s.is_enabled(&["ovn-northd"]),
            Part::Controller => s.is_enabled(&["ovn-controller"]),
        }
    }
}

impl OvnDaemon {
    /// Its name in the ledger, status and logs.
    pub(crate) fn name(&self) -> &'static str {
        self.names().name
    }
}

/// Each part's names (Debian's units carry the same names as the daemons).
static NAMES: [daemon::Names; 6] = [
    daemon::Names {
        name: "ovsdb-server",
        unit: "ovsdb-server",
        probe_what: "ovs-vsctl show",
    },
    daemon::Names {
        name: "ovs-vswitchd",
        unit: "ovs-vswitchd",
        probe_what: "ovs-appctl -t ovs-vswitchd version",
    },
    daemon::Names {
        name: "ovn-ovsdb-server-nb",
        unit: "ovn-ovsdb-server-nb",
        probe_what: "ovn-nbctl show",
    },
    daemon::Names {
        name: "ovn-ovsdb-server-sb",
        unit: "ovn-ovsdb-server-sb",
        probe_what: "ovn-sbctl show",
    },
    daemon::Names {
        name: "ovn-northd",
        unit: "ovn-northd",
        probe_what: "ovn-appctl -t ovn-northd status",
    },
    daemon::Names {
        name: "ovn-controller",
        unit: "ovn-controller",
        probe_what: "ovn-sbctl find Chassis name=<system-id>",
    },
];

impl Daemon for OvnDaemon {
    fn names(&self) -> &'static daemon::Names {
        &NAMES[match self.0 {
            Part::OvsDb => 0,
            Part::Vswitchd => 1,
            Part::NbDb => 2,
            Part::SbDb => 3,
            Part::Northd => 4,
            Part::Controller => 5,
        }]
    }
    fn listen(&self, s: &Settings) -> (String, Vec<u16>) {
        let remote = match self.0 {
            Part::NbDb => nb_remote(s),
            Part::SbDb => sb_remote(s),
            _ => return (s.get_or("SERVICE_HOST", "127.0.0.1").to_owned(), vec![]),
        };
        match passive_remote(&remote) {
            Some((_, host, port)) => (host, vec![port]),
            None => (s.get_or("SERVICE_HOST", "127.0.0.1").to_owned(), vec![]),
        }
    }
    fn prepare(&self, host: &mut Host) -> Result<(), ServiceError> {
        make_dir(host, Path::new(self.rundir()))?;
        if let Some((file, schema)) = self.db_file(&host.settings) {
            create_db(host, &file, schema)?;
        }
        if self.0 == Part::Vswitchd {
            // Before ovs-vswitchd reads it: the userspace datapath's TSO setting is
            // read once at start.
            configure_open_vswitch(host)?;
        }
        Ok(())
    }
    /// Under systemd the distro's units run the daemons with their own command lines:
    /// the chassis settings our launch gives ovs-vswitchd go into the Open_vSwitch row
    /// before its unit (re)starts (ovsdb-server's unit runs by then).
    fn configure_unit(&self, host: &mut Host) -> Result<bool, ServiceError> {
        if self.0 == Part::Vswitchd {
            configure_open_vswitch(host)?;
            return Ok(true);
        }
        Ok(false)
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let (addr, ports) = self.listen(&host.settings);
        Ok(ProcessSpec {
            name: self.name().into(),
            command: self.command(&host.settings),
            log: daemon::daemon_log(&host.settings, self.name()),
            workdir: Some("/".into()),
            address: ports.first().map(|p| format!("{addr}:{p}")),
            ..ProcessSpec::default()
        })
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        // A client started before the server's socket exists waits for its whole
        // timeout (measured: the first `ovs-vsctl show` cost 5 s): look first.
        let sock = match self.0 {
            Part::OvsDb => Some(OVS_DB_SOCK),
            Part::NbDb => Some(NB_SOCK),
            Part::SbDb => Some(SB_SOCK),
            _ => None,
        };
        if let Some(sock) = sock.and_then(|s| s.strip_prefix("unix:")) {
            if !Path::new(sock).exists() {
                return Err(format!("no socket {sock} yet"));
            }
        }
        match self.0 {
            Part::OvsDb => daemon::probe_cmd(&probe_ctl(host, "ovs-vsctl").arg("show")),
            Part::Vswitchd => daemon::probe_cmd(&host.cmd("ovs-appctl").args([
                "-T",
                "5",
                "-t",
                "ovs-vswitchd",
                "version",
            ])),
            Part::NbDb => daemon::probe_cmd(
                &probe_ctl(host, "ovn-nbctl")
                    .arg(format!("--db={NB_SOCK}"))
                    .arg("show"),
            ),
            Part::SbDb => daemon::probe_cmd(
                &probe_ctl(host, "ovn-sbctl")
                    .arg(format!("--db={SB_SOCK}"))
                    .arg("show"),
            ),
            Part::Northd => {
                let out = host
                    .cmd("ovn-appctl")
                    .args(["-T", "5", "-t", "ovn-northd", "status"])
                    .timeout(daemon::PROBE_TIMEOUT)
                    .capture()
                    .run()
                    .map_err(|e| e.to_string())?;
                if out.stdout.contains("Status: active") {
                    Ok(())
                } else {
                    Err(format!("ovn-northd: {}", out.stdout.trim()))
                }
            }
            Part::Controller => chassis_registered(host),
        }
    }
}

/// The chassis of this host (by the system-id ovn-controller was given) is in the
/// southbound database.
fn chassis_registered(host: &Host) -> Result<(), String> {
    let id = host
        .settings
        .get("OVN_UUID")
        .filter(|v| !v.is_empty())
        .or_else(|| host.ledger.fact(SYSTEM_ID_FACT))
        .ok_or("no system-id")?;
    let out = probe_ctl(host, "ovn-sbctl")
        .arg(format!("--db={}", sb_remote(&host.settings)))
        .args(["--bare", "--columns=name", "find", "Chassis"])
        .arg(format!("name={id}"))
        .capture()
        .run()
        .map_err(|e| e.to_string())?;
    if out.stdout.trim() == id {
        Ok(())
    } else {
        Err(format!("chassis {id} not registered yet"))
    }
}

/// The `external_ids` and `other_config` of the Open_vSwitch row that make this host
/// an OVN chassis (DevStack's `_start_ovs` + `configure_ovn`).
pub(crate) fn chassis_settings(
    s: &Settings,
    system_id: &str,
    hostname: &str,
    datapath: &str,
) -> Vec<String> {
    let mut kv = vec![
        format!("external_ids:system-id={system_id}"),
        format!("external_ids:hostname={hostname}"),
        format!("external_ids:ovn-remote={}", sb_remote(s)),
        "external_ids:ovn-encap-type=geneve".to_owned(),
        format!(
            "external_ids:ovn-encap-ip={}",
            s.get_or("TUNNEL_ENDPOINT_IP", s.get_or("HOST_IP", "127.0.0.1"))
        ),
        "external_ids:ovn-bridge=br-int".to_owned(),
    ];
    let mappings = s.get_or("OVN_BRIDGE_MAPPINGS", "");
    if !mappings.is_empty() {
        kv.push(format!("external_ids:ovn-bridge-mappings={mappings}"));
    }
    if s.flag("ENABLE_CHASSIS_AS_GW", true) {
        // Router gateway ports (SNAT, floating IPs) are scheduled on gateway chassis.
        kv.push("external_ids:ovn-cms-options=enable-chassis-as-gw".to_owned());
    }
    if datapath == "netdev" {
        kv.push("external_ids:ovn-bridge-datapath-type=netdev".to_owned());
        kv.push("other_config:userspace-tso-enable=true".to_owned());
    }
    kv
}

/// The Open_vSwitch row, before ovs-vswitchd starts (`--no-wait`: no vswitchd yet).
fn configure_open_vswitch(host: &mut Host) -> Result<(), ServiceError> {
    let dp = datapath(&host.settings);
    let id = system_id(host);
    let kv = chassis_settings(&host.settings, &id, &hostname(), dp);
    run_ctl(
        &ctl(host, "ovs-vsctl").args(["--no-wait", "init"]),
        "ovs-vsctl init",
    )?;
    run_ctl(
        &ctl(host, "ovs-vsctl")
            .args(["--no-wait", "set", "Open_vSwitch", "."])
            .args(&kv),
        "ovs-vsctl set Open_vSwitch",
    )?;
    let said = host.ledger.fact(DATAPATH_FACT) == Some(dp);
    host.ledger.set_fact(DATAPATH_FACT, dp);
    host.checkpoint();
    let text = if dp == "netdev" {
        "Open vSwitch: userspace datapath (netdev): no openvswitch kernel module here"
    } else {
        "Open vSwitch: kernel datapath (openvswitch module loaded)"
    };
    host.note(text);
    if !said {
        host.progress.info(text);
    }
    Ok(())
}

/// Creates bridge `name` (when missing) with the datapath chosen and `extra` settings,
/// recorded so unstack deletes it.
pub(crate) fn add_bridge(host: &mut Host, name: &str, extra: &[&str]) -> Result<(), ServiceError> {
    let dp = datapath(&host.settings);
    let mut cmd = ctl(host, "ovs-vsctl")
        .args(["--may-exist", "add-br", name, "--", "set", "Bridge", name])
        .arg(format!("datapath_type={dp}"));
    cmd = cmd.args(extra);
    run_ctl(&cmd, &format!("ovs-vsctl add-br {name}"))?;
    host.ledger.set_fact(&format!("{BRIDGE_FACT}{name}"), "1");
    host.checkpoint();
    Ok(())
}

/// The bridges this stack created.
fn our_bridges(host: &Host) -> Vec<String> {
    [
        "br-int".to_owned(),
        host.settings.get_or("PUBLIC_BRIDGE", "br-ex").to_owned(),
    ]
    .into_iter()
    .filter(|b| host.ledger.fact(&format!("{BRIDGE_FACT}{b}")).is_some())
    .collect()
}

/// Starts what is enabled of OVS and OVN, in order; br-int made with the datapath
/// chosen before ovn-controller adopts it.
pub(crate) fn start_all(host: &mut Host) -> Result<(), ServiceError> {
    for d in ALL {
        if !d.enabled(&host.settings) {
            continue;
        }
        let t0 = std::time::Instant::now();
        daemon::start(host, d)?;
        if daemon::use_systemctl() {
            listen_on_tcp(host, d)?;
        }
        host.note(&format!(
            "{}: ready in {:.2} s",
            d.name(),
            t0.elapsed().as_secs_f64()
        ));
        if d.0 == Part::Vswitchd {
            add_bridge(
                host,
                "br-int",
                &["fail-mode=secure", "other-config:disable-in-band=true"],
            )?;
        }
    }
    Ok(())
}

/// Under systemd, the distro's NB and SB units listen on their unix sockets only:
/// the passive TCP remote our launch gives them on the command line (OVN_NB_REMOTE,
/// OVN_SB_REMOTE, `tcp:SERVICE_HOST:PORT`, where compute nodes' ovn-controllers and
/// neutron connect) goes into the database's connection table instead.
fn listen_on_tcp(host: &Host, d: &OvnDaemon) -> Result<(), ServiceError> {
    let (ctl_name, sock, remote) = match d.0 {
        Part::NbDb => ("ovn-nbctl", NB_SOCK, nb_remote(&host.settings)),
        Part::SbDb => ("ovn-sbctl", SB_SOCK, sb_remote(&host.settings)),
        _ => return Ok(()),
    };
    let Some((passive, _, _)) = passive_remote(&remote) else {
        return Ok(());
    };
    run_ctl(
        &ctl(host, ctl_name)
            .arg(format!("--db={sock}"))
            .args(["set-connection", &passive]),
        &format!("{ctl_name} set-connection {passive}"),
    )?;
    Ok(())
}

/// Deletes our bridges (ovs-vswitchd must run), then stops every daemon of ours,
/// in reverse order.
pub(crate) fn stop_all(host: &mut Host) -> Result<(), ServiceError> {
    if daemon::running(host, VSWITCHD.name()).is_some() {
        for br in our_bridges(host) {
            let _ = run_ctl(
                &ctl(host, "ovs-vsctl").args(["--if-exists", "del-br", &br]),
                "ovs-vsctl del-br",
            );
            host.ledger.forget_fact(&format!("{BRIDGE_FACT}{br}"));
        }
        // The userspace datapath's own tap device (ovs-netdev) goes with --cleanup.
        let _ = host
            .cmd("ovs-appctl")
            .args(["-T", "5", "-t", "ovs-vswitchd", "exit", "--cleanup"])
            .timeout(Duration::from_secs(8))
            .allow_failure()
            .run();
    }
    let mut first = None;
    for d in ALL.iter().rev() {
        if let Err(e) = daemon::stop(host, *d) {
            first.get_or_insert(e);
        }
    }
    host.checkpoint();
    first.map_or(Ok(()), Err)
}

pub(crate) struct Ovn;

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[
        "ovn-northd",
        "ovn-controller",
        "ovs-vswitchd",
        "ovsdb-server",
    ],
    role: Role::Any,
    after: &["keystone"],
    packages: &["openvswitch-switch", "ovn-central", "ovn-host", "ethtool"],
    defaults: &[
        ("OVN_NB_REMOTE", "tcp:$SERVICE_HOST:6641"),
        ("OVN_SB_REMOTE", "tcp:$SERVICE_HOST:6642"),
        ("ENABLE_CHASSIS_AS_GW", "True"),
        ("SKIP_STOP_OVN", "False"),
    ],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for Ovn {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn packages(&self, s: &Settings) -> Vec<String> {
        // ethtool: the public namespace's veth without segmentation offloads
        // (ovn_public.rs).
        let mut p = vec!["openvswitch-switch".to_owned(), "ethtool".to_owned()];
        if s.is_enabled(&["ovn-northd"]) {
            p.push("ovn-central".into());
        }
        if s.is_enabled(&["ovn-controller"]) {
            p.push("ovn-host".into());
        }
        p
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_all(cx.host)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, all: bool) -> Result<(), ServiceError> {
        // DevStack's stop_neutron stops OVN unless SKIP_STOP_OVN; clean always does.
        let skip = cx.host.settings.flag("SKIP_STOP_OVN", false)
            && cx.host.mode != crate::context::Mode::Clean
            && !all;
        if skip {
            return Ok(());
        }
        crate::services::ovn_public::remove(cx.host);
        stop_all(cx.host)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        for d in ALL {
            daemon::remove_daemon_log(&cx.host.settings, d.name());
        }
        cx.host.ledger.forget_fact(DATAPATH_FACT);
        // The databases (and the chassis name with them) go with $DATA_DIR/ovs and
        // $DATA_DIR/ovn, recorded when they were made.
        cx.host.ledger.forget_fact(SYSTEM_ID_FACT);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut s = Settings::from_pairs(&[
            ("DATA_DIR", "/opt/stack/data"),
            ("SERVICE_HOST", "10.0.0.5"),
            ("HOST_IP", "10.0.0.5"),
            ("OVN_BRIDGE_MAPPINGS", "public:br-ex"),
        ]);
        for (k, v) in extra {
            s.set(k, *v);
        }
        s
    }

    #[test]
    fn remotes_become_passive_listeners() {
        assert_eq!(
            passive_remote("tcp:10.0.0.5:6641"),
            Some(("ptcp:6641:10.0.0.5".into(), "10.0.0.5".into(), 6641))
        );
        assert_eq!(passive_remote("unix:/run/ovn/ovnnb_db.sock"), None);
        assert_eq!(passive_remote("tcp:nohost"), None);
    }

    #[test]
    fn daemon_commands_use_our_databases_and_the_distro_sockets() {
        let s = settings(&[]);
        let cmds: Vec<String> = ALL.iter().map(|d| d.command(&s)).collect();
        insta::assert_snapshot!(cmds.join("\n"), @r"
        exec ovsdb-server /opt/stack/data/ovs/conf.db --remote=punix:/var/run/openvswitch/db.sock --remote=db:Open_vSwitch,Open_vSwitch,manager_options --pidfile=/var/run/openvswitch/ovsdb-server.pid -vconsole:info -vsyslog:off
        exec ovs-vswitchd unix:/var/run/openvswitch/db.sock --pidfile=/var/run/openvswitch/ovs-vswitchd.pid -vconsole:info -vsyslog:off
        exec ovsdb-server /opt/stack/data/ovn/ovnnb_db.db --remote=punix:/var/run/ovn/ovnnb_db.sock --remote=ptcp:6641:10.0.0.5 --pidfile=/var/run/ovn/ovnnb_db.pid --unixctl=/var/run/ovn/ovnnb_db.ctl -vconsole:info -vsyslog:off
        exec ovsdb-server /opt/stack/data/ovn/ovnsb_db.db --remote=punix:/var/run/ovn/ovnsb_db.sock --remote=ptcp:6642:10.0.0.5 --pidfile=/var/run/ovn/ovnsb_db.pid --unixctl=/var/run/ovn/ovnsb_db.ctl -vconsole:info -vsyslog:off
        exec ovn-northd --ovnnb-db=unix:/var/run/ovn/ovnnb_db.sock --ovnsb-db=unix:/var/run/ovn/ovnsb_db.sock --pidfile=/var/run/ovn/ovn-northd.pid -vconsole:info -vsyslog:off
        exec ovn-controller unix:/var/run/openvswitch/db.sock --pidfile=/var/run/ovn/ovn-controller.pid -vconsole:info -vsyslog:off
        ");
        assert_eq!(NB_DB.listen(&s), ("10.0.0.5".into(), vec![6641]));
        assert_eq!(SB_DB.listen(&s), ("10.0.0.5".into(), vec![6642]));
        assert!(OVSDB.listen(&s).1.is_empty());
    }

    #[test]
    fn the_chassis_gets_geneve_mappings_and_the_userspace_datapath_settings() {
        let s = settings(&[]);
        let kv = chassis_settings(&s, "abc", "node1", "netdev");
        insta::assert_snapshot!(kv.join("\n"), @r"
        external_ids:system-id=abc
        external_ids:hostname=node1
        external_ids:ovn-remote=tcp:10.0.0.5:6642
        external_ids:ovn-encap-type=geneve
        external_ids:ovn-encap-ip=10.0.0.5
        external_ids:ovn-bridge=br-int
        external_ids:ovn-bridge-mappings=public:br-ex
        external_ids:ovn-cms-options=enable-chassis-as-gw
        external_ids:ovn-bridge-datapath-type=netdev
        other_config:userspace-tso-enable=true
        ");
        let kernel = chassis_settings(
            &settings(&[("ENABLE_CHASSIS_AS_GW", "False")]),
            "abc",
            "n",
            "system",
        );
        assert!(
            !kernel
                .iter()
                .any(|k| k.contains("netdev") || k.contains("tso"))
        );
        assert!(!kernel.iter().any(|k| k.contains("cms-options")));
    }

    #[test]
    fn the_datapath_follows_the_module_unless_set() {
        assert_eq!(
            datapath(&settings(&[("OVN_DATAPATH_TYPE", "netdev")])),
            "netdev"
        );
        assert_eq!(
            datapath(&settings(&[("OVN_DATAPATH_TYPE", "system")])),
            "system"
        );
        let expect = if Path::new("/sys/module/openvswitch").exists() {
            "system"
        } else {
            "netdev"
        };
        assert_eq!(datapath(&settings(&[])), expect);
    }

    #[test]
    fn service_names_enable_their_parts() {
        let s = settings(&[("ENABLED_SERVICES", "ovn-controller")]);
        let on: Vec<&str> = ALL
            .iter()
            .filter(|d| d.enabled(&s))
            .map(|d| d.name())
            .collect();
        assert_eq!(on, ["ovsdb-server", "ovs-vswitchd", "ovn-controller"]);
        let s = settings(&[("ENABLED_SERVICES", "ovn-northd")]);
        let on: Vec<&str> = ALL
            .iter()
            .filter(|d| d.enabled(&s))
            .map(|d| d.name())
            .collect();
        assert_eq!(
            on,
            ["ovn-ovsdb-server-nb", "ovn-ovsdb-server-sb", "ovn-northd"]
        );
    }

    #[test]
    fn a_random_uuid_has_the_v4_shape() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
    }
}
