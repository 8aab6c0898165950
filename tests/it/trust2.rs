//! Issue 17, trust's second pass: a user's checkout is never deleted, a service never
//! runs twice, a DEST belongs to one tree, hooks' shell options do not break us, and
//! errors name what the user wrote.

use std::fmt::Write as _;
use std::path::Path;

use crate::Tree;
use crate::trust::{assert_gone, git_in, procs_with, versioned_plugin};

/// local.conf enabling the `vp` plugin of `repo` at `git_ref`, with more lines.
fn plugin_conf(repo: &Path, git_ref: &str, more: &str) -> String {
    format!(
        "disable_all_services\nenable_plugin vp file://{} {git_ref}\n{more}",
        repo.display()
    )
}

/// A plugin.sh that says which version ran at `stack install`.
fn version_hook(version: &str) -> String {
    format!(
        "if [[ \"$*\" == \"stack install\" ]]; then echo \"version {version}\" >> \"$TRACE_FILE\"; fi\n"
    )
}

/// Commits a new version of the plugin in its upstream repository.
fn upstream_commits(repo: &Path, version: &str) {
    std::fs::write(repo.join("devstack/plugin.sh"), version_hook(version)).unwrap();
    git_in(repo, &["commit", "-qam", version]);
}

fn stack_traced(t: &Tree, localrc: &str) -> crate::Run {
    t.local_conf(localrc, "");
    let _ = std::fs::remove_file(&t.trace);
    t.devstack(&["stack"])
}

#[test]
fn a_changed_ref_or_reclone_never_deletes_a_users_edits_or_commits() {
    let t = Tree::new();
    let (repo, _) = versioned_plugin(&t);
    stack_traced(&t, &plugin_conf(&repo, "master", "")).success();
    let checkout = t.dest.join("vp");
    // A day's work in $DEST: an edit and a file of the user's own.
    let plugin_sh = checkout.join("devstack/plugin.sh");
    std::fs::write(&plugin_sh, version_hook("mine")).unwrap();
    std::fs::write(checkout.join("notes.txt"), "mine\n").unwrap();

    let run = stack_traced(&t, &plugin_conf(&repo, "v1", ""));
    run.failure();
    assert!(
        run.stderr
            .contains("would lose uncommitted changes to devstack/plugin.sh")
            && run.stderr.contains("changed from master to v1"),
        "the error says what would be lost and why:\n{}",
        run.stderr
    );
    assert!(
        std::fs::read_to_string(&plugin_sh)
            .unwrap()
            .contains("version mine"),
        "the edit is still there"
    );
    assert!(checkout.join("notes.txt").exists());

    // RECLONE at the ref the checkout is at: nothing to check out, the edit runs.
    stack_traced(&t, &plugin_conf(&repo, "master", "RECLONE=True")).success();
    assert!(t.trace().contains("version mine"), "{}", t.trace());

    // Committed locally while upstream moved on: RECLONE would drop the commit.
    git_in(&checkout, &["commit", "-qam", "my own change"]);
    upstream_commits(&repo, "upstream2");
    let run = stack_traced(&t, &plugin_conf(&repo, "master", "RECLONE=True"));
    run.failure();
    assert!(
        run.stderr.contains("1 commit(s) on branch master")
            && run.stderr.contains("my own change")
            && run.stderr.contains("RECLONE=False"),
        "{}",
        run.stderr
    );
    assert!(git_in(&checkout, &["log", "--format=%s"]).contains("my own change"));
    assert!(checkout.join("notes.txt").exists());

    // Without RECLONE an existing checkout is left as it is: the user's code runs.
    stack_traced(&t, &plugin_conf(&repo, "master", "")).success();
    assert!(t.trace().contains("version mine"), "{}", t.trace());
}

#[test]
fn reclone_and_a_changed_ref_check_out_in_place_keeping_the_users_files() {
    let t = Tree::new();
    let (repo, _) = versioned_plugin(&t);
    stack_traced(&t, &plugin_conf(&repo, "master", "")).success();
    let checkout = t.dest.join("vp");
    std::fs::write(checkout.join("notes.txt"), "mine\n").unwrap();
    upstream_commits(&repo, "master2");

    stack_traced(&t, &plugin_conf(&repo, "master", "RECLONE=True")).success();
    assert!(t.trace().contains("version master2"), "{}", t.trace());
    assert!(checkout.join("notes.txt").exists(), "fetched in place");

    stack_traced(&t, &plugin_conf(&repo, "feature", "")).success();
    assert!(t.trace().contains("version feature"), "{}", t.trace());
    assert!(checkout.join("notes.txt").exists(), "checked out in place");
    assert_eq!(
        git_in(&checkout, &["symbolic-ref", "--short", "HEAD"]),
        "feature"
    );

    // A checkout the user made by hand is theirs: without RECLONE it is not moved
    // to the enabled ref.
    let t = Tree::new();
    let (repo, _) = versioned_plugin(&t);
    std::fs::create_dir_all(&t.dest).unwrap();
    git_in(
        &t.dest,
        &[
            "clone",
            "-q",
            "-b",
            "feature",
            &repo.to_string_lossy(),
            "vp",
        ],
    );
    stack_traced(&t, &plugin_conf(&repo, "master", "")).success();
    assert!(t.trace().contains("version feature"), "{}", t.trace());
}

/// A pid that no process has now (one that just exited).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn what_a_killed_fetch_left_is_removed_by_the_next_stack_and_by_clean() {
    let t = Tree::new();
    let (repo, _) = versioned_plugin(&t);
    std::fs::create_dir_all(&t.dest).unwrap();
    let pid = dead_pid();
    let stale = t.dest.join(format!(".vp.fetch-{pid}"));
    let other = t.dest.join(format!(".gone.fetch-{pid}"));
    for dir in [&stale, &other] {
        std::fs::create_dir_all(dir.join(".git")).unwrap();
    }
    // A fetch directory of a process that still runs is not touched.
    let live = t.dest.join(format!(".vp.fetch-{}", std::process::id()));
    std::fs::create_dir_all(&live).unwrap();
    stack_traced(&t, &plugin_conf(&repo, "master", "")).success();
    assert!(!stale.exists(), "the next stack removes it");
    assert!(live.exists(), "a live fetch's directory is left");
    t.devstack(&["clean"]).success();
    assert!(!other.exists(), "clean removes any plugin's");
    assert!(live.exists());
}

#[test]
fn after_a_corrupt_state_a_re_stack_replaces_the_running_service_not_a_second_copy() {
    let (t, m) = crate::trust::stacked_with_a_process("");
    std::fs::write(t.path(".devstack/state.json"), "{ not json").unwrap();
    let run = t.devstack(&["stack"]);
    run.success();
    assert!(
        run.stderr.contains("found from pidfiles") && run.stderr.contains("replaces them"),
        "{}",
        run.stderr
    );
    assert_eq!(procs_with(&m).len(), 1, "one copy of the service runs");
    t.devstack(&["unstack"]).success();
    assert_gone(&m, "unstack after the recovered stack");
}

#[test]
fn a_service_whose_unrecorded_copy_still_runs_is_not_started_twice() {
    use std::os::unix::process::CommandExt as _;
    let t = Tree::new();
    let m = crate::trust::marker(&t);
    t.local_conf("disable_all_services\nenable_service sleeper", "");
    t.extras(
        "10-sleeper.sh",
        &format!(
            "if [[ $1 == stack && $2 == extra ]]; then run_process sleeper \"exec -a {m} /bin/sleep 300\"; fi\n"
        ),
    );
    // A copy a lost state knew of: its pidfile is where ours are, nothing records it.
    let mut old = std::process::Command::new("bash")
        .args(["-c", &format!("exec -a {m} /bin/sleep 300")])
        .process_group(0)
        .spawn()
        .unwrap();
    std::fs::create_dir_all(t.dest.join("logs")).unwrap();
    std::fs::write(t.dest.join("logs/sleeper.pid"), format!("{}\n", old.id())).unwrap();
    let run = t.devstack(&["stack"]);
    let copies = procs_with(&m).len();
    old.kill().unwrap();
    old.wait().unwrap();
    run.failure();
    assert!(
        run.stderr
            .contains(&format!("previous copy still runs (pid {}", old.id())),
        "{}",
        run.stderr
    );
    assert_eq!(copies, 1, "no second copy was started");
    t.devstack(&["unstack"]).success();
    assert_gone(&m, "unstack");
}

#[test]
fn a_dest_belongs_to_the_tree_that_stacked_into_it_until_that_tree_is_cleaned() {
    let (first, m) = crate::trust::stacked_with_a_process("");
    let second = Tree::new();
    second.write(
        "local.conf",
        &format!(
            "[[local|localrc]]\nDEST={}\ndisable_all_services\n",
            first.dest.display()
        ),
    );
    let first_top = std::fs::canonicalize(&first.top).unwrap();
    for cmd in ["stack", "clean"] {
        let run = second.devstack(&[cmd]);
        run.failure();
        assert!(
            run.stderr
                .contains(&format!("belongs to the tree at {}", first_top.display()))
                && run.stderr.contains("DEVSTACK_TAKEOVER=1"),
            "{cmd}: {}",
            run.stderr
        );
    }
    assert_eq!(
        procs_with(&m).len(),
        1,
        "the first tree's service still runs"
    );
    assert!(
        first.dest.join("logs/sleeper.log").exists(),
        "its logs are there"
    );

    // Taken over explicitly, it is said.
    let run = second.devstack_env(&["stack"], &[("DEVSTACK_TAKEOVER", "1")]);
    run.success();
    assert!(
        run.stderr.contains("taken over from the tree at"),
        "{}",
        run.stderr
    );
    // Now the second owns it: the first's clean is refused in turn until the
    // second is cleaned.
    first.devstack(&["clean"]).failure();
    second.devstack(&["clean"]).success();
    first.devstack(&["clean"]).success();
    assert_gone(&m, "the first tree's clean");
}

#[test]
fn shell_options_and_traps_a_hook_leaves_do_not_break_the_run_and_reports_still_point_at_the_user()
{
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    // Everything a careless hook can leave behind, at every point.
    t.extras(
        "10-careless.sh",
        "set -euo pipefail\nset -f\nshopt -s extdebug nullglob failglob\ntrap - ERR\ntrap 'echo bye' EXIT\ndeclare DECLARED_NEVER_SET\n",
    );
    t.extras(
        "20-sees.sh",
        "if [[ $1 == stack && $2 == extra ]]; then [[ -o nounset ]] && echo \"nounset kept\" >> \"$TRACE_FILE\"; fi\n",
    );
    let run = t.devstack(&["stack"]);
    run.success();
    assert!(
        t.trace().contains("nounset kept"),
        "later hooks still see the options, as in DevStack: {}",
        t.trace()
    );

    // A failure after them is still reported at its file and line.
    let failing = t.path("extras.d/30-fails.sh");
    t.extras(
        "30-fails.sh",
        "if [[ $1 == stack && $2 == install ]]; then\n  echo hi\n  false\nfi\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr
            .contains(&format!("where: {}:3", failing.display()))
            && run.stderr.contains("command: false"),
        "{}",
        run.stderr
    );
    // An unset variable under the `set -u` left on: bash's word, at its line.
    t.extras(
        "30-fails.sh",
        "if [[ $1 == stack && $2 == install ]]; then\n  echo hi\n  echo \"$NO_SUCH_VARIABLE_HERE\"\nfi\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains(&format!(
            "{}:3: NO_SUCH_VARIABLE_HERE: unbound variable",
            failing.display()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn enable_plugin_mistakes_are_named_as_the_line_says_not_as_an_exit() {
    let t = Tree::new();
    let cases = [
        (
            "enable_plugin p",
            "local.conf:5: enable_plugin requires a name and a url",
        ),
        (
            "enable_plugin p file:///x\nenable_plugin p file:///x",
            "local.conf:6: Plugin attempted to be enabled twice: p",
        ),
        (
            "enable_plugin ../x file:///x",
            "local.conf:5: enable_plugin '../x': a plugin name is a simple name",
        ),
    ];
    for (body, want) in cases {
        t.local_conf(&format!("disable_all_services\n{body}"), "");
        let run = t.devstack(&["stack"]);
        run.failure();
        assert!(run.stderr.contains(want), "{body}: {}", run.stderr);
        assert!(
            !run.stderr.contains("must not call exit"),
            "{body}: {}",
            run.stderr
        );
    }
}

#[test]
fn a_localrc_syntax_error_in_unstack_and_clean_is_said_once_at_its_line() {
    let (t, m) = crate::trust::stacked_with_a_process("");
    t.write(
        "local.conf",
        &format!(
            "[[local|localrc]]\nDEST={}\nif then\nX=1\n",
            t.dest.display()
        ),
    );
    for cmd in ["unstack", "clean"] {
        let run = t.devstack(&[cmd]);
        run.success();
        let said: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.contains("syntax error"))
            .collect();
        assert_eq!(said.len(), 1, "{cmd}: {}", run.stderr);
        assert!(
            said[0].starts_with("warning: local.conf:3: syntax error near unexpected token"),
            "{cmd}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("trap"), "{cmd}: {}", run.stderr);
    }
    assert_gone(&m, "unstack");
}

#[test]
fn a_teardown_that_goes_on_has_no_failed_line_no_double_prefix_and_no_log_it_did_not_write() {
    // A tree that never stacked: no LOGDIR, so no log is written.
    let t = Tree::new();
    t.write(
        "local.conf",
        &format!("[[local|localrc]]\nDEST={}\nexit 3\n", t.dest.display()),
    );
    for cmd in ["unstack", "clean"] {
        let run = t.devstack(&[cmd]);
        run.success();
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(!all.contains("[FAILED]"), "{cmd}: {all}");
        assert!(!all.contains("warning: error:"), "{cmd}: {all}");
        assert!(all.contains("warning: local.conf:3"), "{cmd}: {all}");
        assert!(!all.contains("see the log"), "{cmd}: {all}");
    }
}

/// Starts `devstack stack` in `t`, waits for `started` to exist, sends SIGINT and
/// returns its stderr and exit code.
fn interrupted_stack(t: &Tree, started: &Path, path: Option<&Path>) -> (String, Option<i32>) {
    let mut cmd = std::process::Command::new(crate::devstack_bin());
    cmd.arg("--top-dir")
        .arg(&t.top)
        .arg("stack")
        .env_remove("ENABLED_SERVICES")
        .env("DEST", &t.dest)
        .env("DEVSTACK_HOST_ROOT", crate::no_host(t))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    if let Some(dir) = path {
        cmd.env(
            "PATH",
            format!("{}:{}", dir.display(), std::env::var("PATH").unwrap()),
        );
    }
    let child = cmd.spawn().unwrap();
    for _ in 0..600 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(started.exists(), "the run got where it is interrupted");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

#[test]
fn ctrl_c_gives_one_hint_and_a_fetch_it_stops_is_an_interrupt_not_a_bad_url() {
    let t = Tree::new();
    let started = t.top.parent().unwrap().join("hook-started");
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-slow.sh",
        &format!(
            "if [[ $1 == stack && $2 == install ]]; then touch {}; sleep 300; fi\n",
            started.display()
        ),
    );
    let (stderr, code) = interrupted_stack(&t, &started, None);
    assert_eq!(code, Some(130), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("hint:")).count(),
        1,
        "{stderr}"
    );

    // A fetch that hangs (a git that waits), interrupted.
    let t = Tree::new();
    let bin = t.top.parent().unwrap().join("bin");
    let started = t.top.parent().unwrap().join("git-started");
    std::fs::create_dir_all(&bin).unwrap();
    let git = bin.join("git");
    std::fs::write(
        &git,
        format!("#!/bin/bash\ntouch {}\nexec sleep 300\n", started.display()),
    )
    .unwrap();
    std::fs::set_permissions(&git, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    t.local_conf(
        "disable_all_services\nenable_plugin slow file:///nowhere/slow",
        "",
    );
    let (stderr, code) = interrupted_stack(&t, &started, Some(&bin));
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("check the URL"), "{stderr}");
    assert_eq!(
        stderr.lines().filter(|l| l.starts_with("hint:")).count(),
        1,
        "{stderr}"
    );
}

/// Runs devstack in `t` with `env`, killed after `secs` (a run that would hang
/// fails the test instead of hanging it).
fn devstack_within(t: &Tree, args: &[&str], env: &[(&str, &str)], secs: u64) -> crate::Run {
    let mut cmd = std::process::Command::new(crate::devstack_bin());
    cmd.arg("--top-dir")
        .arg(&t.top)
        .args(args)
        .env_remove("ENABLED_SERVICES")
        .env("DEST", &t.dest)
        .env("DEVSTACK_HOST_ROOT", crate::no_host(t))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx
            .recv_timeout(std::time::Duration::from_secs(secs))
            .is_err()
        {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    crate::Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn an_empty_or_dangling_local_conf_is_said_and_a_fifo_or_device_is_refused_by_kind() {
    // No services (an exported empty ENABLED_SERVICES), so the defaults stack nothing.
    let none = [("ENABLED_SERVICES", "")];
    for (what, make) in [("empty", 0), ("dangling symlink", 1), ("comments only", 2)] {
        let t = Tree::new();
        let conf = t.path("local.conf");
        match make {
            0 => std::fs::write(&conf, "").unwrap(),
            1 => std::os::unix::fs::symlink("/nonexistent/local.conf", &conf).unwrap(),
            _ => std::fs::write(&conf, "# nothing yet\n\n").unwrap(),
        }
        let run = devstack_within(&t, &["stack"], &none, 120);
        run.success();
        let all = format!("{}{}", run.stdout, run.stderr);
        let want = format!(
            "stacking DevStack's defaults into DEST={}",
            t.dest.display()
        );
        assert!(all.contains(&want), "{what}: {all}");
        let first_step = all.find("[ok]").unwrap_or(usize::MAX);
        assert!(
            all.find(&want).unwrap() < all.find("[ok] plugins").unwrap_or(first_step),
            "{what}: said before the work starts: {all}"
        );
        if make == 1 {
            assert!(
                all.contains("/nonexistent/local.conf, which does not exist"),
                "{all}"
            );
        }
    }
    for (what, kind) in [("fifo", "a FIFO"), ("device", "a character device")] {
        let t = Tree::new();
        let conf = t.path("local.conf");
        if what == "fifo" {
            let st = std::process::Command::new("mkfifo")
                .arg(&conf)
                .status()
                .unwrap();
            assert!(st.success());
        } else {
            std::os::unix::fs::symlink("/dev/null", &conf).unwrap();
        }
        let run = devstack_within(&t, &["stack"], &none, 60);
        run.failure();
        assert!(
            run.stderr.contains(&format!("local.conf is {kind}")),
            "{what}: {}",
            run.stderr
        );
        assert!(!t.dest.exists(), "{what}: nothing was made");
    }
}

#[test]
fn an_invalid_hook_timeout_is_an_error_naming_the_value() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    for value in ["abc", "-1", "1.5", "", "0", "+5"] {
        let run = t.devstack_env(&["unstack"], &[("DEVSTACK_HOOK_TIMEOUT", value)]);
        run.failure();
        assert!(
            run.stderr.contains(&format!(
                "DEVSTACK_HOOK_TIMEOUT='{value}' is not a time limit"
            )),
            "{value}: {}",
            run.stderr
        );
    }
    t.devstack_env(&["unstack"], &[("DEVSTACK_HOOK_TIMEOUT", "30")])
        .success();
}

#[test]
fn the_variable_read_back_honours_the_hook_timeout_and_says_the_limit_that_applied() {
    // 80,000 localrc variables: sourcing them is linear and well inside the limit;
    // bash lists variables in quadratic time, so their read-back takes far longer
    // than it (tools/bench/scale.sh prints the curve). On main the read-back had a
    // fixed 60 s deadline and its error claimed the hook timeout.
    let t = Tree::new();
    let mut localrc = String::from("disable_all_services\n");
    for i in 0..80_000 {
        let _ = writeln!(localrc, "SCALE_VAR_{i}=value{i}");
    }
    t.local_conf(&localrc, "");
    let t0 = std::time::Instant::now();
    let run = t.devstack_env(&["unstack"], &[("DEVSTACK_HOOK_TIMEOUT", "15")]);
    let took = t0.elapsed();
    assert!(
        run.stderr
            .contains("reading variables did not finish within 15 s"),
        "{}",
        run.stderr
    );
    assert!(
        took < std::time::Duration::from_secs(55),
        "the limit that applied is the one said: {took:?}"
    );
}

/// The host-wide lock files that name `top` as their last holder's tree.
fn host_locks_of(top: &Path) -> Vec<std::path::PathBuf> {
    let needle = format!("\n{}\n", top.display());
    let mut out = Vec::new();
    for dir in [
        std::path::PathBuf::from("/run/lock/devstack-rs"),
        std::env::temp_dir().join("devstack-rs-locks"),
    ] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains(&needle)) {
                out.push(e.path());
            }
        }
    }
    out
}

#[test]
fn clean_removes_set_aside_states_and_the_locks_of_trees_that_are_gone() {
    let (t, m) = crate::trust::stacked_with_a_process("");
    std::fs::write(t.path(".devstack/state.json"), "{ not json").unwrap();
    t.devstack(&["unstack"]).success();
    assert_gone(&m, "unstack");
    let gone_top = {
        let gone = Tree::new();
        gone.local_conf("disable_all_services", "");
        gone.devstack(&["stack"]).success();
        let top = gone.top.clone();
        assert!(!host_locks_of(&top).is_empty(), "its stack took host locks");
        top
    };
    assert!(!gone_top.exists(), "the tree was removed");
    t.devstack(&["clean"]).success();
    let left: Vec<_> = std::fs::read_dir(t.path(".devstack"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        host_locks_of(&gone_top).is_empty(),
        "{:?}",
        host_locks_of(&gone_top)
    );
}

#[test]
fn a_password_that_is_an_ordinary_word_is_redacted_as_a_value_not_in_names() {
    let t = Tree::new();
    t.local_conf(
        "disable_all_services\nMYPLUG_SERVICE_PASSWORD=ordinaryword",
        "",
    );
    let hook = t.path("extras.d/10-ordinaryword.sh");
    t.extras(
        "10-ordinaryword.sh",
        "install_ordinaryword() {\n  echo \"connection = mysql://root:$MYPLUG_SERVICE_PASSWORD@127.0.0.1/db\"\n  false\n}\nif [[ $1 == stack && $2 == install ]]; then install_ordinaryword; fi\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr
            .contains("extras.d 10-ordinaryword.sh failed at stack install"),
        "the script's name stays: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!("{}:3", hook.display())),
        "its path stays: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("install_ordinaryword"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("mysql://root:***@127.0.0.1/db"),
        "the value is redacted: {}",
        run.stderr
    );
    assert!(!run.stderr.contains("root:ordinaryword@"), "{}", run.stderr);
}

#[test]
fn reclone_never_overwrites_an_untracked_file_in_the_checkout() {
    let t = Tree::new();
    let (repo, _) = versioned_plugin(&t);
    stack_traced(&t, &plugin_conf(&repo, "master", "")).success();
    let checkout = t.dest.join("vp");
    // The user's own file where upstream then adds one of the same name.
    std::fs::write(checkout.join("devstack/local-notes"), "mine\n").unwrap();
    std::fs::write(repo.join("devstack/local-notes"), "upstream\n").unwrap();
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-qm", "notes upstream"]);
    let run = stack_traced(&t, &plugin_conf(&repo, "master", "RECLONE=True"));
    run.failure();
    assert!(
        run.stderr
            .contains("untracked files the checkout would overwrite: devstack/local-notes"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(checkout.join("devstack/local-notes")).unwrap(),
        "mine\n"
    );
}
