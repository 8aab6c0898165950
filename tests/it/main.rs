//! The one integration-test binary: runs the real `devstack` binary in temporary
//! DevStack trees. Modules by area; shared helpers below.
//!
//! The product's house rules for child processes and files (clippy.toml) are for
//! the product: a test drives the binary as a user's shell would, with plain
//! `std::process::Command`, and its fixtures' file errors are panics anyway.
#![allow(clippy::disallowed_methods)]

mod daily;
mod engine;
mod host_restore;
mod keystone;
mod layer1;
mod library;
mod multinode;
mod novnc_etcd;
mod plugin_api;
mod plugin_compat;
mod plugin_compat2;
mod plugin_env;
mod plugin_overrides;
mod restack_change;
mod shellcheck;
mod test_image;
mod trust;
mod trust2;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

/// The project's own tree (functions, inc/, lib/ come from here).
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn devstack_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devstack"))
}

/// A temporary DevStack tree: the project's library linked in, its own local.conf,
/// extras.d and DEST, so tests never touch /opt/stack.
pub struct Tree {
    _dir: tempfile::TempDir,
    pub top: PathBuf,
    pub dest: PathBuf,
    pub trace: PathBuf,
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.status, 0,
            "command failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
    #[track_caller]
    pub fn failure(&self) -> &Self {
        assert_ne!(
            self.status, 0,
            "command unexpectedly succeeded:\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Tree {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let top = dir.path().join("devstack");
        std::fs::create_dir_all(top.join("extras.d")).unwrap();
        for name in [
            "functions",
            "functions-common",
            "stackrc",
            "inc",
            "lib",
            "files",
            "tools",
        ] {
            let src = project_root().join(name);
            if src.exists() {
                std::os::unix::fs::symlink(&src, top.join(name)).unwrap();
            }
        }
        let dest = dir.path().join("stack");
        let trace = dir.path().join("trace");
        Self {
            _dir: dir,
            top,
            dest,
            trace,
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.top.join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.top.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// local.conf whose localrc starts with DEST and LOGDIR inside this tree.
    pub fn local_conf(&self, localrc: &str, rest: &str) {
        let text = format!(
            "[[local|localrc]]\nDEST={}\nTRACE_FILE={}\n{localrc}\n{rest}",
            self.dest.display(),
            self.trace.display()
        );
        self.write("local.conf", &text);
    }

    pub fn extras(&self, name: &str, text: &str) {
        self.write(&format!("extras.d/{name}"), text);
    }

    pub fn trace(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    pub fn trace_lines(&self) -> Vec<String> {
        self.trace().lines().map(str::to_owned).collect()
    }

    pub fn devstack(&self, args: &[&str]) -> Run {
        self.devstack_env(args, &[])
    }

    pub fn devstack_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(devstack_bin());
        // DEST in the environment as well as in local.conf: a test that breaks its
        // local.conf (teardown from the state) must still never reach /opt/stack,
        // where a real cloud of this machine may be running.
        cmd.arg("--top-dir")
            .arg(&self.top)
            .args(args)
            .env_remove("ENABLED_SERVICES")
            .env("DEST", &self.dest)
            // The host's /etc and /usr/local as hooks' clean restores them: a fake, empty
            // root here, so a test's clean never undoes what another program did to the
            // real ones while its hooks ran (tests/it/host_restore.rs sets its own).
            .env("DEVSTACK_HOST_ROOT", no_host(self));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run devstack");
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs a bash snippet that sources the library outside any run.
    pub fn bash(&self, script: &str) -> Run {
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&self.top)
            .env("TOP_DIR", &self.top)
            .env("DEVSTACK_BIN", devstack_bin())
            .output()
            .expect("run bash");
        Run {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

/// The host root a test's stack watches for clean (`DEVSTACK_HOST_ROOT`): an empty
/// fake, so a test's clean never undoes what another program did to the real /etc
/// while its hooks ran. Every test's run of the binary gets it (tests/it/host_restore.rs
/// sets its own in localrc).
pub fn no_host(t: &Tree) -> PathBuf {
    t.top.parent().unwrap().join("no-host")
}

/// Writes a fixture hook that appends its arguments and chosen variables to the
/// trace file, and fails when FAIL_AT matches "NAME:ARGS".
pub fn recording_hook(name: &str, vars: &[&str]) -> String {
    let vars_text = vars.iter().fold(String::new(), |mut acc, v| {
        let _ = write!(acc, " {v}=${{{v}:-}}");
        acc
    });
    format!(
        "# fixture hook: records how it was called, fails on request\n\
         echo \"{name} $*{vars_text}\" >> \"$TRACE_FILE\"\n\
         if [[ \"${{FAIL_AT:-}}\" == \"{name}:$*\" ]]; then\n    false_command_for_test\nfi\n"
    )
}

/// Runs git in `repo` with a fixed author (fixture plugins' repositories); fails the
/// test with git's own message.
pub fn git(repo: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
