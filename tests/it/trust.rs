//! Issue 8, a run a user can trust: teardown is never blocked by the configuration
//! or the state, nothing is left running, the lock is per DEST and host-wide.

use std::process::Command;

use crate::Tree;

/// The pids of live processes whose command line contains `marker`.
pub(crate) fn procs_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(marker) {
            out.push(pid);
        }
    }
    out
}

/// Waits up to 5 s for no process to carry `marker`.
#[track_caller]
pub(crate) fn assert_gone(marker: &str, what: &str) {
    for _ in 0..100 {
        if procs_with(marker).is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what}: still running: {:?}", procs_with(marker));
}

pub(crate) fn marker(t: &Tree) -> String {
    format!(
        "ds-trust-{}",
        t.top
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
    )
}

/// A tree whose stack starts a supervised process (run_process) carrying a marker.
pub(crate) fn stacked_with_a_process(extra_localrc: &str) -> (Tree, String) {
    let t = Tree::new();
    let m = marker(&t);
    t.local_conf(
        &format!("disable_all_services\nenable_service sleeper\n{extra_localrc}"),
        "",
    );
    t.extras(
        "10-sleeper.sh",
        &format!(
            "if [[ $1 == stack && $2 == extra ]]; then run_process sleeper \"exec -a {m} /bin/sleep 300\"; fi\n"
        ),
    );
    t.devstack(&["stack"]).success();
    assert_eq!(procs_with(&m).len(), 1, "the stack started its process");
    (t, m)
}

fn write_bytes(t: &Tree, rel: &str, bytes: &[u8]) {
    std::fs::write(t.path(rel), bytes).unwrap();
}

#[test]
fn teardown_works_from_the_state_when_the_configuration_no_longer_reads() {
    // Each broken configuration, written after a good stack; unstack then clean must
    // exit 0, say what could not be read, and stop the process.
    let cases: &[(&str, &str)] = &[
        ("parse error", "[[local|localrc\nDEST=/nowhere\n"),
        ("exit 3 in localrc", "[[local|localrc]]\nexit 3\n"),
        ("exit 0 in localrc", "[[local|localrc]]\nexit 0\n"),
        (
            "failing command",
            "[[local|localrc]]\nno_such_command_here\n",
        ),
        (
            "duplicate enable_plugin",
            "[[local|localrc]]\nenable_plugin p file:///nonexistent\nenable_plugin p file:///nonexistent\n",
        ),
        (
            "URL-less enable_plugin",
            "[[local|localrc]]\nenable_plugin p\n",
        ),
        ("unknown phase", "[[bogus|/x]]\na=b\n"),
    ];
    for (what, conf) in cases {
        let (t, m) = stacked_with_a_process("");
        t.write("local.conf", conf);
        let run = t.devstack(&["unstack"]);
        assert_eq!(
            run.status, 0,
            "{what}: unstack failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        assert!(
            run.stderr.contains("goes on") || run.stderr.contains("(continuing)"),
            "{what}: the user is told what could not be read:\n{}",
            run.stderr
        );
        assert_gone(&m, what);
        let clean = t.devstack(&["clean"]);
        assert_eq!(clean.status, 0, "{what}: clean failed:\n{}", clean.stderr);
    }
}

#[test]
fn teardown_works_with_a_non_utf8_local_conf_and_a_plugin_requires_error() {
    let (t, m) = stacked_with_a_process("");
    let mut bytes = std::fs::read(t.path("local.conf")).unwrap();
    bytes.extend_from_slice(b"X=\xff\xfe\n");
    write_bytes(&t, "local.conf", &bytes);
    let run = t.devstack(&["unstack"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_gone(&m, "non-UTF-8");

    // A plugin (already cloned) whose settings require one that is not enabled.
    let (t, m) = stacked_with_a_process("");
    let plug = t.dest.join("needy");
    std::fs::create_dir_all(plug.join("devstack")).unwrap();
    std::fs::write(
        plug.join("devstack/settings"),
        "plugin_requires needy absent\n",
    )
    .unwrap();
    std::fs::write(plug.join("devstack/plugin.sh"), "true\n").unwrap();
    let conf = std::fs::read_to_string(t.path("local.conf")).unwrap();
    t.write(
        "local.conf",
        &conf.replace(
            "enable_service sleeper",
            &format!(
                "enable_service sleeper\nenable_plugin needy {}",
                plug.display()
            ),
        ),
    );
    let run = t.devstack(&["unstack"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert_gone(&m, "plugin_requires");
    t.devstack(&["clean"]).success();
}

#[test]
fn a_corrupt_state_is_set_aside_and_pidfiles_still_stop_the_processes() {
    let (t, m) = stacked_with_a_process("");
    let state = t.path(".devstack/state.json");
    std::fs::write(&state, "{ not json").unwrap();
    let run = t.devstack(&["unstack"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run.stderr.contains("moved aside"), "{}", run.stderr);
    assert!(run.stderr.contains("found from pidfiles"), "{}", run.stderr);
    assert_gone(&m, "corrupt state");
    let aside = std::fs::read_dir(t.path(".devstack"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(aside, "the corrupt file is kept aside for the user");
    t.devstack(&["clean"]).success();
}

#[test]
fn a_hook_child_that_ignores_term_is_killed_at_the_timeout() {
    let t = Tree::new();
    let m = marker(&t);
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-stubborn.sh",
        &format!(
            "if [[ $1 == stack && $2 == install ]]; then (trap '' TERM; exec -a {m} sleep 300) & sleep 300; fi\n"
        ),
    );
    let run = t.devstack_env(&["stack"], &[("DEVSTACK_HOOK_TIMEOUT", "2")]);
    run.failure();
    assert_gone(&m, "a child ignoring TERM after the hook timeout");
    t.devstack(&["unstack"]).success();
}

#[test]
fn a_killed_devstack_takes_its_plugin_shell_with_it_and_the_next_run_says_so() {
    let t = Tree::new();
    let m = marker(&t);
    let started = t.top.join("started");
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-hang.sh",
        &format!(
            "if [[ $1 == stack && $2 == install ]]; then touch {}; exec -a {m} sleep 300; fi\n",
            started.display()
        ),
    );
    let mut child = Command::new(crate::devstack_bin())
        .arg("--top-dir")
        .arg(&t.top)
        .arg("stack")
        .env("DEVSTACK_HOST_ROOT", crate::no_host(&t))
        .env_remove("ENABLED_SERVICES")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(started.exists(), "the hook ran");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone(&m, "the plugin shell after SIGKILL of devstack");
    let state = std::fs::read_to_string(t.path(".devstack/state.json")).unwrap();
    let run = t.devstack(&["unstack"]);
    run.success();
    assert!(
        run.stderr.contains("ended without finishing"),
        "the next run reports the killed one:\n{}",
        run.stderr
    );
    let after = std::fs::read_to_string(t.path(".devstack/state.json")).unwrap();
    assert!(state.contains("\"running\""), "{state}");
    assert!(!after.contains("\"running\""), "{after}");
}

#[test]
fn two_trees_sharing_a_dest_do_not_race_the_second_is_refused_naming_the_first() {
    let first_tree = Tree::new();
    let second_tree = Tree::new();
    let gate = first_tree.top.parent().unwrap().join("gate");
    let started = gate.with_extension("started");
    first_tree.local_conf("disable_all_services", "");
    first_tree.extras(
        "10-wait.sh",
        &format!(
            "if [[ $1 == stack && $2 == extra ]]; then touch {}; while [[ ! -e {} ]]; do sleep 0.1; done; fi\n",
            started.display(),
            gate.display()
        ),
    );
    // The second tree's own local.conf, but the first tree's DEST.
    second_tree.write(
        "local.conf",
        &format!(
            "[[local|localrc]]\nDEST={}\ndisable_all_services\n",
            first_tree.dest.display()
        ),
    );
    let mut first = Command::new(crate::devstack_bin())
        .arg("--top-dir")
        .arg(&first_tree.top)
        .arg("stack")
        .env("DEVSTACK_HOST_ROOT", crate::no_host(&first_tree))
        .env_remove("ENABLED_SERVICES")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started.exists(), "the first stack reached its hook");
    let stack = second_tree.devstack(&["stack"]);
    let clean = second_tree.devstack(&["clean"]);
    std::fs::write(&gate, "").unwrap();
    assert!(first.wait().unwrap().success());
    for (what, run) in [("stack", &stack), ("clean", &clean)] {
        run.failure();
        assert!(
            run.stderr.contains(&format!("pid {}", first.id()))
                && run.stderr.contains(&first_tree.top.display().to_string()),
            "{what} names the other run's pid and tree:\n{}",
            run.stderr
        );
    }
    // Once the first is done and cleaned, the second tree may go.
    first_tree.devstack(&["clean"]).success();
    second_tree.devstack(&["stack"]).success();
}

/// A hook that records its calls and fails at `stack extra` while FILE exists.
fn failing_once_hook(name: &str, switch: &std::path::Path) -> String {
    format!(
        "echo \"{name} $*\" >> \"$TRACE_FILE\"\n\
         if [[ \"$*\" == \"stack extra\" && -e {} ]]; then false_command_for_test; fi\n",
        switch.display()
    )
}

#[test]
fn a_re_stack_after_a_failure_resumes_at_the_failed_step() {
    let t = Tree::new();
    let switch = t.top.join("fail-now");
    std::fs::write(&switch, "").unwrap();
    t.local_conf("disable_all_services", "");
    t.extras("10-rec.sh", &failing_once_hook("10-rec.sh", &switch));
    t.devstack(&["stack"]).failure();
    std::fs::remove_file(&switch).unwrap();
    std::fs::remove_file(&t.trace).unwrap();
    let again = t.devstack(&["stack"]);
    again.success();
    assert!(
        again
            .stderr
            .contains("resumed at: hook stack extra, 10 steps reused"),
        "{}",
        again.stderr
    );
    // The settings hooks run again (they define what later hooks use); the hooks of
    // the reused steps do not.
    assert_eq!(
        t.trace_lines(),
        [
            "10-rec.sh override_defaults",
            "10-rec.sh source",
            "10-rec.sh stack extra",
            "10-rec.sh stack test-config",
        ]
    );

    // After a success, nothing is resumed.
    std::fs::remove_file(&t.trace).unwrap();
    let third = t.devstack(&["stack"]);
    assert!(!third.stderr.contains("resumed at"), "{}", third.stderr);
    assert!(t.trace().contains("stack pre-install"));
}

#[test]
fn changed_inputs_or_from_scratch_run_every_step_again() {
    for change in ["local.conf", "hook file", "--from-scratch"] {
        let t = Tree::new();
        let switch = t.top.join("fail-now");
        std::fs::write(&switch, "").unwrap();
        t.local_conf("disable_all_services", "");
        t.extras("10-rec.sh", &failing_once_hook("10-rec.sh", &switch));
        t.devstack(&["stack"]).failure();
        std::fs::remove_file(&switch).unwrap();
        std::fs::remove_file(&t.trace).unwrap();
        let args: &[&str] = match change {
            "local.conf" => {
                t.local_conf("disable_all_services\nA_NEW_SETTING=1", "");
                &["stack"]
            }
            "hook file" => {
                t.extras(
                    "10-rec.sh",
                    &format!("{}\n# changed\n", failing_once_hook("10-rec.sh", &switch)),
                );
                &["stack"]
            }
            _ => &["stack", "--from-scratch"],
        };
        let again = t.devstack(args);
        again.success();
        assert!(
            !again.stderr.contains("resumed at"),
            "{change}: {}",
            again.stderr
        );
        assert!(
            t.trace().contains("10-rec.sh stack pre-install"),
            "{change}: every hook runs again:\n{}",
            t.trace()
        );
    }
}

#[test]
fn a_resumed_stack_restarts_from_the_step_whose_process_is_gone() {
    let t = Tree::new();
    let m = marker(&t);
    let switch = t.top.join("fail-now");
    std::fs::write(&switch, "").unwrap();
    t.local_conf("disable_all_services\nenable_service sleeper", "");
    t.extras(
        "10-rec.sh",
        &format!(
            "{}if [[ \"$*\" == \"stack install\" ]]; then run_process sleeper \"exec -a {m} /bin/sleep 300\"; fi\n",
            failing_once_hook("10-rec.sh", &switch)
        ),
    );
    t.devstack(&["stack"]).failure();
    std::fs::remove_file(&switch).unwrap();
    for pid in procs_with(&m) {
        Command::new("kill").arg(pid.to_string()).status().unwrap();
    }
    assert_gone(&m, "killed by the test");
    std::fs::remove_file(&t.trace).unwrap();
    let again = t.devstack(&["stack"]);
    again.success();
    assert!(
        again.stderr.contains("resumed at: hook stack install"),
        "{}",
        again.stderr
    );
    assert!(
        t.trace().contains("10-rec.sh stack install"),
        "{}",
        t.trace()
    );
    assert!(!t.trace().contains("pre-install"), "{}", t.trace());
    assert_eq!(procs_with(&m).len(), 1, "the process runs again");
    t.devstack(&["unstack"]).success();
    assert_gone(&m, "unstack");
}

pub(crate) fn git_in(repo: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A plugin repository with three versions: tag v1, master, branch `feature`.
/// Each version's plugin.sh writes its name to the trace at `stack install`.
pub(crate) fn versioned_plugin(t: &Tree) -> (std::path::PathBuf, String) {
    let repo = crate::engine::plugin_repo(t.top.parent().unwrap(), "vp", "");
    let version = |v: &str| {
        std::fs::write(
            repo.join("devstack/plugin.sh"),
            format!("if [[ \"$*\" == \"stack install\" ]]; then echo \"version {v}\" >> \"$TRACE_FILE\"; fi\n"),
        )
        .unwrap();
        git_in(&repo, &["commit", "-qam", v]);
    };
    version("v1");
    git_in(&repo, &["tag", "v1"]);
    let v1 = git_in(&repo, &["rev-parse", "HEAD"]);
    version("master");
    git_in(&repo, &["checkout", "-qb", "feature"]);
    version("feature");
    git_in(&repo, &["checkout", "-q", "master"]);
    (repo, v1)
}

#[test]
fn enable_plugin_takes_a_tag_a_branch_a_full_or_an_abbreviated_commit() {
    let t = Tree::new();
    let (repo, v1) = versioned_plugin(&t);
    let cases = [
        ("v1", "version v1"),
        ("feature", "version feature"),
        (v1.as_str(), "version v1"),
        (&v1[..7], "version v1"),
        ("master", "version master"),
    ];
    for (git_ref, want) in cases {
        t.local_conf(
            &format!(
                "disable_all_services\nenable_plugin vp file://{} {git_ref}",
                repo.display()
            ),
            "",
        );
        let _ = std::fs::remove_file(&t.trace);
        t.devstack(&["stack"]).success();
        assert!(
            t.trace().contains(want),
            "ref {git_ref}: a changed ref is fetched again:\n{}",
            t.trace()
        );
    }
}

#[test]
fn a_failed_fetch_leaves_nothing_and_the_next_stack_fetches_again() {
    let t = Tree::new();
    let (repo, _) = versioned_plugin(&t);
    let conf = |git_ref: &str| {
        format!(
            "disable_all_services\nenable_plugin vp file://{} {git_ref}",
            repo.display()
        )
    };
    t.local_conf(&conf("no-such-ref"), "");
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains("no-such-ref") && run.stderr.contains("fatal:"),
        "git's own error is in the report:\n{}",
        run.stderr
    );
    assert!(!t.dest.join("vp").exists(), "no partial clone left");
    // A partial clone left by an older devstack (a bare .git) is fetched again.
    std::fs::create_dir_all(t.dest.join("vp/.git")).unwrap();
    t.local_conf(&conf("master"), "");
    t.devstack(&["stack"]).success();
    assert!(t.trace().contains("version master"), "{}", t.trace());
}

#[test]
fn a_repository_without_devstack_and_a_bad_plugin_name_are_errors() {
    let t = Tree::new();
    let repo = t.top.parent().unwrap().join("not-a-plugin");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git_in(&repo, &["init", "-q", "-b", "master"]);
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-qm", "x"]);
    let url = format!("file://{}", repo.display());
    t.local_conf(&format!("disable_all_services\nenable_plugin np {url}"), "");
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains(&url) && run.stderr.contains("no devstack/"),
        "{}",
        run.stderr
    );
    assert!(!t.dest.join("np").exists());

    for name in ["../x", "a/b", "..", "."] {
        t.local_conf(
            &format!("disable_all_services\nenable_plugin {name} {url}"),
            "",
        );
        let run = t.devstack(&["stack"]);
        run.failure();
        assert!(run.stderr.contains("simple name"), "{name}: {}", run.stderr);
    }
    assert!(!t.dest.parent().unwrap().join("x").exists());
}

#[test]
fn plan_points_gitdir_at_where_it_fetched_the_plugin() {
    let t = Tree::new();
    let repo = crate::engine::plugin_repo(
        t.top.parent().unwrap(),
        "gd",
        "echo \"gitdir ${GITDIR[gd]}\" >> \"$TRACE_FILE\"; [[ -f ${GITDIR[gd]}/devstack/plugin.sh ]] || echo MISSING >> \"$TRACE_FILE\"",
    );
    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin gd file://{}",
            repo.display()
        ),
        "",
    );
    t.devstack(&["plan"]).success();
    assert!(t.trace().contains("gitdir "), "{}", t.trace());
    assert!(!t.trace().contains("MISSING"), "{}", t.trace());
    assert!(
        t.trace()
            .contains(&format!("gitdir {}", t.dest.join("gd").display())),
        "plan fetches into DEST as stack does: {}",
        t.trace()
    );
}

/// Every regular file under `dir` (symlinks not followed).
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            files_under(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

#[test]
fn no_secret_reaches_a_log_the_terminal_or_a_file_that_is_not_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = Tree::new();
    // Set by the user (literal), set by a plugin's own variable, and generated.
    t.local_conf(
        "set -x\nADMIN_PASSWORD=UserAdminPw4242\nexport MYPLUG_PASSWORD='PluginPw7777'\ndisable_all_services\nenable_service sleeper",
        "",
    );
    t.extras(
        "10-leaky.sh",
        "set -x\n\
         echo \"leak ${ADMIN_PASSWORD:-} ${SERVICE_PASSWORD:-} ${MYPLUG_PASSWORD:-} ${DATABASE_PASSWORD:-}\"\n\
         echo \"to stderr ${RABBIT_PASSWORD:-}\" >&2\n\
         if [[ \"$*\" == \"stack extra\" ]]; then run_process sleeper \"/bin/sleep 300\" '' '' \"TOKEN=$SERVICE_PASSWORD\"; fi\n",
    );
    let stack = t.devstack(&["-v", "stack"]);
    stack.success();
    let data_dir = t.dest.join("data");
    let kept = std::fs::read_to_string(data_dir.join(".devstack-passwords")).unwrap();
    let mut secrets: Vec<String> = kept
        .lines()
        .filter_map(|l| l.split_once('=').map(|(_, v)| v.to_owned()))
        .collect();
    secrets.push("UserAdminPw4242".into());
    secrets.push("PluginPw7777".into());
    assert!(secrets.len() >= 5, "{secrets:?}");
    // A failing run's report too: its tail holds the leaky lines.
    let switch_conf = std::fs::read_to_string(t.path("local.conf")).unwrap();
    t.write("local.conf", &format!("{switch_conf}\nFAIL_NOW=1\n"));
    t.extras(
        "20-fail.sh",
        "if [[ -n ${FAIL_NOW:-} && \"$*\" == \"stack install\" ]]; then echo \"tail $ADMIN_PASSWORD\"; false; fi\n",
    );
    let failed = t.devstack(&["stack"]);
    failed.failure();
    let unstack = t.devstack(&["-v", "unstack"]);
    unstack.success();

    let mut leaks = Vec::new();
    for (what, run) in [
        ("stack", &stack),
        ("failed stack", &failed),
        ("unstack", &unstack),
    ] {
        for s in &secrets {
            if run.stdout.contains(s) || run.stderr.contains(s) {
                leaks.push(format!("{what} terminal output holds {s}"));
            }
        }
    }
    let mut files = Vec::new();
    for dir in [t.dest.join("logs"), data_dir.clone(), t.path(".devstack")] {
        files_under(&dir, &mut files);
    }
    files.push(t.path(".localrc.auto"));
    assert!(files.len() > 3, "{files:?}");
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap_or_default()).into_owned();
        let mode = std::fs::metadata(f).map_or(0, |m| m.permissions().mode() & 0o777);
        let is_log = f.starts_with(t.dest.join("logs"));
        if is_log {
            assert!(mode & 0o027 == 0, "{} is mode {mode:o}", f.display());
        }
        for s in &secrets {
            if text.contains(s) && (is_log || mode != 0o600) {
                leaks.push(format!("{} (mode {mode:o}) holds {s}", f.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
    // The lines were there, redacted.
    assert!(stack.stderr.contains("leak ***"), "{}", stack.stderr);
}

#[test]
fn localrc_errors_name_the_users_line_and_bashs_own_message() {
    // (body at local.conf line 4, expected headline fragment)
    let cases = [
        (
            "no_such_cmd_xyz",
            "local.conf:4: no_such_cmd_xyz: command not found",
        ),
        (
            "if then",
            "local.conf:4: syntax error near unexpected token `then'",
        ),
        ("false", "local.conf:4: `false` failed with status 1"),
        (
            "exit 0",
            "local.conf:4: `exit 0`: local.conf ended the shell (exit status 0)",
        ),
        (
            "exit 3",
            "local.conf:4: `exit 3`: local.conf ended the shell (exit status 3)",
        ),
        ("f() { exit 5; }; f", "local.conf:4: `exit 5`"),
    ];
    let t = Tree::new();
    for (body, want) in cases {
        t.write(
            "local.conf",
            &format!(
                "[[local|localrc]]\nDEST={}\ndisable_all_services\n{body}\nX=1\n",
                t.dest.display()
            ),
        );
        let run = t.devstack(&["stack"]);
        run.failure();
        assert!(run.stderr.contains(want), "{body}: {}", run.stderr);
        assert!(!run.stderr.contains("_DS_ARGS"), "{body}: {}", run.stderr);
        // plan reads the settings the same way.
        let plan = t.devstack(&["plan"]);
        plan.failure();
        assert!(plan.stderr.contains(want), "plan, {body}: {}", plan.stderr);
    }
}

#[test]
fn a_hypervisor_plugin_with_a_syntax_error_is_reported_at_its_line() {
    let t = Tree::new();
    let dir = t.top.parent().unwrap().join("nova_plugins");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hypervisor-broken");
    std::fs::write(
        &file,
        "# broken\ninstall_nova_hypervisor() {\n  if then\n}\n",
    )
    .unwrap();
    t.local_conf(
        &format!(
            "disable_all_services\nenable_service n-cpu nova\nVIRT_DRIVER=broken\nNOVA_PLUGINS={}",
            dir.display()
        ),
        "",
    );
    let run = t.devstack(&["plan"]);
    run.failure();
    assert!(
        run.stderr
            .contains(&format!("{}:3: syntax error", file.display())),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("_DS_ARGS"), "{}", run.stderr);
}

#[test]
fn a_config_section_path_that_loses_a_variable_is_an_error_in_stack_and_plan() {
    let t = Tree::new();
    t.local_conf(
        "disable_all_services",
        "[[post-config|$DS_TEST_UNSET_DIR/devstack-rs-test-unset.conf]]\n[DEFAULT]\na = b\n",
    );
    t.extras("10-rec.sh", &crate::recording_hook("10-rec.sh", &[]));
    let plan = t.devstack(&["plan"]);
    plan.failure();
    assert!(
        plan.stderr
            .contains("$DS_TEST_UNSET_DIR is not set or empty")
            && plan.stdout.contains("ERROR"),
        "{}\n{}",
        plan.stdout,
        plan.stderr
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains("local.conf:") && run.stderr.contains("$DS_TEST_UNSET_DIR"),
        "{}",
        run.stderr
    );
    assert!(!std::path::Path::new("/devstack-rs-test-unset.conf").exists());
}

#[test]
fn a_broken_config_section_body_is_found_before_any_hook_runs() {
    let t = Tree::new();
    t.local_conf(
        "disable_all_services",
        "[[post-config|/tmp/devstack-rs-never.conf]]\n[DEFAULT\na = b\n",
    );
    t.extras("10-rec.sh", &crate::recording_hook("10-rec.sh", &[]));
    for cmd in ["stack", "plan"] {
        let run = t.devstack(&[cmd]);
        run.failure();
        assert!(
            run.stderr.contains("malformed section header '[DEFAULT'"),
            "{cmd}: {}",
            run.stderr
        );
        assert!(t.trace().is_empty(), "{cmd}: no hook ran: {}", t.trace());
    }
}

#[test]
fn a_timeout_blames_the_script_that_hung_and_says_how_to_raise_the_limit() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras("10-quick.sh", "true\n");
    t.extras(
        "20-hangs.sh",
        "if [[ \"$*\" == \"stack install\" ]]; then sleep 300; fi\n",
    );
    t.extras("30-after.sh", "true\n");
    // 5 s, not 1: the limit also bounds sourcing our own stackrc, which takes over
    // a second on this 2-core machine under a parallel build.
    let run = t.devstack_env(&["stack"], &[("DEVSTACK_HOOK_TIMEOUT", "5")]);
    run.failure();
    assert!(
        run.stderr
            .contains("extras.d 20-hangs.sh did not finish within 5 s at stack install"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("DEVSTACK_HOOK_TIMEOUT"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_failure_inside_a_function_during_unstack_is_one_warning_at_its_line() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras(
        "20-f.sh",
        "f() {\n  false\n}\nif [[ $1 == unstack ]]; then\n  f\nfi\n",
    );
    let run = t.devstack(&["unstack"]);
    run.success();
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", run.stderr);
    assert!(warnings[0].contains("20-f.sh:2"), "{}", run.stderr);
}

#[test]
fn extras_files_with_other_suffixes_are_reported_and_non_files_are_clear_errors() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    for name in ["30-a.bash", "31-b", "32-c.SH"] {
        t.extras(name, "echo ran >> \"$TRACE_FILE\"\n");
    }
    t.write("extras.d/README.md", "not a script");
    let run = t.devstack(&["stack"]);
    run.success();
    for name in ["30-a.bash", "31-b", "32-c.SH"] {
        assert!(
            run.stderr
                .contains(&format!("extras.d/{name} is not a .sh file; skipped")),
            "{name}: {}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("README"), "{}", run.stderr);
    assert!(t.trace().is_empty());

    for (what, make) in [("directory", 0), ("dangling symlink", 1)] {
        let t = Tree::new();
        t.local_conf("disable_all_services", "");
        let p = t.path("extras.d/40-x.sh");
        if make == 0 {
            std::fs::create_dir_all(&p).unwrap();
        } else {
            std::os::unix::fs::symlink("/nonexistent/target", &p).unwrap();
        }
        let run = t.devstack(&["stack"]);
        run.failure();
        assert!(
            run.stderr.contains("40-x.sh is not a regular file"),
            "{what}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("batch"), "{what}: {}", run.stderr);
    }
}

#[test]
fn a_malformed_frame_on_the_channel_is_an_error_not_a_hang() {
    for (what, hook) in [
        ("bad count", "printf 'x\\0notanumber\\0' >&62; sleep 300\n"),
        (
            "huge count",
            "printf 'x\\0999999999999999999\\0' >&62; sleep 300\n",
        ),
    ] {
        let t = Tree::new();
        let m = marker(&t);
        t.local_conf("disable_all_services", "");
        t.extras(
            "10-garbage.sh",
            &format!(
                "if [[ \"$*\" == \"stack install\" ]]; then (exec -a {m} bash -c \"{}\"); fi\n",
                hook.trim_end().replace('"', "\\\"")
            ),
        );
        let t0 = std::time::Instant::now();
        let run = t.devstack_env(&["stack"], &[("DEVSTACK_HOOK_TIMEOUT", "5")]);
        run.failure();
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "{what}: took {:?}",
            t0.elapsed()
        );
        assert_gone(&m, what);
        if what == "bad count" {
            assert!(run.stderr.contains("descriptor 62"), "{}", run.stderr);
        }
    }
}

#[test]
fn a_relative_or_non_utf8_dest_is_refused_before_anything_is_created() {
    let t = Tree::new();
    t.write(
        "local.conf",
        "[[local|localrc]]\nDEST=relative/stack\ndisable_all_services\n",
    );
    for cmd in ["stack", "plan"] {
        let run = t.devstack(&[cmd]);
        run.failure();
        assert!(
            run.stderr
                .contains("DEST=relative/stack is a relative path"),
            "{cmd}: {}",
            run.stderr
        );
    }
    assert!(!t.path("relative").exists());
    // local.conf itself must be UTF-8, and says at which line it is not.
    let mut bytes = b"[[local|localrc]]\ndisable_all_services\nX=\xff\n".to_vec();
    bytes.extend_from_slice(b"Y=1\n");
    std::fs::write(t.path("local.conf"), bytes).unwrap();
    let run = t.devstack(&["plan"]);
    run.failure();
    assert!(
        run.stderr.contains("local.conf:3: byte 0xff is not UTF-8"),
        "{}",
        run.stderr
    );
    // bash makes the byte.
    t.write(
        "local.conf",
        &format!(
            "[[local|localrc]]\nDEST=$'{}/st\\xff'\ndisable_all_services\n",
            t.dest.display()
        ),
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(run.stderr.contains("is not valid UTF-8"), "{}", run.stderr);
}

#[test]
fn the_fault_matrix_leaves_teardown_working_and_nothing_running() {
    let out = Command::new(crate::project_root().join("tools/faults.sh"))
        .env("DEVSTACK_BIN_UNDER_TEST", crate::devstack_bin())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.contains(" ok ")).count(),
        11,
        "{text}"
    );
}
