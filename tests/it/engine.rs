//! Engine tests (issue 2): every hook at every point in the contract's order, external
//! plugins, hypervisor plugins, failures and their reports, local.conf errors, the lock.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Tree, project_root, recording_hook};

const POINTS_STACK: &[&str] = &[
    "override_defaults",
    "source",
    "stack pre-install",
    "stack install",
    "stack post-config",
    "stack extra",
    "stack test-config",
];

/// Creates a git repository holding a DevStack plugin whose files record their calls.
pub(crate) fn plugin_repo(root: &Path, name: &str, settings_extra: &str) -> PathBuf {
    let repo = root.join(format!("repo-{name}"));
    std::fs::create_dir_all(repo.join("devstack")).unwrap();
    std::fs::write(
        repo.join("devstack/override-defaults"),
        format!("echo \"{name}:override-defaults $#\" >> \"$TRACE_FILE\"\n"),
    )
    .unwrap();
    std::fs::write(
        repo.join("devstack/settings"),
        format!("echo \"{name}:settings $#\" >> \"$TRACE_FILE\"\ndefine_plugin {name}\n{settings_extra}\n"),
    )
    .unwrap();
    std::fs::write(
        repo.join("devstack/plugin.sh"),
        recording_hook(&format!("{name}:plugin.sh"), &[]),
    )
    .unwrap();
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(args)
            .current_dir(&repo)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    git(&["init", "-q", "-b", "master"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "plugin"]);
    repo
}

fn expected(names: &[&str], points: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for point in points {
        for n in names {
            out.push(format!("{n} {point}").trim_end().to_owned());
        }
    }
    out
}

#[test]
fn stack_unstack_clean_run_every_hook_in_contract_order() {
    let t = Tree::new();
    let repo = plugin_repo(t.top.parent().unwrap(), "plug", "");
    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin plug file://{}",
            repo.display()
        ),
        "",
    );
    t.extras("20-beta.sh", &recording_hook("20-beta.sh", &[]));
    t.extras("10-alpha.sh", &recording_hook("10-alpha.sh", &[]));
    t.devstack(&["stack"]).success();

    let mut want = Vec::new();
    for point in POINTS_STACK {
        want.push(format!("10-alpha.sh {point}"));
        want.push(format!("20-beta.sh {point}"));
        want.push(match *point {
            "override_defaults" => "plug:override-defaults 0".to_owned(),
            "source" => "plug:settings 0".to_owned(),
            p => format!("plug:plugin.sh {p}"),
        });
    }
    assert_eq!(t.trace_lines(), want);
    assert!(
        t.dest.join("plug/devstack/plugin.sh").is_file(),
        "plugin cloned to $DEST/NAME"
    );

    std::fs::remove_file(&t.trace).unwrap();
    t.devstack(&["unstack"]).success();
    let mut want = expected(&["10-alpha.sh", "20-beta.sh"], &["override_defaults"]);
    want.push("plug:override-defaults 0".into());
    want.extend(expected(&["10-alpha.sh", "20-beta.sh"], &["source"]));
    want.push("plug:settings 0".into());
    want.extend(expected(
        &["10-alpha.sh", "20-beta.sh", "plug:plugin.sh"],
        &["unstack"],
    ));
    assert_eq!(t.trace_lines(), want);

    std::fs::remove_file(&t.trace).unwrap();
    t.devstack(&["clean"]).success();
    let mut clean_want = want.clone();
    clean_want.extend(expected(
        &["10-alpha.sh", "20-beta.sh", "plug:plugin.sh"],
        &["clean"],
    ));
    assert_eq!(t.trace_lines(), clean_want);
}

#[test]
fn variables_persist_across_hooks_and_functions_scope_like_devstack() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-set.sh",
        "local scoped=1\n\
         if [[ $1 == source ]]; then FROM_SOURCE=seen; declare LOCAL_DECL=gone; fi\n",
    );
    t.extras(
        "20-read.sh",
        &recording_hook("20-read.sh", &["FROM_SOURCE", "LOCAL_DECL", "scoped"]),
    );
    t.devstack(&["stack"]).success();
    let lines = t.trace_lines();
    // As in DevStack's run_phase, a point's files share one function call: a top-level
    // `local` lasts until the point ends, a `declare` is gone at the next point.
    assert!(
        lines.contains(&"20-read.sh stack extra FROM_SOURCE=seen LOCAL_DECL= scoped=1".to_owned()),
        "{lines:#?}"
    );
}

#[test]
fn plugin_requires_reorders_at_every_point() {
    let t = Tree::new();
    let root = t.top.parent().unwrap();
    let a = plugin_repo(root, "alpha", "plugin_requires alpha beta");
    let b = plugin_repo(root, "beta", "");
    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin alpha {}\nenable_plugin beta {} master",
            a.display(),
            b.display()
        ),
        "",
    );
    t.devstack(&["stack"]).success();
    let lines = t.trace_lines();
    assert_eq!(lines[0], "beta:override-defaults 0");
    assert_eq!(lines[1], "alpha:override-defaults 0");
    assert_eq!(lines[2], "beta:settings 0");
    assert_eq!(lines[3], "alpha:settings 0");
    assert_eq!(lines[4], "beta:plugin.sh stack pre-install");
    assert_eq!(lines[5], "alpha:plugin.sh stack pre-install");
}

#[test]
fn a_plugins_settings_find_devstacks_general_commands() {
    // Real plugins call uuidgen (and bc, curl, lsof...) in devstack/settings: stack
    // installs DevStack's general packages before the first plugin file is read.
    let t = Tree::new();
    let root = t.top.parent().unwrap();
    let a = plugin_repo(
        root,
        "alpha",
        "ALPHA_ID=$(uuidgen)\necho \"alpha:id ${#ALPHA_ID} $(echo '2*21' | bc)\" >> \"$TRACE_FILE\"",
    );
    t.local_conf(
        &format!("disable_all_services\nenable_plugin alpha {}", a.display()),
        "",
    );
    t.devstack(&["stack"]).success();
    assert!(
        t.trace_lines().iter().any(|l| l == "alpha:id 36 42"),
        "{}",
        t.trace()
    );
}

#[test]
fn missing_requirement_and_double_enable_fail_before_any_hook() {
    let t = Tree::new();
    let a = plugin_repo(
        t.top.parent().unwrap(),
        "alpha",
        "plugin_requires alpha nothere",
    );
    t.local_conf(
        &format!("disable_all_services\nenable_plugin alpha {}", a.display()),
        "",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(run.stderr.contains("requires 'nothere'"), "{}", run.stderr);
    assert_eq!(t.trace(), "");

    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin alpha {0}\nenable_plugin alpha {0}",
            a.display()
        ),
        "",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(run.stderr.contains("enabled twice"), "{}", run.stderr);
}

#[test]
fn failing_hook_reports_script_phase_file_line_command_and_tail() {
    let t = Tree::new();
    t.local_conf(
        "disable_all_services\nFAIL_AT='50-bad.sh:stack install'",
        "",
    );
    t.extras(
        "50-bad.sh",
        &format!(
            "echo output-before-failure\n{}",
            recording_hook("50-bad.sh", &[])
        ),
    );
    t.extras("60-after.sh", &recording_hook("60-after.sh", &[]));
    let run = t.devstack(&["stack"]);
    run.failure();
    let err = &run.stderr;
    assert!(
        err.contains("error: extras.d 50-bad.sh failed at stack install"),
        "{err}"
    );
    assert!(err.contains("phase: stack install"), "{err}");
    assert!(err.contains("50-bad.sh:5"), "file and line: {err}");
    assert!(err.contains("false_command_for_test"), "command: {err}");
    assert!(err.contains("| output-before-failure"), "tail: {err}");
    assert!(err.contains("stack.sh.log"), "log path: {err}");
    // The run stopped: nothing after the failing script at that point, nor later points.
    assert!(
        !t.trace().contains("60-after.sh stack install"),
        "{}",
        t.trace()
    );
    assert!(!t.trace().contains("post-config"));

    // unstack after a failed stack still runs its hooks.
    std::fs::remove_file(&t.trace).unwrap();
    t.devstack(&["unstack"]).success();
    assert!(t.trace().contains("60-after.sh unstack"));
}

#[test]
fn failure_inside_a_function_is_caught_with_its_location() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras(
        "30-func.sh",
        "helper() {\n    local x=1\n    false\n    echo not-reached\n}\nif [[ $1 == stack && $2 == install ]]; then\n    helper\nfi\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains("30-func.sh:3 (in function helper)"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("not-reached"));
}

#[test]
fn die_exit_and_hang_are_reported() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras(
        "40-die.sh",
        "if [[ $1 == stack && $2 == pre-install ]]; then die $LINENO \"no good\"; fi\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(run.stderr.contains("40-die.sh"), "{}", run.stderr);
    assert!(run.stderr.contains("no good"), "{}", run.stderr);

    t.extras(
        "40-die.sh",
        "if [[ $1 == stack && $2 == pre-install ]]; then echo bye; exit 7; fi\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr
            .contains("ended the plugin shell at stack pre-install (exit status 7)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("| bye"), "{}", run.stderr);

    t.extras(
        "40-die.sh",
        "if [[ $1 == stack && $2 == pre-install ]]; then sleep 60; fi\n",
    );
    let run = t.devstack_env(&["stack"], &[("DEVSTACK_HOOK_TIMEOUT", "2")]);
    run.failure();
    assert!(
        run.stderr.contains("did not finish within 2 s"),
        "{}",
        run.stderr
    );
}

#[test]
fn unstack_and_clean_on_a_fresh_tree_succeed_and_survive_failing_hooks() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.devstack(&["unstack"]).success();
    t.devstack(&["clean"]).success();
    // A failing command in unstack is a warning; the teardown goes on.
    t.extras(
        "10-fails.sh",
        "if [[ $1 == unstack ]]; then no_such_tool_here; fi\n",
    );
    t.extras("20-after.sh", &recording_hook("20-after.sh", &[]));
    let run = t.devstack(&["unstack"]);
    run.success();
    assert!(run.stderr.contains("no_such_tool_here"), "{}", run.stderr);
    assert!(t.trace().contains("20-after.sh unstack"));
}

/// A descriptor open in the shell that runs `./stack.sh` (here fd 7 on a marker
/// file, as `flock 9 ./stack.sh` holds its lock) reaches no child: not the plugin
/// shell, and so no process it starts, which could outlive the run and hold it.
#[test]
fn a_callers_open_descriptor_reaches_no_hook_or_process() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-fds.sh",
        "if [[ $1 == stack && $2 == extra ]]; then\n    \
         for fd in /proc/self/fd/*; do readlink \"$fd\" || true; done >> \"$TRACE_FILE\"\n\
         echo checked >> \"$TRACE_FILE\"\nfi\n",
    );
    let marker = t.path("held-by-caller");
    let run = Command::new("bash")
        .arg("-c")
        .arg("exec 7>\"$1\"; shift; \"$@\"")
        .arg("bash")
        .arg(&marker)
        .arg(crate::devstack_bin())
        .args(["--top-dir", t.top.to_str().unwrap(), "stack"])
        .env_remove("ENABLED_SERVICES")
        .env("DEST", &t.dest)
        .env("DEVSTACK_HOST_ROOT", crate::no_host(&t))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let trace = t.trace();
    assert!(trace.contains("checked"), "the hook did not run:\n{trace}");
    assert!(
        !trace.contains(marker.to_str().unwrap()),
        "the hook's shell inherited the caller's descriptor:\n{trace}"
    );
}

#[test]
fn bad_local_conf_lines_give_their_line_numbers() {
    let t = Tree::new();
    t.write(
        "local.conf",
        "[[local|localrc]]\nA=1\n[[post-konfig|/tmp/x]]\n",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(run.stderr.contains("local.conf:3:"), "{}", run.stderr);
    assert!(run.stderr.contains("post-konfig"), "{}", run.stderr);

    t.write("local.conf", "[[local|localrc]]\nA=1\nB=$(false)\n");
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(run.stderr.contains("local.conf:3:"), "{}", run.stderr);
}

#[test]
fn extras_names_outside_the_pattern_are_skipped_and_reserved_ranges_warned() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras("95-reserved.sh", &recording_hook("95-reserved.sh", &[]));
    t.extras("bad-name.sh", &recording_hook("bad-name.sh", &[]));
    t.write("extras.d/README.md", "not a script");
    let run = t.devstack(&["stack"]);
    run.success();
    assert!(
        run.stderr
            .contains("95-reserved.sh uses sequence 95, reserved"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("bad-name.sh does not match"),
        "{}",
        run.stderr
    );
    assert!(t.trace().contains("95-reserved.sh stack extra"));
    assert!(!t.trace().contains("bad-name.sh"));
}

/// A hypervisor plugin that records its five calls.
fn hypervisor_plugin(t: &Tree, driver: &str, skip: Option<&str>) -> PathBuf {
    let dir = t.top.parent().unwrap().join("nova_plugins");
    let mut text = String::from("# test hypervisor plugin\n");
    for f in ["install", "configure", "start", "stop", "cleanup"] {
        let name = format!("{f}_nova_hypervisor");
        if Some(name.as_str()) != skip {
            let _ = writeln!(
                text,
                "{name}() {{ echo \"hv {name}\" >> \"$TRACE_FILE\"; }}"
            );
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("hypervisor-{driver}")), text).unwrap();
    dir
}

#[test]
fn hypervisor_plugin_functions_are_called_at_novas_points() {
    let t = Tree::new();
    let dir = hypervisor_plugin(&t, "probe", None);
    t.local_conf(
        &format!("disable_all_services\nenable_service test-hypervisor\nNOVA_PLUGINS={}\nVIRT_DRIVER=probe", dir.display()),
        "",
    );
    t.extras("10-a.sh", &recording_hook("10-a.sh", &[]));
    t.devstack(&["stack"]).success();
    let lines = t.trace_lines();
    let pos = |s: &str| {
        lines
            .iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} missing: {lines:#?}"))
    };
    assert!(pos("10-a.sh stack pre-install") < pos("hv install_nova_hypervisor"));
    assert!(pos("hv install_nova_hypervisor") < pos("hv configure_nova_hypervisor"));
    assert!(pos("hv configure_nova_hypervisor") < pos("10-a.sh stack install"));
    assert!(pos("10-a.sh stack post-config") < pos("hv start_nova_hypervisor"));
    assert!(pos("hv start_nova_hypervisor") < pos("10-a.sh stack extra"));
    std::fs::remove_file(&t.trace).unwrap();
    t.devstack(&["clean"]).success();
    let lines = t.trace_lines();
    let pos = |s: &str| {
        lines
            .iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} missing: {lines:#?}"))
    };
    assert!(pos("10-a.sh unstack") < pos("hv stop_nova_hypervisor"));
    assert!(pos("hv stop_nova_hypervisor") < pos("10-a.sh clean"));
    assert!(pos("10-a.sh clean") < pos("hv cleanup_nova_hypervisor"));
}

/// The shipped libvirt plugin, its ops recorded instead of done (a `_ds_call`
/// defined after the file's own functions): each of its five functions sends its
/// op at nova's point.
#[test]
fn the_libvirt_plugin_sends_its_five_ops_at_novas_points() {
    let t = Tree::new();
    let dir = t.top.parent().unwrap().join("nova_plugins");
    let shipped =
        std::fs::read_to_string(project_root().join("lib/nova_plugins/hypervisor-libvirt"))
            .unwrap();
    let text = format!(
        "{shipped}\n# test: record each op instead of doing it\n\
         _ds_call() {{ while [[ $1 == -v ]]; do shift 2; done; echo \"op $1\" >> \"$TRACE_FILE\"; }}\n"
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hypervisor-libvirt"), text).unwrap();
    t.local_conf(
        &format!("disable_all_services\nenable_service test-hypervisor\nNOVA_PLUGINS={}\nVIRT_DRIVER=libvirt", dir.display()),
        "",
    );
    t.extras("10-a.sh", &recording_hook("10-a.sh", &[]));
    t.devstack(&["stack"]).success();
    let lines = t.trace_lines();
    let ops: Vec<&String> = lines.iter().filter(|l| l.starts_with("op ")).collect();
    assert_eq!(
        ops,
        [
            "op libvirt-install",
            "op libvirt-configure",
            "op libvirt-start"
        ]
    );
    let pos = |lines: &[String], s: &str| {
        lines
            .iter()
            .position(|l| l == s)
            .unwrap_or_else(|| panic!("{s} missing: {lines:#?}"))
    };
    assert!(pos(&lines, "10-a.sh stack pre-install") < pos(&lines, "op libvirt-install"));
    assert!(pos(&lines, "op libvirt-configure") < pos(&lines, "10-a.sh stack install"));
    assert!(pos(&lines, "10-a.sh stack post-config") < pos(&lines, "op libvirt-start"));
    assert!(pos(&lines, "op libvirt-start") < pos(&lines, "10-a.sh stack extra"));
    std::fs::remove_file(&t.trace).unwrap();
    t.devstack(&["clean"]).success();
    let lines = t.trace_lines();
    assert!(pos(&lines, "10-a.sh unstack") < pos(&lines, "op libvirt-stop"));
    assert!(pos(&lines, "op libvirt-stop") < pos(&lines, "10-a.sh clean"));
    assert!(pos(&lines, "10-a.sh clean") < pos(&lines, "op libvirt-cleanup"));
}

#[test]
fn hypervisor_plugin_missing_a_function_is_an_error_before_anything_runs() {
    let t = Tree::new();
    let dir = hypervisor_plugin(&t, "broken", Some("stop_nova_hypervisor"));
    t.local_conf(
        &format!("disable_all_services\nenable_service test-hypervisor\nNOVA_PLUGINS={}\nVIRT_DRIVER=broken", dir.display()),
        "",
    );
    t.extras("10-a.sh", &recording_hook("10-a.sh", &[]));
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains("does not define stop_nova_hypervisor"),
        "{}",
        run.stderr
    );
    assert!(!t.trace().contains("pre-install"), "{}", t.trace());
}

#[test]
fn missing_hypervisor_file_is_a_warning_naming_driver_and_path() {
    let t = Tree::new();
    // VIRT_DRIVER set by a plugin-style override at override_defaults reaches Rust.
    t.local_conf("disable_all_services\nenable_service test-hypervisor", "");
    t.extras(
        "10-virt.sh",
        "if [[ $1 == override_defaults ]]; then VIRT_DRIVER=nosuch; fi\n",
    );
    let run = t.devstack(&["stack"]);
    run.success();
    assert!(run.stderr.contains("VIRT_DRIVER=nosuch"), "{}", run.stderr);
    assert!(run.stderr.contains("hypervisor-nosuch"), "{}", run.stderr);
}

#[test]
fn plan_lists_hook_calls_and_runs_no_stack_step() {
    let t = Tree::new();
    let repo = plugin_repo(t.top.parent().unwrap(), "plug", "");
    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin plug {}",
            repo.display()
        ),
        "",
    );
    t.extras("10-alpha.sh", &recording_hook("10-alpha.sh", &[]));
    let run = t.devstack(&["plan"]);
    run.success();
    let out = &run.stdout;
    assert!(out.contains("hook stack post-config"), "{out}");
    assert!(
        out.contains("10-alpha.sh stack post-config   [extras.d 10-alpha.sh]"),
        "{out}"
    );
    assert!(
        out.contains("devstack/plugin.sh stack extra   [plugin plug]"),
        "{out}"
    );
    let lines = t.trace_lines();
    assert!(
        lines.iter().all(|l| l.contains("override_defaults")
            || l.contains("source")
            || l.contains("override-defaults")
            || l.contains("settings")),
        "{lines:#?}"
    );
    assert!(
        t.dest.join("plug/devstack/plugin.sh").exists(),
        "plan fetches into DEST as stack does"
    );
}

#[test]
fn post_config_sections_are_merged_into_their_files() {
    let t = Tree::new();
    let conf = t.top.parent().unwrap().join("svc.conf");
    std::fs::write(&conf, "# keep me\n[DEFAULT]\nold = 1\n").unwrap();
    t.local_conf(
        &format!("disable_all_services\nSVC_CONF={}", conf.display()),
        "[[post-config|$SVC_CONF]]\n[DEFAULT]\nold = 2\n[new]\nmulti = a\nmulti = b\n",
    );
    t.devstack(&["stack"]).success();
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.starts_with("# keep me\n"), "{text}");
    assert!(text.contains("old = 2"), "{text}");
    assert!(
        text.contains("multi = a\nmulti = b") || text.contains("multi = a\r\nmulti = b"),
        "{text}"
    );
}

#[test]
fn passwords_are_generated_private_and_never_logged() {
    let t = Tree::new();
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-echo.sh",
        "if [[ $1 == stack && $2 == extra ]]; then echo \"pw is $ADMIN_PASSWORD\"; fi\n",
    );
    t.devstack(&["stack"]).success();
    let pwfile = t.dest.join("data/.devstack-passwords");
    let text = std::fs::read_to_string(&pwfile).unwrap();
    let admin = text
        .lines()
        .find_map(|l| l.strip_prefix("ADMIN_PASSWORD="))
        .unwrap()
        .to_owned();
    assert_eq!(
        std::fs::metadata(&pwfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let log = std::fs::read_to_string(t.dest.join("logs/stack.sh.log")).unwrap();
    assert!(log.contains("pw is ***"), "redacted line present");
    assert!(!log.contains(&admin), "password leaked into the log");
    // A second stack reuses the kept password.
    t.devstack(&["stack"]).success();
    let again = std::fs::read_to_string(&pwfile).unwrap();
    assert!(again.contains(&admin));
}

#[test]
fn a_second_stack_while_one_runs_is_refused_naming_the_holder() {
    let t = Tree::new();
    let gate = t.top.parent().unwrap().join("gate");
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-wait.sh",
        &format!(
            "if [[ $1 == stack && $2 == extra ]]; then touch {0}.started; while [[ ! -e {0} ]]; do sleep 0.1; done; fi\n",
            gate.display()
        ),
    );
    let mut first = Command::new(crate::devstack_bin())
        .arg("--top-dir")
        .arg(&t.top)
        .arg("stack")
        .env("DEVSTACK_HOST_ROOT", crate::no_host(&t))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = gate.with_extension("started");
    for _ in 0..300 {
        if started.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(started.exists(), "first stack reached its hook");
    let second = t.devstack(&["stack"]);
    std::fs::write(&gate, "").unwrap();
    let status = first.wait().unwrap();
    second.failure();
    assert!(
        second.stderr.contains(&format!("(pid {})", first.id())),
        "{}",
        second.stderr
    );
    assert!(status.success());
}

#[test]
fn a_plugin_that_exits_during_unstack_does_not_stop_the_teardown() {
    let t = Tree::new();
    t.local_conf("disable_all_services\nKEPT_VAR=kept", "");
    t.extras("10-exits.sh", "if [[ $1 == unstack ]]; then exit 4; fi\n");
    t.extras("20-after.sh", &recording_hook("20-after.sh", &["KEPT_VAR"]));
    let run = t.devstack(&["unstack"]);
    run.success();
    assert!(
        run.stderr
            .contains("10-exits.sh ended the plugin shell at unstack (exit status 4)"),
        "{}",
        run.stderr
    );
    // The next hook ran in a new shell that still has the settings.
    assert!(
        t.trace().contains("20-after.sh unstack KEPT_VAR=kept"),
        "{}",
        t.trace()
    );
}

#[test]
fn a_re_stack_of_an_unchanged_running_cloud_runs_nothing_after_the_settings() {
    let t = Tree::new();
    t.local_conf("disable_all_services\nenable_service sleeper", "");
    t.extras(
        "10-sleeper.sh",
        "if [[ $1 == stack && $2 == extra ]] && ! is_running sleeper; then run_process sleeper \"/bin/sleep 300\"; fi\n",
    );
    t.extras("20-rec.sh", &recording_hook("20-rec.sh", &[]));
    t.devstack(&["stack"]).success();
    let before = t.trace_lines().len();
    let again = t.devstack(&["stack"]);
    again.success();
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert!(
        !again.stderr.contains("[ok] start services"),
        "{}",
        again.stderr
    );
    // Only the hooks that shape the settings ran again; no stack phase did.
    let calls: Vec<String> = t.trace_lines()[before..].to_vec();
    assert_eq!(
        calls,
        ["20-rec.sh override_defaults", "20-rec.sh source"],
        "{}",
        again.stderr
    );
    // --from-scratch runs every step.
    let forced = t.devstack(&["stack", "--from-scratch"]);
    forced.success();
    assert!(
        forced.stderr.contains("[ok] start services"),
        "{}",
        forced.stderr
    );
    // A change to local.conf means a full stack again.
    t.local_conf(
        "disable_all_services\nenable_service sleeper\nSOMETHING_NEW=1",
        "",
    );
    let changed = t.devstack(&["stack"]);
    changed.success();
    assert!(
        !changed.stderr.contains("nothing to do"),
        "{}",
        changed.stderr
    );
    assert!(
        changed.stderr.contains("[ok] start services"),
        "{}",
        changed.stderr
    );
    // After unstack nothing runs: a full stack again.
    t.devstack(&["unstack"]).success();
    let after = t.devstack(&["stack"]);
    after.success();
    assert!(
        after.stderr.contains("[ok] start services"),
        "{}",
        after.stderr
    );
    t.devstack(&["unstack"]).success();
}

#[test]
fn an_interrupted_stack_stops_its_hooks_and_says_how_to_go_on() {
    let t = Tree::new();
    let marker = t.top.parent().unwrap().join("hook-child");
    t.local_conf("disable_all_services", "");
    // The hook starts a child (in the shell's process group) and waits on it.
    t.extras(
        "10-slow.sh",
        &format!(
            "if [[ $1 == stack && $2 == install ]]; then sleep 300 & echo $! > {}; wait; fi\n",
            marker.display()
        ),
    );
    let child = Command::new(crate::devstack_bin())
        .arg("--top-dir")
        .arg(&t.top)
        .arg("stack")
        .env("DEVSTACK_HOST_ROOT", crate::no_host(&t))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..300 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let sleeper: i32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains("./unstack.sh stops what was started"),
        "{stderr}"
    );
    // The hook's child went with the shell's process group.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let alive = std::fs::read_to_string(format!("/proc/{sleeper}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"));
    assert!(!alive, "the hook's child {sleeper} is still running");
    // The state says how the run ended.
    let state = std::fs::read_to_string(t.top.join(".devstack/state.json")).unwrap();
    assert!(state.contains("\"outcome\": \"failed\""), "{state}");
}
