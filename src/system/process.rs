//! The one builder for every child process the program starts.
//!
//! Every child gets an explicit environment (nothing leaks from ours unless asked), no
//! stdin, its own process group (so a timeout or a stop reaches its children too), its
//! output streamed line by line to a sink with secrets redacted, the last lines kept for
//! the error report, and an optional timeout: TERM to the group, then KILL after a grace.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::system::redact::Redactor;

/// How many lines of output an error report keeps.
pub(crate) const TAIL_LINES: usize = 20;
/// Time between TERM and KILL when a timeout or a stop ends a process group.
pub(crate) const KILL_GRACE: Duration = Duration::from_secs(5);

/// Variables passed through from our own environment to every child unless the
/// builder says otherwise: enough to find programs and behave, nothing secret.
const PASSTHROUGH_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "TERM", "TMPDIR", "LANG", "LC_ALL",
];

/// Marks every descriptor this process inherited above stderr close-on-exec, so that
/// no child keeps one: a daemon started by a run outlives it, and an inherited
/// descriptor (the `flock` of the shell that ran `./stack.sh`, a CI runner's pipe)
/// would stay open as long as MariaDB runs, holding the caller's lock or keeping its
/// pipe from reaching end-of-file. Our own descriptors are opened close-on-exec by
/// the standard library already; children get theirs through `Cmd` only.
pub(crate) fn close_inherited_descriptors_on_exec() {
    let Ok(entries) = fs_err::read_dir("/proc/self/fd") else {
        return;
    };
    let inherited: Vec<std::os::fd::RawFd> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in inherited {
        // The directory's own descriptor is closed by now: EBADF, ignored.
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where streamed output lines go (the run log, the terminal, a test buffer).
pub trait LineSink: Send + Sync {
    fn line(&self, source: &str, stream: Stream, line: &str);
    /// A line of our own (what devstack did and why), for the run log only.
    fn note(&self, _text: &str) {}
}

/// The process factory of a run: every child it makes streams its output to the
/// run's sink, redacted with the run's secrets.
#[derive(Clone)]
pub struct Spawner {
    sink: Arc<dyn LineSink>,
    redactor: Redactor,
}

impl Spawner {
    pub fn new(sink: Arc<dyn LineSink>) -> Self {
        Self {
            sink,
            redactor: Redactor::default(),
        }
    }

    /// A child process whose output goes to the run's sink, redacted.
    pub fn cmd(&self, program: impl Into<OsString>) -> Cmd {
        Cmd::new(program)
            .sink(self.sink.clone())
            .redactor(self.redactor.clone())
    }

    /// A line of our own in the run log, redacted.
    pub fn note(&self, text: &str) {
        self.sink.note(&self.redactor.redact(text));
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn set_redactor(&mut self, redactor: Redactor) {
        self.redactor = redactor;
    }
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawner").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("could not start `{program}`")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed with {status}")]
    Failed {
        command: String,
        status: ExitStatus,
        tail: Vec<String>,
    },
    #[error("`{command}` was stopped: devstack was interrupted")]
    Interrupted { command: String, tail: Vec<String> },
    #[error("`{command}` did not finish within {} s and was stopped", timeout.as_secs())]
    Timeout {
        command: String,
        timeout: Duration,
        tail: Vec<String>,
    },
}

impl ProcessError {
    /// The last lines of output, for the report.
    pub fn tail(&self) -> &[String] {
        match self {
            Self::Spawn { .. } => &[],
            Self::Failed { tail, .. }
            | Self::Timeout { tail, .. }
            | Self::Interrupted { tail, .. } => tail,
        }
    }
}

/// What a finished command left behind.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    /// The whole stdout, when [`Cmd::capture`] asked for it (not redacted: it is data).
    pub stdout: String,
    /// The last [`TAIL_LINES`] lines of stdout and stderr, redacted.
    pub tail: Vec<String>,
}

/// A child process to run. See the module documentation.
#[derive(Clone)]
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    clear_env: bool,
    dir: Option<PathBuf>,
    timeout: Option<Duration>,
    capture: bool,
    check: bool,
    label: Option<String>,
    sink: Option<Arc<dyn LineSink>>,
    redactor: Redactor,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            clear_env: true,
            dir: None,
            timeout: None,
            capture: false,
            check: true,
            label: None,
            sink: None,
            redactor: Redactor::default(),
        }
    }

    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one variable in the child's environment.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    #[must_use]
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        for (k, v) in vars {
            self.env.push((k.into(), Some(v.into())));
        }
        self
    }

    /// Removes a variable that would otherwise be passed through.
    #[must_use]
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// Passes our whole environment through (for the plugin shell and user-facing tools
    /// whose users expect their environment; still no stdin, own group, streamed output).
    #[must_use]
    pub fn inherit_env(mut self) -> Self {
        self.clear_env = false;
        self
    }

    #[must_use]
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Keeps the whole stdout in [`Output::stdout`].
    #[must_use]
    pub fn capture(mut self) -> Self {
        self.capture = true;
        self
    }

    /// A non-zero exit is returned as `Ok` with its status instead of an error.
    #[must_use]
    pub fn allow_failure(mut self) -> Self {
        self.check = false;
        self
    }

    /// The name lines are attributed to in the log (default: the program's file name).
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    #[must_use]
    pub fn sink(mut self, sink: Arc<dyn LineSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    #[must_use]
    pub fn redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// The command line as a person would type it, secrets redacted (for messages).
    pub fn display(&self) -> String {
        let mut words = vec![self.program.to_string_lossy().into_owned()];
        for arg in &self.args {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains(char::is_whitespace) {
                words.push(format!("'{arg}'"));
            } else {
                words.push(arg.into_owned());
            }
        }
        self.redactor.redact(&words.join(" ")).into_owned()
    }

    fn source_label(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            Path::new(&self.program).file_name().map_or_else(
                || self.program.to_string_lossy().into_owned(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
    }

    /// Builds the `std` command with the environment and process-group rules applied.
    #[allow(clippy::disallowed_methods)] // the one place a child process is made
    pub fn to_std(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).stdin(Stdio::null()).process_group(0);
        if self.clear_env {
            cmd.env_clear();
            for key in PASSTHROUGH_ENV {
                if let Some(value) = std::env::var_os(key) {
                    cmd.env(key, value);
                }
            }
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = &self.dir {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Runs the command to completion (its time counted in DevStack's timing
    /// bucket for what it runs, if any).
    pub fn run(&self) -> Result<Output, ProcessError> {
        match crate::timing::of_command(&self.program, &self.args) {
            Some(bucket) => crate::timing::timed(bucket, || self.run_to_end()),
            None => self.run_to_end(),
        }
    }

    fn run_to_end(&self) -> Result<Output, ProcessError> {
        tracing::debug!(command = %self.display(), timeout = ?self.timeout, "child process");
        let mut child = self
            .to_std()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                program: self.program.to_string_lossy().into_owned(),
                source,
            })?;
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let label = self.source_label();
        let stdout = child
            .stdout
            .take()
            .map(|out| self.spawn_reader(out, Stream::Stdout, &label, &tail, self.capture));
        let stderr = child
            .stderr
            .take()
            .map(|err| self.spawn_reader(err, Stream::Stderr, &label, &tail, false));

        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            status
        });
        // Wait in slices: a timeout or an interrupt (Ctrl-C) stops the whole group.
        let deadline = self.timeout.map(|t| std::time::Instant::now() + t);
        let mut timed_out = false;
        let mut interrupted = false;
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            timed_out = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            interrupted = crate::system::interrupt::requested();
            if timed_out || interrupted {
                stop_group(pid, KILL_GRACE, || rx.try_recv().is_ok());
                break;
            }
        }
        let status = waiter
            .join()
            .expect("waiter thread panicked")
            .map_err(|source| ProcessError::Spawn {
                program: self.program.to_string_lossy().into_owned(),
                source,
            })?;
        let captured = stdout.and_then(|h| h.join().ok()).unwrap_or_default();
        if let Some(h) = stderr {
            let _ = h.join();
        }
        let tail: Vec<String> = tail.lock().expect("tail lock").iter().cloned().collect();
        if interrupted {
            return Err(ProcessError::Interrupted {
                command: self.display(),
                tail,
            });
        }
        if timed_out {
            return Err(ProcessError::Timeout {
                command: self.display(),
                timeout: self.timeout.unwrap_or_default(),
                tail,
            });
        }
        if self.check && !status.success() {
            return Err(ProcessError::Failed {
                command: self.display(),
                status,
                tail,
            });
        }
        Ok(Output {
            status,
            stdout: captured,
            tail,
        })
    }

    fn spawn_reader(
        &self,
        pipe: impl Read + Send + 'static,
        stream: Stream,
        label: &str,
        tail: &Arc<Mutex<VecDeque<String>>>,
        capture: bool,
    ) -> thread::JoinHandle<String> {
        let sink = self.sink.clone();
        let redactor = self.redactor.clone();
        let tail = Arc::clone(tail);
        let label = label.to_owned();
        thread::spawn(move || {
            let mut captured = String::new();
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let raw = String::from_utf8_lossy(&buf);
                if capture {
                    captured.push_str(&raw);
                }
                let line = redactor
                    .redact(raw.trim_end_matches(['\n', '\r']))
                    .into_owned();
                if let Some(sink) = &sink {
                    sink.line(&label, stream, &line);
                }
                let mut tail = tail.lock().expect("tail lock");
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
            captured
        })
    }
}

/// Sends TERM to a process group, waits up to `grace` for `gone()` to say it ended
/// and for every other member of the group to end too (a child that ignores TERM
/// must not outlive its leader), then sends KILL. Errors (the group is already gone)
/// are ignored: the goal is reached.
pub(crate) fn stop_group(pgid: Pid, grace: Duration, mut gone: impl FnMut() -> bool) {
    let _ = killpg(pgid, Signal::SIGTERM);
    let step = Duration::from_millis(20);
    let mut waited = Duration::ZERO;
    let members = || {
        u32::try_from(pgid.as_raw())
            .map(group_members)
            .unwrap_or_default()
    };
    // `gone` may say so only once (a channel's message): it is latched.
    let mut leader_gone = false;
    while waited < grace {
        leader_gone = leader_gone || gone();
        if leader_gone && members().is_empty() {
            return;
        }
        thread::sleep(step);
        waited += step;
    }
    let _ = killpg(pgid, Signal::SIGKILL);
}

// ---------------------------------------------------------------------------------
// /proc helpers and PATH

/// State letter and process group of a live process (`None`: no such process).
fn proc_stat(pid: u32) -> Option<(char, i32)> {
    let text = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Is `pid` alive (not a zombie) and still the leader of its own group (so not a
/// recycled pid of some other program)?
pub(crate) fn is_group_leader_alive(pid: u32) -> bool {
    matches!(proc_stat(pid), Some((state, pgrp)) if state != 'Z' && state != 'X' && u32::try_from(pgrp).ok() == Some(pid))
}

/// Every live (non-zombie) process in process group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| {
            matches!(proc_stat(pid), Some((state, pgrp)) if state != 'Z' && state != 'X' && u32::try_from(pgrp).ok() == Some(pgid))
        })
        .collect()
}

/// Finds a program on PATH.
pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<String>>);
    impl LineSink for Collect {
        fn line(&self, source: &str, _stream: Stream, line: &str) {
            self.0.lock().unwrap().push(format!("{source}: {line}"));
        }
    }

    #[test]
    fn captures_stdout_and_streams_redacted_lines() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let out = Cmd::new("sh")
            .args(["-c", "echo one; echo pw=hunter22 >&2"])
            .capture()
            .label("t")
            .sink(sink.clone())
            .redactor(Redactor::new(["hunter22"]))
            .run()
            .unwrap();
        assert_eq!(out.stdout, "one\n");
        let mut lines = sink.0.lock().unwrap().clone();
        lines.sort();
        assert_eq!(lines, vec!["t: one", "t: pw=***"]);
    }

    #[test]
    fn failure_keeps_the_tail() {
        let err = Cmd::new("sh")
            .args(["-c", "seq 1 30; exit 3"])
            .run()
            .unwrap_err();
        let ProcessError::Failed { status, tail, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().map(String::as_str), Some("30"));
    }

    #[test]
    fn environment_is_explicit() {
        // SAFETY-free: we read our own env only through the child.
        let out = Cmd::new("sh")
            .args(["-c", "echo \"${CARGO_PKG_NAME:-unset} ${X:-none}\""])
            .env("X", "set")
            .capture()
            .run()
            .unwrap();
        assert_eq!(out.stdout.trim(), "unset set");
    }

    #[test]
    fn timeout_stops_the_whole_group() {
        let err = Cmd::new("sh")
            .args(["-c", "sleep 30 & sleep 30; echo never"])
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
    }

    #[test]
    fn timeout_kills_a_child_that_ignores_term_after_its_leader_ended() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!(
            "(trap '' TERM; echo $BASHPID > {}; exec sleep 30) & sleep 30",
            pidfile.display()
        );
        let err = Cmd::new("bash")
            .args(["-c", &script])
            .timeout(Duration::from_millis(1500))
            .run()
            .unwrap_err();
        assert!(matches!(err, ProcessError::Timeout { .. }), "{err}");
        let pid: u32 = fs_err::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // KILL was sent when run() returns; the kernel takes a moment to tear down.
        let mut state = String::new();
        for _ in 0..100 {
            state = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if state
                .rsplit(')')
                .next()
                .is_none_or(|rest| rest.trim_start().starts_with('Z'))
            {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!("the child that ignored TERM survived: {state}");
    }

    #[test]
    fn stdin_is_closed() {
        let out = Cmd::new("sh")
            .args(["-c", "cat; echo done"])
            .capture()
            .run()
            .unwrap();
        assert_eq!(out.stdout, "done\n");
    }
}
