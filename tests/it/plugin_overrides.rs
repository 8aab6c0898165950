//! Issue 15, the override contracts DevStack's plugins rely on, `plan` as stack would
//! run it, a failure report that shows the plugin's own output, and `rabbitmqctl` as a
//! DevStack user types it.

use crate::Tree;
use crate::engine::plugin_repo;

/// A plugin traced with `set -o xtrace` (as many are) that calls library functions
/// and then fails: the report's last lines are its own output, the failing command's
/// message included, and none of them is a line of our internals traced.
#[test]
fn a_traced_plugins_failure_report_shows_its_output_not_our_internals() {
    let t = Tree::new();
    let conf = t.top.parent().unwrap().join("traced.conf");
    let repo = plugin_repo(t.top.parent().unwrap(), "traced", "");
    std::fs::write(
        repo.join("devstack/plugin.sh"),
        format!(
            "# Save trace setting\n\
             _XTRACE_TRACED=$(set +o | grep xtrace)\n\
             set -o xtrace\n\
             if [[ $1 == stack && $2 == install ]]; then\n\
             \x20   iniset {conf} DEFAULT debug True\n\
             \x20   if is_service_enabled traced; then echo traced-enabled; fi\n\
             \x20   echo_summary \"Configuring traced\"\n\
             \x20   token=$(bash -c 'echo \"Failed to discover available identity versions\" >&2; exit 1')\n\
             fi\n\
             $_XTRACE_TRACED\n",
            conf = conf.display()
        ),
    )
    .unwrap();
    commit_all(&repo);
    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin traced {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    let err = &run.stderr;
    let tail: Vec<&str> = err
        .lines()
        .skip_while(|l| !l.contains("lines of output:"))
        .skip(1)
        .take_while(|l| l.trim_start().starts_with('|'))
        .collect();
    assert!(!tail.is_empty(), "no tail: {err}");
    assert!(
        tail.iter()
            .any(|l| l.contains("Failed to discover available identity versions")),
        "the failing command's message: {err}"
    );
    assert!(
        tail.iter()
            .all(|l| !l.contains("_ds_") && !l.contains("_DS_")),
        "our internals traced: {err}"
    );
    // The plugin's own trace is kept.
    assert!(tail.iter().any(|l| l.contains("iniset")), "{err}");
}

/// Commits every change of a fixture plugin repository.
fn commit_all(repo: &std::path::Path) {
    crate::git(repo, &["add", "-A"]);
    crate::git(repo, &["commit", "-q", "-m", "change"]);
}

/// A plugin whose settings source its own library through `$DEST/<name>` (as most
/// do): `plan` fetches it there as stack would, its settings work, and the plan
/// shows the services they enabled.
#[test]
fn plan_fetches_plugins_into_dest_so_their_settings_find_their_files() {
    let t = Tree::new();
    let repo = plugin_repo(
        t.top.parent().unwrap(),
        "libbed",
        "source $DEST/libbed/devstack/lib/libbed\nenable_service libbed-api",
    );
    std::fs::create_dir_all(repo.join("devstack/lib")).unwrap();
    std::fs::write(
        repo.join("devstack/lib/libbed"),
        "LIBBED_DIR=$DEST/libbed\nfunction install_libbed { :; }\n",
    )
    .unwrap();
    commit_all(&repo);
    t.local_conf(
        &format!(
            "disable_all_services\nenable_plugin libbed {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack(&["plan"]);
    run.success();
    assert!(
        run.stdout.contains("libbed-api"),
        "settings enabled the service: {}",
        run.stdout
    );
    assert!(
        t.dest.join("libbed/devstack/lib/libbed").is_file(),
        "fetched into DEST as stack does"
    );
    // A second plan reads the checkout that is there.
    t.devstack(&["plan"]).success();
}

/// A plugin's settings that end the shell (`exit`, or a failure under errexit):
/// the plan is not a plan of what stack would do, and says so with its status.
#[test]
fn plan_fails_when_a_plugins_settings_end_the_shell() {
    for (name, settings) in [
        ("exits", "exit 0"),
        ("sources", "source $DEST/sources/devstack/no-such-file"),
    ] {
        let t = Tree::new();
        let repo = plugin_repo(t.top.parent().unwrap(), name, settings);
        t.local_conf(
            &format!(
                "disable_all_services\nenable_plugin {name} {}",
                repo.display()
            ),
            "",
        );
        let run = t.devstack(&["plan"]);
        run.failure();
        assert!(run.stderr.contains(name), "{name}: {}", run.stderr);
    }
}

/// `sudo rabbitmqctl list_queues` as a DevStack user (or a plugin) types it, without
/// `-n`, reaches the broker stack started; the tools' node name goes away with it.
#[test]
#[ignore = "reason: starts real servers (root, the machine's ports): ./run_tests.sh runs it"]
fn rabbitmqctl_without_a_node_name_reaches_our_broker() {
    let _guard = crate::layer1::lock();
    let t = Tree::new();
    t.local_conf(
        "disable_all_services\nenable_service rabbit\nSERVICE_TIMEOUT=90",
        "",
    );
    t.extras(
        "50-mq.sh",
        "if [[ $1 == stack && $2 == extra ]]; then\n\
         \x20   sudo rabbitmqctl list_queues\n\
         \x20   sudo rabbitmqctl list_users > \"$TRACE_FILE.users\"\n\
         fi\n",
    );
    let run = t.devstack(&["stack"]);
    let teardown = || {
        t.devstack(&["unstack", "--all"]);
        t.devstack(&["clean"]);
    };
    if run.status != 0 {
        teardown();
    }
    run.success();
    let users = std::fs::read_to_string(t.trace.with_extension("users")).unwrap_or_default();
    // And from a shell outside the run, as a user would.
    let outside = std::process::Command::new("sudo")
        .args(["rabbitmqctl", "list_users"])
        .output()
        .unwrap();
    teardown();
    assert!(users.contains("stackrabbit"), "{users}");
    assert!(
        String::from_utf8_lossy(&outside.stdout).contains("stackrabbit"),
        "{}",
        String::from_utf8_lossy(&outside.stderr)
    );
    let env_conf = std::fs::read_to_string("/etc/rabbitmq/rabbitmq-env.conf").unwrap_or_default();
    assert!(!env_conf.contains("devstack-rs"), "{env_conf}");
}

/// A plugin that changes a service's config and restarts it as DevStack's users do
/// (`restart_service devstack@NAME`): without systemd, the process is started again
/// as it was started, and reads the new config.
#[test]
fn restart_service_devstack_unit_starts_the_process_again_with_the_new_config() {
    let t = Tree::new();
    let dir = t.top.parent().unwrap();
    let conf = dir.join("echo.conf");
    let out = dir.join("echo.out");
    let marker = format!("ds-restart-{}", std::process::id());
    t.local_conf("disable_all_services\nenable_service echo-svc", "");
    t.extras(
        "50-echo.sh",
        &format!(
            "if [[ $1 == stack && $2 == install ]]; then\n\
             \x20   iniset {conf} DEFAULT greeting first\n\
             \x20   run_process echo-svc \"grep greeting {conf} > {out}; exec -a {marker} sleep 1000\" \"\" \"\" \"ECHO_MODE=kept\"\n\
             elif [[ $1 == stack && $2 == extra ]]; then\n\
             \x20   iniset {conf} DEFAULT greeting second\n\
             \x20   restart_service devstack@echo-svc\n\
             fi\n",
            conf = conf.display(),
            out = out.display(),
        ),
    );
    let run = t.devstack(&["stack"]);
    let ours = || crate::trust::procs_with(&marker);
    let mut seen = String::new();
    for _ in 0..100 {
        seen = std::fs::read_to_string(&out).unwrap_or_default();
        if seen.contains("second") && ours().len() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let pids = ours();
    let env = pids
        .first()
        .map(|pid| std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default())
        .unwrap_or_default();
    t.devstack(&["unstack"]);
    run.success();
    assert!(seen.contains("greeting = second"), "{seen}");
    assert_eq!(pids.len(), 1, "one process after the restart: {pids:?}");
    assert!(
        String::from_utf8_lossy(&env).contains("ECHO_MODE=kept"),
        "started again with its environment"
    );
    crate::trust::assert_gone(&marker, "unstack after the restart");
}

/// With rabbit disabled and no messaging plugin, DevStack gives no transport: its
/// `get_transport_url` prints nothing and `iniset_rpc_backend` writes nothing
/// (RABBIT_PASSWORD is read only with rabbit enabled).
#[test]
fn without_rabbit_and_without_a_messaging_plugin_there_is_no_transport() {
    let t = Tree::new();
    let conf = t.top.parent().unwrap().join("svc.conf");
    t.local_conf("disable_all_services\nenable_service svc", "");
    t.extras(
        "50-svc.sh",
        &format!(
            "if [[ $1 == stack && $2 == install ]]; then\n\
             \x20   iniset {conf} DEFAULT debug True\n\
             \x20   iniset_rpc_backend svc {conf}\n\
             \x20   echo \"url=[$(get_transport_url)]\" >> \"$TRACE_FILE\"\n\
             fi\n",
            conf = conf.display()
        ),
    );
    t.devstack(&["stack"]).success();
    assert!(t.trace().contains("url=[]"), "{}", t.trace());
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(!text.contains("transport_url"), "{text}");
}
