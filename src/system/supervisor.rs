//! Supervised processes: systemd units when PID 1 is systemd, otherwise our own
//! supervisor (own session, pidfile, log file, TERM then KILL). Both behind one trait.
//!
//! The own backend runs each process as `bash -c COMMAND` in its own process group,
//! detached (nobody waits for it; it outlives the devstack process), stdout and stderr
//! appended to its log, its pid in `NAME.pid` beside the log. Stopping sends TERM to the
//! whole group and KILL after a grace period. The systemd backend writes
//! `devstack@NAME.service` exactly as DevStack's `write_user_unit_file` does.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fs_err as fs;
use fs_err::os::unix::fs::OpenOptionsExt as _;
use nix::unistd::{Pid, User};

use crate::state::{Backend, Launch, ProcessRecord};
use crate::system::process::{Cmd, stop_group};
/// The /proc view of process groups, which `Cmd`'s own stop uses too.
pub(crate) use crate::system::process::{group_members, is_group_leader_alive};

/// Time a stopped process group gets between TERM and KILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);
/// Where DevStack writes its units (system units; `USER_UNITS` is not supported).
pub(crate) const SYSTEMD_DIR: &str = "/etc/systemd/system";

/// What to run: DevStack's `run_process NAME COMMAND [GROUP] [USER] [ENV]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    pub name: String,
    /// The command line, run by `bash -c` (DevStack passes one string).
    pub command: String,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub log: PathBuf,
    pub workdir: Option<PathBuf>,
    /// Where the process listens, when known (kept in the record for `status`).
    pub address: Option<String>,
}

impl ProcessSpec {
    /// The spec a recorded process was started from: what starting it again needs.
    /// A record without it (an older devstack's, or one found from a pidfile) is
    /// not guessed at.
    pub fn of_record(record: &ProcessRecord) -> Result<Self, SupervisorError> {
        let launch = match &record.launch {
            Some(launch) if !record.command.is_empty() => launch.clone(),
            _ => {
                return Err(start_err(
                    &record.name,
                    "how it was started is not recorded (an older devstack's state, or found from a pidfile): stack again",
                ));
            }
        };
        Ok(Self {
            name: record.name.clone(),
            command: record.command.clone(),
            env: launch.env,
            user: launch.user,
            group: launch.group,
            log: record.log.clone(),
            workdir: launch.workdir,
            address: record.address.clone(),
        })
    }

    /// What the record keeps of this spec besides the command.
    fn launch(&self) -> Launch {
        Launch {
            env: self.env.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            workdir: self.workdir.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcStatus {
    Running { pid: u32 },
    Stopped,
    Failed { detail: String },
}

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("could not start {name}: {detail}")]
    Start { name: String, detail: String },
    #[error("could not stop {name}: {detail}")]
    Stop { name: String, detail: String },
}

/// A backend that starts, stops and reports on long-running processes.
pub trait Supervisor: Send + Sync {
    fn backend(&self) -> Backend;
    fn start(&self, spec: &ProcessSpec) -> Result<ProcessRecord, SupervisorError>;
    fn stop(&self, record: &ProcessRecord) -> Result<(), SupervisorError>;
    fn status(&self, record: &ProcessRecord) -> ProcStatus;
    /// Stops a recorded process and starts it again as it was started (its command,
    /// environment, user): the code and config it reads are what is on disk now.
    fn restart(&self, record: &ProcessRecord) -> Result<ProcessRecord, SupervisorError> {
        let spec = ProcessSpec::of_record(record)?;
        self.stop(record)?;
        self.start(&spec)
    }
}

/// Is PID 1 systemd (the test systemd itself uses)?
pub(crate) fn systemd_is_pid1() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The backend for this machine.
pub(crate) fn detect() -> Box<dyn Supervisor> {
    if systemd_is_pid1() {
        Box::new(SystemdSupervisor::default())
    } else {
        Box::new(OwnSupervisor::default())
    }
}

/// The pidfile the own backend keeps for a process: `NAME.pid` beside its log.
pub(crate) fn pidfile(log: &Path, name: &str) -> PathBuf {
    log.parent()
        .unwrap_or(Path::new("/"))
        .join(format!("{name}.pid"))
}

// ---------------------------------------------------------------------------------
// /proc helpers

fn reap(pid: u32) {
    // Our own child (a test, or a process started in this run) becomes a zombie
    // until waited for; anyone else's is not ours to wait for (ECHILD, ignored).
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::wait::waitpid(
            Pid::from_raw(raw),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// Stops the process group led by `pid`: TERM, then KILL after `grace`.
pub(crate) fn stop_pid_group(pid: u32, grace: Duration) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if group_members(pid).is_empty() {
        reap(pid);
        return;
    }
    stop_group(Pid::from_raw(raw), grace, || {
        reap(pid);
        group_members(pid).is_empty()
    });
    // After KILL the kernel needs a moment to tear the processes down.
    for _ in 0..100 {
        reap(pid);
        if group_members(pid).is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------
// Own backend

/// Our own supervisor, for machines without systemd as PID 1.
#[derive(Debug, Clone)]
pub(crate) struct OwnSupervisor {
    pub grace: Duration,
}

impl Default for OwnSupervisor {
    fn default() -> Self {
        Self { grace: STOP_GRACE }
    }
}

fn start_err(name: &str, detail: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Start {
        name: name.to_owned(),
        detail: detail.to_string(),
    }
}

impl Supervisor for OwnSupervisor {
    fn backend(&self) -> Backend {
        Backend::Own
    }

    fn start(&self, spec: &ProcessSpec) -> Result<ProcessRecord, SupervisorError> {
        let name = spec.name.as_str();
        // A pidfile whose process still runs is a copy nobody recorded (a lost
        // state): starting another would leave one that no teardown stops.
        let previous = pidfile(&spec.log, name);
        if let Some(pid) = fs_err::read_to_string(&previous)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|&pid| is_group_leader_alive(pid))
        {
            return Err(start_err(
                name,
                format!(
                    "its previous copy still runs (pid {pid}, {}); stop it first (./unstack.sh, or kill -- -{pid})",
                    previous.display()
                ),
            ));
        }
        if let Some(dir) = spec.log.parent() {
            fs::create_dir_all(dir).map_err(|e| start_err(name, e))?;
        }
        // 0640 at most: a service's log is for the operator.
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&spec.log)
            .map_err(|e| start_err(name, e))?
            .into_parts()
            .0;
        let log_err = log.try_clone().map_err(|e| start_err(name, e))?;
        let mut cmd = Cmd::new("bash").args(["-c", spec.command.as_str()]);
        for (k, v) in &spec.env {
            cmd = cmd.env(k, v);
        }
        if let Some(dir) = &spec.workdir {
            cmd = cmd.current_dir(dir);
        }
        let mut std_cmd = cmd.to_std();
        if let Some(user) = spec.user.as_deref().filter(|u| !u.is_empty()) {
            let found = User::from_name(user)
                .map_err(|e| start_err(name, format!("user {user}: {e}")))?
                .ok_or_else(|| start_err(name, format!("no user {user}")))?;
            if found.uid != nix::unistd::geteuid() {
                let gid = match spec.group.as_deref().filter(|g| !g.is_empty()) {
                    Some(g) => {
                        nix::unistd::Group::from_name(g)
                            .map_err(|e| start_err(name, format!("group {g}: {e}")))?
                            .ok_or_else(|| start_err(name, format!("no group {g}")))?
                            .gid
                    }
                    None => found.gid,
                };
                std_cmd.gid(gid.as_raw()).uid(found.uid.as_raw());
                if !spec.env.iter().any(|(k, _)| k == "HOME") {
                    std_cmd.env("HOME", &found.dir);
                }
                std_cmd.env("USER", user).env("LOGNAME", user);
            }
        }
        let child = std_cmd
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| start_err(name, e))?;
        let pid = child.id();
        // Detached: the child outlives us; dropping the handle does not kill it.
        drop(child);
        let pidfile = pidfile(&spec.log, name);
        fs::write(&pidfile, format!("{pid}\n")).map_err(|e| start_err(name, e))?;
        Ok(ProcessRecord {
            name: spec.name.clone(),
            backend: self.backend(),
            pid: Some(pid),
            command: spec.command.clone(),
            log: spec.log.clone(),
            unit: None,
            address: spec.address.clone(),
            launch: Some(spec.launch()),
        })
    }

    fn stop(&self, record: &ProcessRecord) -> Result<(), SupervisorError> {
        let pidfile = pidfile(&record.log, &record.name);
        let pid = record.pid.or_else(|| {
            fs_err::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        });
        if let Some(pid) = pid {
            if is_group_leader_alive(pid) || !group_members(pid).is_empty() {
                stop_pid_group(pid, self.grace);
            } else {
                reap(pid);
            }
            if !group_members(pid).is_empty() {
                return Err(SupervisorError::Stop {
                    name: record.name.clone(),
                    detail: format!("process group {pid} survived KILL"),
                });
            }
        }
        let _ = fs_err::remove_file(&pidfile);
        Ok(())
    }

    fn status(&self, record: &ProcessRecord) -> ProcStatus {
        let Some(pid) = record.pid else {
            return ProcStatus::Stopped;
        };
        reap(pid);
        if is_group_leader_alive(pid) {
            ProcStatus::Running { pid }
        } else if pidfile(&record.log, &record.name).exists() {
            ProcStatus::Failed {
                detail: format!("pid {pid} is gone (see {})", record.log.display()),
            }
        } else {
            ProcStatus::Stopped
        }
    }
}

// ---------------------------------------------------------------------------------
// systemd backend

/// What DevStack's unit writers take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UnitParams<'a> {
    pub service: &'a str,
    pub command: &'a str,
    pub group: Option<&'a str>,
    pub user: &'a str,
    /// "A=1 B=2" (SYSTEMD_ENV_VARS[SVC] prepended), empty for none.
    pub env_vars: &'a str,
    /// `$PATH` as the caller has it.
    pub path: &'a str,
    /// `$(which kill)`.
    pub kill_path: &'a str,
}

/// The unit's name: `devstack@NAME.service`.
pub(crate) fn unit_name(service: &str) -> String {
    format!("devstack@{service}.service")
}

/// An ini file built the way DevStack's bash `iniset` builds one: a missing section
/// is appended after a blank line, a new option goes right after its section's
/// header (so options end up in reverse order), an existing one is replaced in place.
#[derive(Default)]
struct IniSim {
    lines: Vec<String>,
}

impl IniSim {
    fn set(&mut self, section: &str, option: &str, value: &str) {
        let header = format!("[{section}]");
        let line = format!("{option} = {value}");
        let Some(start) = self.lines.iter().position(|l| *l == header) else {
            self.lines.push(String::new());
            self.lines.push(header);
            self.lines.push(line);
            return;
        };
        let end = self.lines[start + 1..]
            .iter()
            .position(|l| l.starts_with('['))
            .map_or(self.lines.len(), |i| start + 1 + i);
        let prefix = format!("{option} = ");
        if let Some(i) = (start + 1..end).find(|&i| self.lines[i].starts_with(&prefix)) {
            self.lines[i] = line;
        } else {
            self.lines.insert(start + 1, line);
        }
    }

    fn text(&self) -> String {
        let mut out = self.lines.join("\n");
        out.push('\n');
        out
    }
}

/// The text of `devstack@NAME.service` exactly as DevStack's `write_user_unit_file`
/// (or `write_uwsgi_user_unit_file`, when the command mentions uwsgi) leaves it.
pub(crate) fn unit_text(p: &UnitParams<'_>) -> String {
    let unit = unit_name(p.service);
    let mut ini = IniSim::default();
    ini.set("Unit", "Description", &format!("Devstack {unit}"));
    ini.set("Service", "Environment", &format!("\"PATH={}\"", p.path));
    let reload = format!("{} -HUP $MAINPID", p.kill_path);
    if p.command.contains("uwsgi") {
        ini.set("Service", "SyslogIdentifier", &unit);
        ini.set("Service", "User", p.user);
        ini.set("Service", "ExecStart", p.command);
        ini.set("Service", "ExecReload", &reload);
        ini.set("Service", "Type", "notify");
        ini.set("Service", "KillMode", "process");
        ini.set("Service", "Restart", "always");
        ini.set("Service", "NotifyAccess", "all");
        ini.set("Service", "RestartForceExitStatus", "100");
    } else {
        ini.set("Service", "User", p.user);
        ini.set("Service", "ExecStart", p.command);
        ini.set("Service", "KillMode", "process");
        ini.set("Service", "TimeoutStopSec", "300");
        ini.set("Service", "ExecReload", &reload);
    }
    if !p.env_vars.is_empty() {
        ini.set("Service", "Environment", p.env_vars);
    }
    if let Some(group) = p.group.filter(|g| !g.is_empty()) {
        ini.set("Service", "Group", group);
    }
    ini.set("Install", "WantedBy", "multi-user.target");
    ini.text()
}

/// The unit's `ExecStart` for `command`. Our own supervisor runs commands with
/// `bash -c`, and the services' own commands start with bash's `exec` (no shell left
/// between the supervisor and the server); systemd runs the program itself, so the
/// word goes ("Failed to locate executable exec" otherwise).
fn exec_start(command: &str) -> &str {
    command
        .trim_start()
        .strip_prefix("exec ")
        .map_or(command, str::trim_start)
}

/// `KEY=VALUE` for the unit's `Environment =` line: quoted when the value holds a
/// space (systemd splits the line at spaces; a PATH or an option list may hold them).
fn environment_word(key: &str, value: &str) -> String {
    if value.contains(char::is_whitespace) {
        format!(
            "\"{key}={}\"",
            value.replace('\\', "\\\\").replace('"', "\\\"")
        )
    } else {
        format!("{key}={value}")
    }
}

/// Units `devstack@NAME.service` driven by systemctl.
#[derive(Debug, Clone)]
pub(crate) struct SystemdSupervisor {
    pub unit_dir: PathBuf,
}

impl Default for SystemdSupervisor {
    fn default() -> Self {
        Self {
            unit_dir: PathBuf::from(SYSTEMD_DIR),
        }
    }
}

fn systemctl(args: &[&str]) -> Result<String, String> {
    Cmd::new("systemctl")
        .args(args)
        .capture()
        .timeout(Duration::from_secs(120))
        .run()
        .map(|o| o.stdout)
        .map_err(|e| format!("{e}: {}", e.tail().join(" / ")))
}

fn main_pid(unit: &str) -> Option<u32> {
    let out = Cmd::new("systemctl")
        .args(["show", "--property=MainPID", "--value", unit])
        .capture()
        .allow_failure()
        .timeout(Duration::from_secs(30))
        .run()
        .ok()?;
    out.stdout.trim().parse().ok().filter(|&p| p != 0)
}

/// Is `name` one of DevStack's unit files (`devstack@NAME.service`, `devstack.target`)?
fn is_devstack_unit(name: &str) -> bool {
    (name.starts_with("devstack@") && name.ends_with(".service")) || name == "devstack.target"
}

/// Stops every `devstack@` unit still running, the way DevStack's documentation stops
/// a whole cloud (`systemctl stop devstack@*`): a plugin's own units, written with
/// `write_user_unit_file` and started with `$SYSTEMCTL`, are in no record of ours.
pub(crate) fn stop_all_units() -> Result<(), String> {
    systemctl(&["stop", "devstack@*"]).map(drop)
}

/// Removes DevStack's unit files from `dir` (ours and the plugins'
/// `write_user_unit_file` ones) and their `*.wants/` links, as DevStack's clean.sh
/// does, then has systemd forget them. Returns the files removed.
pub(crate) fn remove_unit_files(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs_err::read_dir(dir) else {
        return removed;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // systemd's names are case-sensitive: `x.WANTS` is no wants directory.
        if path.extension() == Some(std::ffi::OsStr::new("wants")) && path.is_dir() {
            for link in fs_err::read_dir(&path)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
            {
                if is_devstack_unit(&link.file_name().to_string_lossy())
                    && fs_err::remove_file(link.path()).is_ok()
                {
                    removed.push(link.path());
                }
            }
        } else if is_devstack_unit(&name) && fs_err::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    if !removed.is_empty() && systemd_is_pid1() {
        let _ = systemctl(&["daemon-reload"]);
        // A failed unit stays listed (and `is-failed`) after its file is gone.
        let _ = systemctl(&["reset-failed", "devstack@*"]);
    }
    removed
}

impl Supervisor for SystemdSupervisor {
    fn backend(&self) -> Backend {
        Backend::Systemd
    }

    fn start(&self, spec: &ProcessSpec) -> Result<ProcessRecord, SupervisorError> {
        let name = spec.name.as_str();
        let unit = unit_name(name);
        let env_vars: Vec<String> = spec
            .env
            .iter()
            .map(|(k, v)| environment_word(k, v))
            .collect();
        let env_vars = env_vars.join(" ");
        let user = spec
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "root".into());
        let path = std::env::var("PATH").unwrap_or_default();
        let kill_path = crate::system::process::which("kill")
            .map_or_else(|| "/bin/kill".into(), |p| p.display().to_string());
        let text = unit_text(&UnitParams {
            service: name,
            command: exec_start(&spec.command),
            group: spec.group.as_deref(),
            user: &user,
            env_vars: &env_vars,
            path: &path,
            kill_path: &kill_path,
        });
        fs::create_dir_all(&self.unit_dir).map_err(|e| start_err(name, e))?;
        fs::write(self.unit_dir.join(&unit), text).map_err(|e| start_err(name, e))?;
        // A unit that failed (an earlier stack) may have hit its start limit, which
        // refuses `start` until it is reset.
        let _ = systemctl(&["reset-failed", &unit]);
        for args in [
            &["daemon-reload"][..],
            &["enable", &unit],
            &["start", &unit],
        ] {
            systemctl(args).map_err(|e| start_err(name, e))?;
        }
        Ok(ProcessRecord {
            name: spec.name.clone(),
            backend: self.backend(),
            pid: main_pid(&unit),
            command: spec.command.clone(),
            log: spec.log.clone(),
            unit: Some(unit),
            address: spec.address.clone(),
            launch: Some(spec.launch()),
        })
    }

    /// `systemctl restart devstack@NAME.service`, as DevStack's users type it; a unit
    /// whose file is gone is written and started again from the record.
    fn restart(&self, record: &ProcessRecord) -> Result<ProcessRecord, SupervisorError> {
        let unit = record
            .unit
            .clone()
            .unwrap_or_else(|| unit_name(&record.name));
        if !self.unit_dir.join(&unit).is_file() {
            return self.start(&ProcessSpec::of_record(record)?);
        }
        systemctl(&["restart", &unit]).map_err(|e| start_err(&record.name, e))?;
        Ok(ProcessRecord {
            pid: main_pid(&unit),
            unit: Some(unit),
            ..record.clone()
        })
    }

    fn stop(&self, record: &ProcessRecord) -> Result<(), SupervisorError> {
        let unit = record
            .unit
            .clone()
            .unwrap_or_else(|| unit_name(&record.name));
        for args in [&["stop", unit.as_str()][..], &["disable", &unit]] {
            systemctl(args).map_err(|detail| SupervisorError::Stop {
                name: record.name.clone(),
                detail,
            })?;
        }
        Ok(())
    }

    fn status(&self, record: &ProcessRecord) -> ProcStatus {
        let unit = record
            .unit
            .clone()
            .unwrap_or_else(|| unit_name(&record.name));
        let state = Cmd::new("systemctl")
            .args(["is-active", &unit])
            .capture()
            .allow_failure()
            .timeout(Duration::from_secs(30))
            .run()
            .map(|o| o.stdout.trim().to_owned())
            .unwrap_or_default();
        match state.as_str() {
            "active" | "activating" | "reloading" => ProcStatus::Running {
                pid: main_pid(&unit).unwrap_or(0),
            },
            "failed" => ProcStatus::Failed {
                detail: format!("{unit} failed (journalctl -u {unit})"),
            },
            _ => ProcStatus::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spec(dir: &Path, name: &str, command: &str) -> ProcessSpec {
        ProcessSpec {
            name: name.into(),
            command: command.into(),
            log: dir.join("logs").join(format!("{name}.log")),
            ..ProcessSpec::default()
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(5) {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn own_backend_runs_logs_and_stops_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let sup = OwnSupervisor::default();
        let rec = sup
            .start(&ProcessSpec {
                env: vec![("GREETING".into(), "hello".into())],
                ..spec(
                    dir.path(),
                    "svc",
                    "echo $GREETING; echo oops >&2; exec sleep 30",
                )
            })
            .unwrap();
        let pid = rec.pid.unwrap();
        assert_eq!(sup.status(&rec), ProcStatus::Running { pid });
        let pidfile = dir.path().join("logs/svc.pid");
        assert_eq!(
            fs_err::read_to_string(&pidfile).unwrap().trim(),
            pid.to_string()
        );
        assert!(wait_for(|| fs_err::read_to_string(&rec.log)
            .unwrap_or_default()
            == "hello\noops\n"));
        let t0 = Instant::now();
        sup.stop(&rec).unwrap();
        assert!(t0.elapsed() < Duration::from_secs(2), "TERM was enough");
        assert_eq!(sup.status(&rec), ProcStatus::Stopped);
        assert!(!pidfile.exists());
    }

    #[test]
    fn own_backend_kills_a_child_that_ignores_term_after_the_grace() {
        let dir = tempfile::tempdir().unwrap();
        let sup = OwnSupervisor {
            grace: Duration::from_millis(300),
        };
        let rec = sup
            .start(&spec(
                dir.path(),
                "stubborn",
                "trap '' TERM; echo ready; while :; do sleep 0.05; done",
            ))
            .unwrap();
        assert!(wait_for(|| fs_err::read_to_string(&rec.log)
            .unwrap_or_default()
            .contains("ready")));
        let t0 = Instant::now();
        sup.stop(&rec).unwrap();
        assert!(
            t0.elapsed() >= Duration::from_millis(300),
            "waited for the grace"
        );
        assert!(group_members(rec.pid.unwrap()).is_empty());
    }

    #[test]
    fn own_backend_stops_grandchildren_with_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let sup = OwnSupervisor::default();
        let rec = sup
            .start(&spec(
                dir.path(),
                "family",
                "bash -c 'sleep 30 & sleep 31 & wait' & wait",
            ))
            .unwrap();
        let pid = rec.pid.unwrap();
        assert!(
            wait_for(|| group_members(pid).len() >= 4),
            "{:?}",
            group_members(pid)
        );
        sup.stop(&rec).unwrap();
        assert!(group_members(pid).is_empty());
    }

    #[test]
    fn a_process_that_died_is_failed_not_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let sup = OwnSupervisor::default();
        let rec = sup.start(&spec(dir.path(), "crash", "exit 3")).unwrap();
        assert!(wait_for(|| matches!(
            sup.status(&rec),
            ProcStatus::Failed { .. }
        )));
        sup.stop(&rec).unwrap();
        assert_eq!(sup.status(&rec), ProcStatus::Stopped);
    }

    #[test]
    fn own_backend_restarts_a_process_as_it_was_started_with_the_code_on_disk_now() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("serve.sh");
        fs_err::write(&script, "echo \"v1 $GREETING\"; exec sleep 30\n").unwrap();
        let sup = OwnSupervisor::default();
        let rec = sup
            .start(&ProcessSpec {
                env: vec![("GREETING".into(), "hello".into())],
                workdir: Some(dir.path().to_path_buf()),
                ..spec(dir.path(), "svc", "exec bash ./serve.sh")
            })
            .unwrap();
        assert!(wait_for(|| fs_err::read_to_string(&rec.log)
            .unwrap_or_default()
            .contains("v1 hello")));
        fs_err::write(&script, "echo \"v2 $GREETING\"; exec sleep 30\n").unwrap();
        let again = sup.restart(&rec).unwrap();
        let (old, new) = (rec.pid.unwrap(), again.pid.unwrap());
        assert_ne!(old, new);
        assert!(group_members(old).is_empty());
        assert_eq!(sup.status(&again), ProcStatus::Running { pid: new });
        assert!(wait_for(|| fs_err::read_to_string(&rec.log)
            .unwrap_or_default()
            .ends_with("v1 hello\nv2 hello\n")));
        assert_eq!(again.launch, rec.launch);
        sup.stop(&again).unwrap();
    }

    #[test]
    fn a_record_without_its_command_is_not_restarted_blindly() {
        let dir = tempfile::tempdir().unwrap();
        let sup = OwnSupervisor::default();
        let mut rec = sup
            .start(&spec(dir.path(), "svc", "exec sleep 30"))
            .unwrap();
        rec.command.clear();
        let err = sup.restart(&rec).unwrap_err();
        assert!(err.to_string().contains("not recorded"), "{err}");
        assert!(matches!(sup.status(&rec), ProcStatus::Running { .. }));
        sup.stop(&rec).unwrap();
    }

    #[test]
    fn a_recycled_pid_is_not_ours() {
        // Our own pid leads no group of its own in the test harness... unless it does;
        // pid 1 never leads a group we started.
        assert!(!is_group_leader_alive(u32::MAX - 1));
    }

    #[test]
    fn exec_start_runs_the_program_not_bashs_exec() {
        assert_eq!(
            exec_start("exec /usr/bin/uwsgi --ini /etc/keystone/keystone-uwsgi-public.ini"),
            "/usr/bin/uwsgi --ini /etc/keystone/keystone-uwsgi-public.ini"
        );
        assert_eq!(
            exec_start("/bin/bash -c 'exec sleep 1'"),
            "/bin/bash -c 'exec sleep 1'"
        );
        assert_eq!(environment_word("A", "1"), "A=1");
        assert_eq!(environment_word("OPTS", "a \"b\""), "\"OPTS=a \\\"b\\\"\"");
    }

    #[test]
    fn remove_unit_files_takes_devstacks_units_and_their_links_only() {
        let dir = tempfile::tempdir().unwrap();
        let wants = dir.path().join("multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        for f in [
            "devstack@n-cond.service",
            "devstack@sys-own.service",
            "ssh.service",
        ] {
            fs::write(dir.path().join(f), "[Unit]\n").unwrap();
        }
        for f in ["devstack@n-cond.service", "ssh.service"] {
            std::os::unix::fs::symlink(dir.path().join(f), wants.join(f)).unwrap();
        }
        let mut removed = remove_unit_files(dir.path());
        removed.sort();
        assert_eq!(
            removed,
            vec![
                dir.path().join("devstack@n-cond.service"),
                dir.path().join("devstack@sys-own.service"),
                wants.join("devstack@n-cond.service"),
            ]
        );
        assert!(dir.path().join("ssh.service").exists());
        assert!(wants.join("ssh.service").exists());
    }

    fn params<'a>(command: &'a str, group: Option<&'a str>, env_vars: &'a str) -> UnitParams<'a> {
        UnitParams {
            service: "n-api",
            command,
            group,
            user: "stack",
            env_vars,
            path: "/opt/stack/venv/bin:/usr/bin:/bin",
            kill_path: "/usr/bin/kill",
        }
    }

    #[test]
    fn unit_text_is_devstacks() {
        let text = unit_text(&params(
            "/opt/stack/venv/bin/nova-api --config-file /etc/nova/nova.conf",
            None,
            "",
        ));
        assert_eq!(
            text,
            "\n[Unit]\nDescription = Devstack devstack@n-api.service\n\n[Service]\n\
             ExecReload = /usr/bin/kill -HUP $MAINPID\nTimeoutStopSec = 300\nKillMode = process\n\
             ExecStart = /opt/stack/venv/bin/nova-api --config-file /etc/nova/nova.conf\nUser = stack\n\
             Environment = \"PATH=/opt/stack/venv/bin:/usr/bin:/bin\"\n\n[Install]\nWantedBy = multi-user.target\n"
        );
    }

    #[test]
    fn unit_text_env_replaces_path_and_group_comes_first() {
        let text = unit_text(&params("/usr/bin/foo", Some("stack"), "A=1 B=2"));
        assert_eq!(
            text,
            "\n[Unit]\nDescription = Devstack devstack@n-api.service\n\n[Service]\nGroup = stack\n\
             ExecReload = /usr/bin/kill -HUP $MAINPID\nTimeoutStopSec = 300\nKillMode = process\n\
             ExecStart = /usr/bin/foo\nUser = stack\nEnvironment = A=1 B=2\n\n[Install]\nWantedBy = multi-user.target\n"
        );
    }

    #[test]
    fn unit_text_uwsgi_variant() {
        let text = unit_text(&params(
            "/opt/stack/venv/bin/uwsgi --procname-prefix nova-api --ini /etc/nova/nova-api-uwsgi.ini",
            None,
            "",
        ));
        assert_eq!(
            text,
            "\n[Unit]\nDescription = Devstack devstack@n-api.service\n\n[Service]\n\
             RestartForceExitStatus = 100\nNotifyAccess = all\nRestart = always\nKillMode = process\nType = notify\n\
             ExecReload = /usr/bin/kill -HUP $MAINPID\n\
             ExecStart = /opt/stack/venv/bin/uwsgi --procname-prefix nova-api --ini /etc/nova/nova-api-uwsgi.ini\n\
             User = stack\nSyslogIdentifier = devstack@n-api.service\n\
             Environment = \"PATH=/opt/stack/venv/bin:/usr/bin:/bin\"\n\n[Install]\nWantedBy = multi-user.target\n"
        );
    }
}
