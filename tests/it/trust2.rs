//! Issue 17, trust's second pass: a user's checkout is never deleted, a service never
//! runs twice, a DEST belongs to one tree, hooks' shell options do not break us, and
//! errors name what the user wrote.

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
