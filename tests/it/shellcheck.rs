//! shellcheck on every shell file the project ships (the library plugins source, the
//! entry scripts, tools, CI). Fails listing the findings; fails too when shellcheck is
//! missing, since a skipped lint is a lint nobody runs (run_tests.sh installs it).
//!
//! Options: `-x` follows `source` lines (with `# shellcheck source=` paths relative to
//! the project root, where this runs), `-s bash` for files without a shebang (the
//! library files are sourced, not executed), and a short exclusion list ([`EXCLUDE`]),
//! each a check whose findings here are false positives by construction.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::project_root;

/// Checks left out, and why:
/// - SC1091 "not following a sourced file": `functions` sources the optional library
///   parts only when present, and hooks source files the user provides at run time.
///   Other findings are silenced where they occur, with a reason beside them.
const EXCLUDE: &str = "SC1091";

/// Top-level and fixed-path shell files.
const FILES: &[&str] = &[
    "functions",
    "functions-common",
    "stackrc",
    "stack.sh",
    "unstack.sh",
    "clean.sh",
    "run_tests.sh",
    ".ci/run",
    "src/services/cinder_nfs_mount.sh",
];

/// Is this file bash (by name or first lines)? Library files carry
/// `# shellcheck shell=bash` or a bash shebang; data files under lib/ do not.
fn is_bash(path: &Path) -> bool {
    if path.extension().is_some_and(|e| e == "sh") {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines().take(5).any(|l| {
        (l.starts_with("#!") && l.contains("bash")) || l.trim() == "# shellcheck shell=bash"
    })
}

/// Every file under DIR (recursively), sorted.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.is_file() {
            out.push(p);
        }
    }
}

/// The shell files the project ships, relative to the project root.
fn shipped_shell_files(root: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = FILES
        .iter()
        .map(|f| root.join(f))
        .filter(|p| p.is_file())
        .collect();
    for dir in ["inc", "lib", "tools"] {
        let mut found = Vec::new();
        walk(&root.join(dir), &mut found);
        files.extend(found.into_iter().filter(|p| {
            if dir == "tools" {
                p.extension().is_some_and(|e| e == "sh")
            } else {
                is_bash(p)
            }
        }));
    }
    if let Ok(entries) = std::fs::read_dir(root.join("extras.d")) {
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sh"))
            .collect();
        found.sort();
        files.extend(found);
    }
    files
        .iter()
        .map(|p| {
            p.strip_prefix(root)
                .unwrap_or(p)
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn every_shipped_shell_file_passes_shellcheck() {
    let root = project_root();
    let files = shipped_shell_files(&root);
    for must in ["functions", "functions-common", "inc/rpc", "inc/ini-config"] {
        assert!(
            files.iter().any(|f| f == must),
            "{must} not found among {files:?}"
        );
    }
    let out = match Command::new("shellcheck")
        .args(["-x", "-s", "bash", "-e", EXCLUDE, "-f", "gcc"])
        .args(&files)
        .current_dir(&root)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "shellcheck is not installed ({e}); ./run_tests.sh installs it (apt-get install shellcheck)"
        ),
    };
    let findings = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "shellcheck found problems in the shipped shell files:\n{findings}{errors}\nchecked: {}",
        files.join(" ")
    );
}

#[test]
fn bash_detection_skips_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib-file");
    let data = dir.path().join("data.txt");
    let script = dir.path().join("x.sh");
    std::fs::write(&lib, "#!/bin/bash\n# shellcheck shell=bash\necho\n").unwrap();
    std::fs::write(&data, "key=value\n").unwrap();
    std::fs::write(&script, "echo\n").unwrap();
    assert!(is_bash(&lib));
    assert!(!is_bash(&data));
    assert!(is_bash(&script));
}
