//! A re-stack after a change confined to local.conf's later-phase sections
//! (`[[post-config|FILE]]` and after): the settings, packages and databases are kept,
//! the sections are merged again (what the last merge replaced is put back first),
//! and only the processes whose command or config files changed restart.

use crate::{Tree, recording_hook};

/// A fixture service as a plugin's hooks start one: its config file written at
/// install, its process started by `run_process` at extra with `--config-file`; the
/// process appends its pid to NAME.pids when it starts.
fn service_hook(name: &str) -> String {
    format!(
        "if [[ $1 == stack && $2 == install ]]; then\n\
         \x20   printf '[DEFAULT]\\nbase = 0\\n' > \"$DEST/{name}.conf\"\n\
         \x20   printf '#!/bin/bash\\necho $$ >> \"%s\"\\nexec sleep 300\\n' \"$DEST/{name}.pids\" > \"$DEST/{name}.sh\"\n\
         \x20   chmod +x \"$DEST/{name}.sh\"\n\
         fi\n\
         if [[ $1 == stack && $2 == extra ]]; then\n\
         \x20   run_process {name} \"$DEST/{name}.sh --config-file $DEST/{name}.conf\"\n\
         fi\n"
    )
}

fn lines(t: &Tree, rel: &str) -> Vec<String> {
    std::fs::read_to_string(t.dest.join(rel))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_changed_post_config_option_restarts_only_the_service_whose_config_changed() {
    let t = Tree::new();
    let localrc = "disable_all_services\nenable_service edited\nenable_service other";
    let section =
        |value: &str| format!("[[post-config|$DEST/edited.conf]]\n[DEFAULT]\nopt = {value}\n");
    t.local_conf(localrc, &section("1"));
    t.extras("10-edited.sh", &service_hook("edited"));
    t.extras("11-other.sh", &service_hook("other"));
    t.extras("20-rec.sh", &recording_hook("20-rec.sh", &[]));
    let first = t.devstack(&["stack"]);
    first.success();
    // The summary's timing in DevStack's buckets: the two run_process calls.
    assert!(
        first
            .stderr
            .contains("component timing (DevStack's buckets):")
            && first
                .stderr
                .lines()
                .any(|l| l.trim_start().starts_with("run_process") && l.ends_with("(2)")),
        "{}",
        first.stderr
    );
    assert_eq!(lines(&t, "edited.pids").len(), 1);
    let conf = std::fs::read_to_string(t.dest.join("edited.conf")).unwrap();
    assert!(conf.contains("opt = 1"), "{conf}");

    // One option changed: the stack starts at the post-config merge.
    t.local_conf(localrc, &section("2"));
    let before = t.trace_lines().len();
    let changed = t.devstack(&["stack"]);
    changed.success();
    assert!(
        changed
            .stderr
            .contains("the stack resumes at 'merge local.conf [[post-config|...]]'"),
        "{}",
        changed.stderr
    );
    let conf = std::fs::read_to_string(t.dest.join("edited.conf")).unwrap();
    assert!(
        conf.contains("opt = 2") && !conf.contains("opt = 1"),
        "{conf}"
    );
    assert_eq!(lines(&t, "edited.pids").len(), 2, "edited restarted");
    assert_eq!(lines(&t, "other.pids").len(), 1, "other kept running");
    // The hooks before the merge did not run again; those after it did.
    let calls: Vec<String> = t.trace_lines()[before..].to_vec();
    assert!(
        !calls
            .iter()
            .any(|c| c.contains("install") || c.contains("post-config")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c == "20-rec.sh stack extra"),
        "{calls:?}"
    );

    // The section removed: the option is taken out again, the file's own stays.
    t.local_conf(localrc, "");
    t.devstack(&["stack"]).success();
    let conf = std::fs::read_to_string(t.dest.join("edited.conf")).unwrap();
    assert!(!conf.contains("opt ="), "{conf}");
    assert!(conf.contains("base = 0"), "{conf}");
    assert_eq!(lines(&t, "edited.pids").len(), 3);
    assert_eq!(lines(&t, "other.pids").len(), 1);

    // A setting changed: every step runs, every service restarts.
    t.local_conf(&format!("{localrc}\nSOMETHING_NEW=1"), "");
    let full = t.devstack(&["stack"]);
    full.success();
    assert!(full.stderr.contains("every step runs"), "{}", full.stderr);
    assert!(full.stderr.contains("$SOMETHING_NEW"), "{}", full.stderr);
    assert_eq!(lines(&t, "other.pids").len(), 2);
    t.devstack(&["unstack"]).success();
}

#[test]
fn a_process_that_stopped_is_started_again_and_nothing_else_runs() {
    let t = Tree::new();
    t.local_conf("disable_all_services\nenable_service edited", "");
    t.extras("10-edited.sh", &service_hook("edited"));
    t.extras("20-rec.sh", &recording_hook("20-rec.sh", &[]));
    t.devstack(&["stack"]).success();
    let pids = lines(&t, "edited.pids");
    assert_eq!(pids.len(), 1);
    // It dies (a crash, a kill): the next stack starts it again as it was started.
    let pid: i32 = pids[0].parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = t.trace_lines().len();
    let again = t.devstack(&["stack"]);
    again.success();
    assert!(
        again
            .stderr
            .contains("started again what had stopped since the last stack: edited"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("nothing to do"), "{}", again.stderr);
    assert_eq!(lines(&t, "edited.pids").len(), 2, "started once more");
    // No stack phase ran again: only the hooks that shape the settings.
    let calls: Vec<String> = t.trace_lines()[before..].to_vec();
    assert_eq!(calls, ["20-rec.sh override_defaults", "20-rec.sh source"]);
    // And it runs: a third stack has nothing to do and starts nothing.
    let third = t.devstack(&["stack"]);
    third.success();
    assert!(!third.stderr.contains("started again"), "{}", third.stderr);
    assert_eq!(lines(&t, "edited.pids").len(), 2);
    t.devstack(&["unstack"]).success();
}
