//! Issue 17 item 9: clean restores the host. What a stack's hooks create or change in
//! the host's system directories (a sudoers rule, an AppArmor profile, a line in
//! /etc/exports, a link in /usr/local/bin, a directory of their own under /etc) is
//! removed or put back by clean; what the user had or changed since is left and said.
//!
//! The watched directories are moved under a temporary root with the tree's
//! `DEVSTACK_HOST_ROOT` setting, so these tests never touch the real /etc.

use std::path::{Path, PathBuf};

use crate::Tree;
use crate::engine::plugin_repo;

/// A fake host root with what a user had before the stack.
fn host_root(t: &Tree) -> PathBuf {
    let root = t.top.parent().unwrap().join("host");
    for dir in [
        "etc/sudoers.d",
        "etc/apparmor.d",
        "usr/local/bin",
        "usr/local/sbin",
    ] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("etc/exports"), "/srv/users *(ro)\n").unwrap();
    std::fs::write(root.join("etc/sudoers.d/users"), "alice ALL=(ALL) ALL\n").unwrap();
    std::fs::write(root.join("usr/local/bin/users-tool"), "#!/bin/sh\n").unwrap();
    root
}

/// A plugin whose install phase writes to the host as real plugins do: `sudo install`
/// into sudoers.d, `tee -a` onto /etc/exports, `ln -sf` into /usr/local/bin, a profile
/// in apparmor.d and a config directory of its own under /etc.
fn host_writing_plugin(t: &Tree) -> PathBuf {
    let repo = plugin_repo(t.top.parent().unwrap(), "hostfix", "");
    std::fs::write(
        repo.join("devstack/plugin.sh"),
        "# fixture plugin: writes into the host's system directories at stack install\n\
         H=$DEVSTACK_HOST_ROOT\n\
         if [[ $1 == stack && $2 == install ]]; then\n\
         \x20   rule=$(mktemp)\n\
         \x20   echo \"$STACK_USER ALL=(root) NOPASSWD: /usr/bin/true\" > \"$rule\"\n\
         \x20   sudo install -o root -g root -m 0440 \"$rule\" \"$H/etc/sudoers.d/hostfix\"\n\
         \x20   rm -f \"$rule\"\n\
         \x20   echo \"/srv/hostfix *(rw,no_root_squash)\" | sudo tee -a \"$H/etc/exports\" >/dev/null\n\
         \x20   sudo ln -sf \"$DEST/hostfix/bin/hostfix-manage\" \"$H/usr/local/bin/hostfix-manage\"\n\
         \x20   echo 'profile hostfix {}' | sudo tee \"$H/etc/apparmor.d/usr.bin.hostfix\" >/dev/null\n\
         \x20   sudo mkdir -p \"$H/etc/hostfix/rootwrap.d\"\n\
         \x20   echo '[DEFAULT]' | sudo tee \"$H/etc/hostfix/hostfix.conf\" >/dev/null\n\
         \x20   echo '[Filters]' | sudo tee \"$H/etc/hostfix/rootwrap.d/hostfix.filters\" >/dev/null\n\
         fi\n",
    )
    .unwrap();
    crate::git(&repo, &["add", "-A"]);
    crate::git(&repo, &["commit", "-q", "-m", "writes to the host"]);
    repo
}

fn conf(t: &Tree, repo: &Path, root: &Path) {
    t.local_conf(
        &format!(
            "disable_all_services\nDEVSTACK_HOST_ROOT={}\nenable_plugin hostfix file://{}",
            root.display(),
            repo.display()
        ),
        "",
    );
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn clean_removes_what_hooks_created_and_puts_back_what_they_changed() {
    let t = Tree::new();
    let root = host_root(&t);
    let repo = host_writing_plugin(&t);
    conf(&t, &repo, &root);
    t.devstack(&["stack"]).success();
    let link = root.join("usr/local/bin/hostfix-manage");
    assert!(root.join("etc/sudoers.d/hostfix").is_file());
    assert!(read(&root.join("etc/exports")).contains("/srv/hostfix"));
    assert!(link.symlink_metadata().is_ok());
    // Hooks run again (a re-stack from scratch): the line is appended twice, and
    // what clean puts back is still the file from before the first stack.
    t.devstack(&["stack", "--from-scratch"]).success();
    assert_eq!(
        read(&root.join("etc/exports"))
            .matches("/srv/hostfix")
            .count(),
        2
    );

    let run = t.devstack(&["clean"]);
    run.success();
    let out = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(
        read(&root.join("etc/exports")),
        "/srv/users *(ro)\n",
        "{out}"
    );
    assert!(!root.join("etc/sudoers.d/hostfix").exists(), "{out}");
    assert!(
        link.symlink_metadata().is_err(),
        "dangling link left: {out}"
    );
    assert!(
        !root.join("etc/apparmor.d/usr.bin.hostfix").exists(),
        "{out}"
    );
    assert!(!root.join("etc/hostfix").exists(), "{out}");
    // What the user had is untouched.
    assert_eq!(
        read(&root.join("etc/sudoers.d/users")),
        "alice ALL=(ALL) ALL\n"
    );
    assert!(root.join("usr/local/bin/users-tool").is_file());
    assert!(root.join("etc/apparmor.d").is_dir());
    // Each action is said, with the hook that did it.
    let sudoers = root.join("etc/sudoers.d/hostfix");
    assert!(
        out.contains(&format!("removed {}", sudoers.display())),
        "{out}"
    );
    assert!(out.contains("plugin hostfix"), "{out}");
    assert!(
        out.contains(&format!("put back {}", root.join("etc/exports").display())),
        "{out}"
    );
    // Nothing of the record is left in the tree.
    assert!(!t.top.join(".devstack/host-files").exists());
}

#[test]
fn what_the_user_changed_after_the_stack_is_left_and_said() {
    let t = Tree::new();
    let root = host_root(&t);
    let repo = host_writing_plugin(&t);
    conf(&t, &repo, &root);
    t.devstack(&["stack"]).success();
    // The user edits both the file a hook changed and the one it made.
    let exports = root.join("etc/exports");
    let mut text = read(&exports);
    text.push_str("/srv/mine *(ro)\n");
    std::fs::write(&exports, &text).unwrap();
    let rule = root.join("etc/sudoers.d/hostfix");
    std::fs::write(&rule, "bob ALL=(ALL) ALL\n").unwrap();

    let run = t.devstack(&["clean"]);
    run.success();
    let out = format!("{}{}", run.stdout, run.stderr);
    assert_eq!(read(&exports), text, "the user's edit is kept: {out}");
    assert_eq!(read(&rule), "bob ALL=(ALL) ALL\n", "{out}");
    assert!(
        out.contains(&format!(
            "left {}: it changed since the stack",
            exports.display()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "left {}: it changed since the stack",
            rule.display()
        )),
        "{out}"
    );
    // The rest is still undone.
    assert!(
        !root.join("etc/apparmor.d/usr.bin.hostfix").exists(),
        "{out}"
    );
}

/// A file the package manager owns, made while a hook ran (what `install_package`
/// brings), is the package's: left, and said. The fake root's `etc/bash.bashrc`
/// stands for the host's, which dpkg knows as bash's.
#[test]
fn a_new_file_a_package_owns_is_left_with_the_package_and_said() {
    let owned = std::process::Command::new("dpkg-query")
        .args(["-S", "/etc/bash.bashrc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !owned {
        eprintln!("skipped: dpkg does not know /etc/bash.bashrc here");
        return;
    }
    let t = Tree::new();
    let root = host_root(&t);
    let repo = plugin_repo(t.top.parent().unwrap(), "hostfix", "");
    std::fs::write(
        repo.join("devstack/plugin.sh"),
        "if [[ $1 == stack && $2 == pre-install ]]; then\n\
         \x20   echo '# bash' | sudo tee \"$DEVSTACK_HOST_ROOT/etc/bash.bashrc\" >/dev/null\n\
         \x20   sudo touch \"$DEVSTACK_HOST_ROOT/etc/hostfix.conf\"\n\
         fi\n",
    )
    .unwrap();
    crate::git(&repo, &["add", "-A"]);
    crate::git(&repo, &["commit", "-q", "-m", "package file"]);
    conf(&t, &repo, &root);
    t.devstack(&["stack"]).success();
    let run = t.devstack(&["clean"]);
    run.success();
    let out = format!("{}{}", run.stdout, run.stderr);
    let bashrc = root.join("etc/bash.bashrc");
    assert!(bashrc.is_file(), "{out}");
    assert!(
        out.contains(&format!(
            "left {}: package bash installed it",
            bashrc.display()
        )),
        "{out}"
    );
    assert!(!root.join("etc/hostfix.conf").exists(), "{out}");
}
