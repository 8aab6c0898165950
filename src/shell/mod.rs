//! The plugin shell: one long-lived bash process per run, driven over a framed channel.
//!
//! DevStack plugins are bash fragments sourced into one shell, sharing one variable
//! space across every hook of a run. This module starts that shell (`inc/driver`), sends
//! it commands (source a hook, call a function, report variables) and serves the calls
//! its function library makes back into Rust, through a [`Host`].

pub(crate) mod protocol;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, PipeReader, PipeWriter, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::unistd::Pid;

use crate::system::process::{Cmd, KILL_GRACE, LineSink, Stream, TAIL_LINES, stop_group};
use crate::system::redact::Redactor;
pub(crate) use protocol::{Call, Frame, Reply};

/// The descriptor of the shell's event channel (inc/driver's _DS_OUT).
const CHANNEL_FD: u32 = 62;

/// The default time one hook may take before it is reported as hung.
pub(crate) const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long the driver may take to load the function library.
const LIBRARY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the shell's library asks of Rust while a command runs.
pub(crate) trait Callbacks {
    /// Serves a `_ds_call` from the shell library.
    fn call(&mut self, call: &Call) -> Reply;
    /// An `echo_summary` line: progress a person wants to see.
    fn summary(&mut self, text: &str);
    /// A `warn` line, or a failure that does not stop the run (unstack, clean).
    fn warning(&mut self, text: &str);
    /// The batch's file number `index` starts (for progress).
    fn hook_started(&mut self, _index: usize) {}
}

/// Where a hook failed, as the shell's ERR trap saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    pub status: i32,
    pub file: String,
    pub line: u32,
    pub function: String,
    pub command: String,
    /// `file:line:function`, innermost first.
    pub trace: Vec<String>,
    /// The last lines of the shell's output before the failure.
    pub tail: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("could not start the plugin shell ({driver})")]
    Start {
        driver: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` failed with status {} at {}:{}", .0.command, .0.status, .0.file, .0.line)]
    Failed(Box<Failure>),
    #[error("the plugin shell exited{} while {doing}", status.map(|s| format!(" with status {s}")).unwrap_or_default())]
    Died {
        status: Option<i32>,
        doing: String,
        tail: Vec<String>,
    },
    #[error("{doing} did not finish within {} s; the plugin shell was stopped", after.as_secs())]
    Timeout {
        doing: String,
        after: Duration,
        tail: Vec<String>,
    },
    #[error("devstack was interrupted while {doing}; the plugin shell was stopped")]
    Interrupted { doing: String, tail: Vec<String> },
    #[error("could not write {path} for the plugin shell")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the plugin shell broke the protocol: {0}")]
    Protocol(String),
}

impl ShellError {
    pub fn tail(&self) -> &[String] {
        match self {
            Self::Failed(f) => &f.tail,
            Self::Died { tail, .. }
            | Self::Timeout { tail, .. }
            | Self::Interrupted { tail, .. } => tail,
            Self::Start { .. } | Self::Io { .. } | Self::Protocol(_) => &[],
        }
    }
}

/// One hook file of a batch, as the shell timed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HookResult {
    pub index: usize,
    pub status: i32,
    pub seconds: f64,
}

/// A batch that stopped: the error, and which file when known.
#[derive(Debug)]
pub(crate) struct BatchError {
    pub index: Option<usize>,
    pub error: ShellError,
}

enum Event {
    Frame(Frame),
    /// Something that is not a frame came down the channel (a hook wrote to its
    /// descriptor): the channel cannot be trusted any more.
    Malformed(String),
    Closed,
}

/// The shell's stdout and stderr: into the log sink, redacted, with a rolling tail.
struct OutputTap {
    sink: Arc<dyn LineSink>,
    redactor: RwLock<Redactor>,
    tail: Mutex<VecDeque<String>>,
}

/// A line `set -o xtrace` wrote for a call into our own library's internals
/// (`+ _ds_call ...` from a shim a traced plugin called): the functions trace
/// nothing inside (inc/rpc), but the line of the call itself is the caller's, and a
/// user reading a hook's output or a failure's last lines must not see it.
fn is_internal_trace(stream: Stream, line: &str) -> bool {
    stream == Stream::Stderr
        && line.starts_with('+')
        && line
            .split_whitespace()
            .skip(1)
            .any(|word| word.starts_with("_ds_") || word.starts_with("_DS_"))
}

impl OutputTap {
    fn line(&self, stream: Stream, raw: &str) {
        if is_internal_trace(stream, raw) {
            return;
        }
        let line = self
            .redactor
            .read()
            .expect("redactor lock")
            .redact(raw)
            .into_owned();
        self.sink.line("shell", stream, &line);
        let mut tail = self.tail.lock().expect("tail lock");
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }

    fn take_tail(&self) -> Vec<String> {
        self.tail
            .lock()
            .expect("tail lock")
            .iter()
            .cloned()
            .collect()
    }
}

/// How the shell is started.
pub(crate) struct ShellConfig {
    pub top_dir: PathBuf,
    /// The devstack binary, for the library's calls from child scripts.
    pub devstack_bin: PathBuf,
    pub sink: Arc<dyn LineSink>,
    pub hook_timeout: Duration,
    /// A private directory for files the shell reads (hook batches).
    pub work_dir: PathBuf,
    /// Extra environment for the shell (on top of the user's, minus `OS_*`).
    pub env: Vec<(String, String)>,
}

/// `USER`, `LOGNAME` and `HOME` of the running user where the run's environment lacks
/// them (CI runners, cron, systemd, `env -i`): a login shell has them, and plugins use
/// them bare (`sudo chown $USER ...`), under errexit and nounset.
fn login_env() -> Vec<(&'static str, String)> {
    use crate::env_vars::{HOME, LOGNAME, USER};
    let missing = |name: &str| std::env::var_os(name).is_none_or(|v| v.is_empty());
    if ![USER, LOGNAME, HOME].iter().any(|n| missing(n)) {
        return Vec::new();
    }
    let Ok(Some(account)) = nix::unistd::User::from_uid(nix::unistd::getuid()) else {
        return Vec::new();
    };
    let home = account.dir.to_string_lossy().into_owned();
    [
        (USER, account.name.clone()),
        (LOGNAME, account.name),
        (HOME, home),
    ]
    .into_iter()
    .filter(|(name, _)| missing(name))
    .collect()
}

/// A running plugin shell.
pub(crate) struct Shell {
    child: Child,
    pid: Pid,
    commands: PipeWriter,
    /// Held open while the shell may run; see [`Shell::start`].
    lifeline: Option<PipeWriter>,
    events: mpsc::Receiver<Event>,
    tap: Arc<OutputTap>,
    readers: Vec<thread::JoinHandle<()>>,
    driver: String,
    hook_timeout: Duration,
    /// Where hook batches are written for the shell to read.
    batch_file: PathBuf,
    /// The batch index of the hook that failed or exited, as the shell said.
    hook_index: Option<usize>,
    /// The batch's files whose failure was already said as a warning (unstack,
    /// clean): their non-zero status is not said again.
    /// The limit of what is being waited for now (the timeout says the one that
    /// applied).
    limit: Duration,
    warned: std::collections::BTreeSet<usize>,
    strict: bool,
    closed: bool,
}

impl Shell {
    pub(crate) fn start(config: &ShellConfig) -> Result<Self, ShellError> {
        let driver = config.top_dir.join("inc/driver");
        let start_err = |source| ShellError::Start {
            driver: driver.clone(),
            source,
        };
        let (cmd_read, cmd_write) = std::io::pipe().map_err(start_err)?;
        let (evt_read, evt_write) = std::io::pipe().map_err(start_err)?;
        // The lifeline: only this process holds its write end (close-on-exec), so
        // when it dies, however it dies (SIGKILL included), the shell's watcher reads
        // end-of-file and kills the shell's whole process group. A clean close
        // writes `done` first. (A parent-death signal would need an unsafe pre_exec.)
        let (life_read, life_write) = std::io::pipe().map_err(start_err)?;
        // The child inherits these three ends; ours stay close-on-exec.
        for fd in [
            cmd_read.as_raw_fd(),
            evt_write.as_raw_fd(),
            life_read.as_raw_fd(),
        ] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).map_err(|e| start_err(e.into()))?;
        }
        let mut cmd = Cmd::new("bash")
            .args(["--noprofile", "--norc"])
            .arg(&driver)
            .inherit_env()
            .env("TOP_DIR", &config.top_dir)
            .env("DEVSTACK_BIN", &config.devstack_bin)
            .env("_DS_CMD_FD", cmd_read.as_raw_fd().to_string())
            .env("_DS_EVT_FD", evt_write.as_raw_fd().to_string())
            .env("_DS_LIFE_FD", life_read.as_raw_fd().to_string())
            .env("LC_ALL", "C.UTF-8")
            .env_remove("LANG")
            .env_remove("LANGUAGE")
            .current_dir(&config.top_dir);
        // DevStack unsets every OS_* variable so a user's cloud credentials cannot leak in.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OS_") {
                cmd = cmd.env_remove(key);
            }
        }
        cmd = cmd.envs(login_env());
        cmd = cmd.envs(config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut child = cmd
            .to_std()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(start_err)?;
        drop(cmd_read);
        drop(evt_write);
        drop(life_read);
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));

        let tap = Arc::new(OutputTap {
            sink: Arc::clone(&config.sink),
            redactor: RwLock::new(Redactor::default()),
            tail: Mutex::new(VecDeque::with_capacity(TAIL_LINES)),
        });
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_output(out, Stream::Stdout, Arc::clone(&tap)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_output(err, Stream::Stderr, Arc::clone(&tap)));
        }
        let (tx, events) = mpsc::channel();
        readers.push(spawn_events(evt_read, tx));

        let mut shell = Self {
            child,
            pid,
            commands: cmd_write,
            lifeline: Some(life_write),
            events,
            tap,
            readers,
            driver: driver.to_string_lossy().into_owned(),
            hook_timeout: config.hook_timeout,
            batch_file: config
                .work_dir
                .join(format!("hooks.{}.batch", std::process::id())),
            hook_index: None,
            warned: std::collections::BTreeSet::new(),
            limit: LIBRARY_TIMEOUT,
            strict: true,
            closed: false,
        };
        // The driver says `ready` once the function library is loaded.
        match shell.next_event(LIBRARY_TIMEOUT, "loading the function library")? {
            Event::Frame(f) if f.kind == "ready" => Ok(shell),
            Event::Frame(f) => Err(ShellError::Protocol(format!(
                "expected ready, got {}",
                f.kind
            ))),
            Event::Closed | Event::Malformed(_) => Err(shell.died("loading the function library")),
        }
    }

    /// Whether the last batch's file `index` already had its failure said.
    pub(crate) fn warned(&self, index: usize) -> bool {
        self.warned.contains(&index)
    }

    /// The shell's process group (its pid): recorded, so the next run can stop what
    /// is left of it if this process is killed.
    pub(crate) fn group(&self) -> u32 {
        u32::try_from(self.pid.as_raw()).unwrap_or_default()
    }

    /// Secrets to redact from the shell's output from now on.
    pub(crate) fn set_redactor(&self, redactor: Redactor) {
        *self.tap.redactor.write().expect("redactor lock") = redactor;
    }

    /// Errexit while hooks run (stack) or failures as warnings (unstack, clean).
    pub(crate) fn set_strict(
        &mut self,
        strict: bool,
        host: &mut dyn Callbacks,
    ) -> Result<(), ShellError> {
        self.strict = strict;
        self.request(
            &Frame::new("strict", [if strict { "1" } else { "0" }]),
            host,
            "setting the error mode",
        )
        .map(|_| ())
    }

    /// Sources hook files one after the other in one round trip; the shell reports
    /// every file's status and times with the batch's end. On an error, the index
    /// of the file that failed, exited or hung is given when the shell said it.
    pub(crate) fn source_hooks(
        &mut self,
        hooks: &[(&Path, Vec<String>)],
        host: &mut dyn Callbacks,
    ) -> Result<Vec<HookResult>, BatchError> {
        // One loop per run of files with the same arguments: bash parses a line per
        // file far slower than it runs a loop over an array.
        let mut batch = String::from("# hook batch written by devstack-rs\n");
        for group in hooks.chunk_by(|a, b| a.1 == b.1) {
            let files: Vec<String> = group
                .iter()
                .map(|(f, _)| bash_quote(&f.to_string_lossy()))
                .collect();
            let args: Vec<String> = group[0].1.iter().map(|a| bash_quote(a)).collect();
            let _ = writeln!(
                batch,
                "_ds_files=({}); _ds_args=({})\n\
                 for _ds_f in \"${{_ds_files[@]}}\"; do \
                 {{ _ds_err_cmd=; _ds_traps; _ds_send at \"$(((${{#_ds_results[@]}} - 1) / 2))\"; \
                 [[ -z $_ds_hook_xtrace ]] || set -o xtrace; }} 2>/dev/null; \
                 source \"$_ds_f\" \"${{_ds_args[@]}}\"; \
                 {{ _ds_results+=(\"$?\" \"$EPOCHREALTIME\"); \
                 _ds_hook_xtrace=${{-//[^x]/}}; set +o xtrace; }} 2>/dev/null; done",
                files.join(" "),
                args.join(" ")
            );
        }
        let doing = match hooks.first() {
            Some((file, args)) => format!("sourcing {} {}", file.display(), args.join(" ")),
            None => "sourcing nothing".to_owned(),
        };
        let path = self.batch_file.clone();
        let fail = |error| BatchError { index: None, error };
        fs_err::write(&path, &batch).map_err(|source| {
            fail(ShellError::Io {
                path: path.clone(),
                source,
            })
        })?;
        self.hook_index = None;
        self.warned.clear();
        let frame = Frame::new("hooks", [path.to_string_lossy()]);
        match self.request_frame(&frame, host, doing.trim_end()) {
            Ok(fields) => Ok(hook_results(fields.get(1..).unwrap_or_default())),
            Err(error) => Err(BatchError {
                index: self.hook_index,
                error,
            }),
        }
    }

    /// Sources a file at global scope (localrc: its declarations stay global).
    pub(crate) fn source_global(
        &mut self,
        file: &Path,
        host: &mut dyn Callbacks,
    ) -> Result<i32, ShellError> {
        let doing = format!("sourcing {}", file.display());
        self.request(
            &Frame::new("global", [file.to_string_lossy()]),
            host,
            &doing,
        )
    }

    /// The last lines the shell printed since the last request (bash's own
    /// message about a file it stopped reading).
    pub(crate) fn take_tail(&self) -> Vec<String> {
        self.tap.take_tail()
    }

    /// Calls a shell function (hypervisor plugin functions).
    pub(crate) fn call_function(
        &mut self,
        name: &str,
        args: &[&str],
        host: &mut dyn Callbacks,
    ) -> Result<i32, ShellError> {
        let mut fields = vec![name.to_owned()];
        fields.extend(args.iter().map(|a| (*a).to_owned()));
        self.request(
            &Frame::new("call", fields),
            host,
            &format!("calling {name}"),
        )
    }

    /// Reads every scalar shell variable back.
    pub(crate) fn read_vars(
        &mut self,
        host: &mut dyn Callbacks,
    ) -> Result<BTreeMap<String, String>, ShellError> {
        self.send(
            &Frame::new("vars", Vec::<String>::new()),
            "reading variables",
        )?;
        // The hook timeout applies: a localrc of many variables reads back slowly.
        self.limit = self.hook_timeout;
        let deadline = Instant::now() + self.limit;
        loop {
            let frame = self.wait_frame(deadline, "reading variables", host)?;
            if frame.kind == "vars" {
                return Ok(frame
                    .fields
                    .chunks(2)
                    .filter(|kv| kv.len() == 2)
                    .map(|kv| (kv[0].clone(), kv[1].clone()))
                    .collect());
            }
            Self::unexpected(&frame)?;
        }
    }

    /// Assigns shell variables at global scope.
    pub(crate) fn set_vars(
        &mut self,
        vars: &[(String, String)],
        host: &mut dyn Callbacks,
    ) -> Result<(), ShellError> {
        let fields: Vec<String> = vars
            .iter()
            .flat_map(|(k, v)| [k.clone(), v.clone()])
            .collect();
        self.request(&Frame::new("set", fields), host, "setting variables")
            .map(|_| ())
    }

    /// Which of these functions the shell does not define.
    pub(crate) fn missing_functions(
        &mut self,
        names: &[&str],
        host: &mut dyn Callbacks,
    ) -> Result<Vec<String>, ShellError> {
        self.send(
            &Frame::new("defined", names.iter().copied()),
            "checking functions",
        )?;
        self.limit = self.hook_timeout;
        let deadline = Instant::now() + self.limit;
        loop {
            let frame = self.wait_frame(deadline, "checking functions", host)?;
            if frame.kind == "defined" {
                return Ok(frame.fields);
            }
            Self::unexpected(&frame)?;
        }
    }

    /// Ends the shell politely, then firmly.
    pub(crate) fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let _ = fs_err::remove_file(&self.batch_file);
        // A clean end: what a plugin started in the background may go on running.
        if let Some(mut life) = self.lifeline.take() {
            let _ = std::io::Write::write_all(&mut life, b"done\n");
        }
        let _ = Frame::new("exit", Vec::<String>::new()).write_to(&mut self.commands);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let child = &mut self.child;
            stop_group(self.pid, KILL_GRACE, || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            let _ = self.child.wait();
        }
        // The readers end with the pipes; they are not joined, since a daemon a plugin
        // started by hand may hold them open for ever.
        self.readers.clear();
    }

    fn send(&mut self, frame: &Frame, doing: &str) -> Result<(), ShellError> {
        if frame.write_to(&mut self.commands).is_err() {
            return Err(self.died(doing));
        }
        Ok(())
    }

    /// Sends a command and serves the shell until it reports `done`.
    fn request(
        &mut self,
        frame: &Frame,
        host: &mut dyn Callbacks,
        doing: &str,
    ) -> Result<i32, ShellError> {
        let fields = self.request_frame(frame, host, doing)?;
        Ok(fields.first().and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// Sends a command and serves the shell until it reports `done`; returns the
    /// fields of `done`.
    fn request_frame(
        &mut self,
        frame: &Frame,
        host: &mut dyn Callbacks,
        doing: &str,
    ) -> Result<Vec<String>, ShellError> {
        self.tap.tail.lock().expect("tail lock").clear();
        self.send(frame, doing)?;
        self.limit = self.hook_timeout;
        let deadline = Instant::now() + self.limit;
        let mut failure: Option<Failure> = None;
        // A global file that called exit: (status, file, line).
        let mut exited: Option<(i32, String, u32)> = None;
        loop {
            let frame = match self.wait_frame(deadline, doing, host) {
                Ok(frame) => frame,
                Err(ShellError::Died {
                    status,
                    doing,
                    tail,
                }) => {
                    // A strict failure makes the shell exit after reporting where.
                    return Err(match (failure, exited) {
                        (_, Some((status, file, line))) => ShellError::Failed(Box::new(Failure {
                            status,
                            command: format!("exit {status}"),
                            file,
                            line,
                            function: String::new(),
                            trace: Vec::new(),
                            tail,
                        })),
                        (Some(mut f), None) => {
                            f.tail = tail;
                            ShellError::Failed(Box::new(f))
                        }
                        (None, None) => ShellError::Died {
                            status,
                            doing,
                            tail,
                        },
                    });
                }
                Err(e) => return Err(e),
            };
            match frame.kind.as_str() {
                // The batch's file that starts now: a timeout or an interrupt
                // blames this one, and the live progress shows it.
                "at" => {
                    self.hook_index = frame.fields.first().and_then(|s| s.parse().ok());
                    if let Some(i) = self.hook_index {
                        host.hook_started(i);
                    }
                }
                "exiting" => {
                    self.hook_index = frame.fields.get(1).and_then(|s| s.parse().ok());
                    if let (Some(file), Some(line)) = (frame.fields.get(2), frame.fields.get(3)) {
                        exited = Some((
                            frame.fields[0].parse().unwrap_or(-1),
                            file.clone(),
                            line.parse().unwrap_or(0),
                        ));
                    }
                }
                "done" => return Ok(frame.fields),
                "err" => {
                    let f = self.parse_failure(&frame.fields);
                    let strict = frame.fields.get(6).is_some_and(|s| s == "1");
                    if strict {
                        self.hook_index = frame.fields.get(7).and_then(|s| s.parse().ok());
                        // Keep the innermost report: a subshell's comes before its parent's.
                        failure.get_or_insert(f);
                    } else if !self.is_ours(&f.file) {
                        if let Some(i) = frame.fields.get(7).and_then(|s| s.parse().ok()) {
                            self.warned.insert(i);
                        }
                        host.warning(&format!(
                            "`{}` failed with status {} at {}:{} (continuing)",
                            f.command, f.status, f.file, f.line
                        ));
                    }
                }
                _ => Self::unexpected(&frame)?,
            }
        }
    }

    fn parse_failure(&self, fields: &[String]) -> Failure {
        let get = |i: usize| fields.get(i).cloned().unwrap_or_default();
        Failure {
            status: get(0).parse().unwrap_or(1),
            file: get(1),
            line: get(2).parse().unwrap_or(0),
            function: get(3),
            command: get(4),
            trace: get(5).lines().map(str::to_owned).collect(),
            tail: self.tap.take_tail(),
        }
    }

    /// A location in the driver or a hook batch: the failing command was the
    /// `source` of a hook file that returned non-zero (its own failure came first).
    pub(crate) fn is_ours(&self, file: &str) -> bool {
        file == self.driver || Path::new(file) == self.batch_file
    }

    fn unexpected(frame: &Frame) -> Result<(), ShellError> {
        Err(ShellError::Protocol(format!(
            "unexpected message '{}'",
            frame.kind
        )))
    }

    /// Waits for the next frame that is not a call, summary or warning (those are
    /// served here, as they come).
    fn wait_frame(
        &mut self,
        deadline: Instant,
        doing: &str,
        host: &mut dyn Callbacks,
    ) -> Result<Frame, ShellError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left, doing)? {
                Event::Closed => return Err(self.died(doing)),
                Event::Malformed(why) => {
                    // Stopped, not waited for: the hook goes on writing otherwise.
                    let tail = self.tap.take_tail();
                    self.kill_group();
                    return Err(ShellError::Protocol(format!(
                        "the plugin shell's channel got something that is not a message ({why}) while {doing}; a hook wrote to descriptor {CHANNEL_FD}, which is devstack's own. Last output: {}",
                        tail.last().map_or("(none)", String::as_str)
                    )));
                }
                Event::Frame(frame) => match frame.kind.as_str() {
                    "call" => {
                        let reply = match Call::parse(&frame.fields) {
                            Ok(call) => host.call(&call),
                            Err(e) => Reply::error(2, format!("devstack: {e}")),
                        };
                        self.send(&reply.to_frame(), doing)?;
                    }
                    "summary" => host.summary(frame.fields.first().map_or("", String::as_str)),
                    "warn" => host.warning(frame.fields.first().map_or("", String::as_str)),
                    _ => return Ok(frame),
                },
            }
        }
    }

    /// The next event, or `Closed` once the shell has exited (checked as well as the
    /// channel's end: a background child of a plugin may hold the channel open).
    fn next_event(&mut self, timeout: Duration, doing: &str) -> Result<Event, ShellError> {
        let deadline = Instant::now() + timeout;
        loop {
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            match self.events.recv_timeout(slice) {
                Ok(event) => return Ok(event),
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(Event::Closed),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if crate::system::interrupt::requested() {
                let tail = self.tap.take_tail();
                self.closed = true;
                let child = &mut self.child;
                stop_group(self.pid, KILL_GRACE, || {
                    matches!(child.try_wait(), Ok(Some(_)))
                });
                let _ = self.child.wait();
                return Err(ShellError::Interrupted {
                    doing: doing.to_owned(),
                    tail,
                });
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                // Whatever the shell sent before it exited is still worth reading.
                return Ok(self
                    .events
                    .recv_timeout(Duration::from_millis(50))
                    .unwrap_or(Event::Closed));
            }
            if Instant::now() >= deadline {
                let tail = self.tap.take_tail();
                self.closed = true;
                let child = &mut self.child;
                stop_group(self.pid, KILL_GRACE, || {
                    matches!(child.try_wait(), Ok(Some(_)))
                });
                let _ = self.child.wait();
                return Err(ShellError::Timeout {
                    doing: doing.to_owned(),
                    after: self.limit,
                    tail,
                });
            }
        }
    }

    /// Ends the shell's whole process group now (TERM, then KILL).
    fn kill_group(&mut self) {
        self.closed = true;
        let child = &mut self.child;
        stop_group(self.pid, KILL_GRACE, || {
            matches!(child.try_wait(), Ok(Some(_)))
        });
        let _ = self.child.wait();
    }

    fn died(&mut self, doing: &str) -> ShellError {
        self.closed = true;
        // The channel closed; the shell normally exits with it. One that does not
        // (something closed the descriptor and went on) is stopped, not waited for
        // for ever.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            thread::sleep(Duration::from_millis(10));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.kill_group();
        }
        let status = self.child.wait().ok().and_then(|s| s.code());
        // Let the output readers catch what the shell said last (not joined: a
        // background child of a plugin may keep the pipes open).
        thread::sleep(Duration::from_millis(50));
        ShellError::Died {
            status,
            doing: doing.to_owned(),
            tail: self.tap.take_tail(),
        }
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads a batch's `done` fields, START (STATUS END)...: each file ran from the end
/// of the one before (the first from START).
fn hook_results(fields: &[String]) -> Vec<HookResult> {
    let time = |s: &String| s.parse::<f64>().unwrap_or(0.0);
    let Some((start, rest)) = fields.split_first() else {
        return Vec::new();
    };
    let mut before = time(start);
    rest.chunks_exact(2)
        .enumerate()
        .map(|(index, pair)| {
            let end = time(&pair[1]);
            let seconds = (end - before).max(0.0);
            before = end;
            HookResult {
                index,
                status: pair[0].parse().unwrap_or(0),
                seconds,
            }
        })
        .collect()
}

/// Quotes a word for bash: single quotes, with `'` written as `'\''`.
pub(crate) fn bash_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn spawn_output(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    tap: Arc<OutputTap>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => tap.line(
                    stream,
                    String::from_utf8_lossy(&buf).trim_end_matches(['\n', '\r']),
                ),
            }
        }
    })
}

fn spawn_events(pipe: PipeReader, tx: mpsc::Sender<Event>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        loop {
            match Frame::read_from(&mut reader) {
                Ok(Some(frame)) => {
                    if tx.send(Event::Frame(frame)).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send(Event::Malformed(e.to_string()));
                    return;
                }
            }
        }
        let _ = tx.send(Event::Closed);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traced_call_into_our_internals_is_dropped_and_the_plugins_lines_kept() {
        let internal = |line| is_internal_trace(Stream::Stderr, line);
        assert!(internal(
            "++ _ds_call -v ENABLED_SERVICES services-enable foo"
        ));
        assert!(internal("+ lib/foo:12:   _ds_send at 0"));
        assert!(!internal("+ iniset /etc/foo.conf DEFAULT debug True"));
        assert!(!internal("Failed to discover available identity versions"));
        // The plugin's stdout is its own, whatever it says.
        assert!(!is_internal_trace(Stream::Stdout, "+ _ds_call x"));
    }

    #[test]
    fn hook_results_time_each_file_from_the_previous_end() {
        let fields: Vec<String> = ["10.0", "0", "10.5", "3", "12.0"]
            .map(String::from)
            .to_vec();
        let r = hook_results(&fields);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].index, r[0].status), (0, 0));
        assert!((r[0].seconds - 0.5).abs() < 1e-9);
        assert_eq!((r[1].index, r[1].status), (1, 3));
        assert!((r[1].seconds - 1.5).abs() < 1e-9);
        assert!(hook_results(&[]).is_empty());
    }

    #[test]
    fn bash_quote_survives_single_quotes() {
        assert_eq!(bash_quote("it's"), r"'it'\''s'");
    }
}
