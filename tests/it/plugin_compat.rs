//! What real DevStack plugins need of the library beyond the documented API, found by
//! stacking them (tools/plugin-compat.sh, issue 15), each through a fixture plugin
//! that calls the library exactly as those plugins do.
//!
//! The git_clone fallback: plugins `git_clone` the client libraries they need
//! (cyborg: `git_clone $CYBORG_CLIENT_REPO $CYBORG_CLIENT_DIR ...; setup_develop
//! $CYBORG_CLIENT_DIR`; barbican, designate, watcher: `git_clone_by_name NAME;
//! setup_dev_lib NAME`) from a git server this machine may not reach. The tests
//! serve a package index from a directory (fixture wheels, `UV_INDEX_URL=file://...`)
//! so they need no network: only uv (the test cache's, installed with pip on first use).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Run, Tree};

/// A git server that cannot be reached: nothing listens on port 1.
pub(crate) const UNREACHABLE_GIT_BASE: &str = "http://127.0.0.1:1";

/// A pure-Python wheel of NAME at VERSION with one module, `<dist>_fixture`.
pub(crate) fn write_wheel(dir: &Path, name: &str, version: &str) -> String {
    let dist = name.replace('-', "_");
    let file = format!("{dist}-{version}-py3-none-any.whl");
    let script = r#"
import base64, hashlib, sys, zipfile
path, name, dist, version = sys.argv[1:5]
info = f"{dist}-{version}.dist-info"
files = {
    f"{dist}_fixture.py": f"VERSION = '{version}'\n",
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: fixture\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(path, "w") as z:
    for p, text in files.items():
        z.writestr(p, text)
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{p},sha256={digest},{len(text)}")
    record.append(f"{info}/RECORD,,")
    z.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
"#;
    let st = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir.join(&file))
        .args([name, &dist, version])
        .status()
        .expect("python3");
    assert!(st.success(), "building the fixture wheel {file}");
    file
}

/// A PEP 503 index in a directory: each (name, versions) as fixture wheels.
fn package_index(root: &Path, packages: &[(&str, &[&str])]) -> String {
    let index = root.join("index");
    for (name, versions) in packages {
        let dir = index.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut links = String::new();
        for v in *versions {
            let file = write_wheel(&dir, name, v);
            let _ = writeln!(links, "<a href=\"{file}\">{file}</a>");
        }
        std::fs::write(
            dir.join("index.html"),
            format!("<html><body>\n{links}</body></html>\n"),
        )
        .unwrap();
    }
    format!("file://{}", index.display())
}

use crate::git;

/// A plugin repository whose `stack install` runs INSTALL.
pub(crate) fn fixture_plugin(t: &Tree, name: &str, settings: &str, install: &str) -> PathBuf {
    let repo = crate::engine::plugin_repo(t.top.parent().unwrap(), name, settings);
    std::fs::write(
        repo.join("devstack/plugin.sh"),
        format!(
            "# fixture plugin: the install of a plugin that clones its client libraries\n\
             if [[ \"$1\" == stack && \"$2\" == install ]]; then\n{install}\nfi\n"
        ),
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "install"]);
    repo
}

/// The tree's DEST gets the test cache's uv, as a stack would have installed it.
pub(crate) fn give_uv(t: &Tree) {
    let mut uv = crate::keystone::uv(&crate::keystone::cache_dir());
    if !uv.is_absolute() {
        // `uv` on PATH.
        let out = Command::new("sh")
            .args(["-c", "command -v uv"])
            .output()
            .unwrap();
        uv = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    }
    let bin = t.dest.join(".uv-venv/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(uv, bin.join("uv")).unwrap();
}

/// `<dist>-<version>.dist-info` directories of the stack's venv.
pub(crate) fn installed(t: &Tree) -> Vec<String> {
    let mut found = Vec::new();
    let lib = t.dest.join("data/venv/lib");
    for py in std::fs::read_dir(&lib).into_iter().flatten().flatten() {
        let site = py.path().join("site-packages");
        for entry in std::fs::read_dir(site).into_iter().flatten().flatten() {
            let n = entry.file_name().to_string_lossy().into_owned();
            if let Some(n) = n.strip_suffix(".dist-info") {
                found.push(n.to_owned());
            }
        }
    }
    found.sort();
    found
}

pub(crate) fn output(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

/// cyborg's shape (git_clone REPO DIR BRANCH, then setup_develop DIR), barbican's
/// (GITREPO/GITDIR/GITBRANCH, git_clone_by_name, setup_dev_lib) and aodh's (whose
/// client is published as `aodhclient`, without the repository's python- prefix).
const CLONING_PLUGIN: &str = r#"
    CYBORG_CLIENT_REPO=${CYBORG_CLIENT_REPO:-"$GIT_BASE/openstack/python-cyborgclient"}
    CYBORG_CLIENT_DIR="${DEST}/python-cyborgclient"
    git_clone ${CYBORG_CLIENT_REPO} ${CYBORG_CLIENT_DIR} master
    setup_develop ${CYBORG_CLIENT_DIR}
    echo "cyborgclient set up" >> "$TRACE_FILE"
    GITREPO["python-barbicanclient"]=${BARBICANCLIENT_REPO:-${GIT_BASE}/openstack/python-barbicanclient.git}
    GITBRANCH["python-barbicanclient"]=${BARBICANCLIENT_BRANCH:-master}
    GITDIR["python-barbicanclient"]=$DEST/python-barbicanclient
    git_clone_by_name "python-barbicanclient"
    setup_dev_lib "python-barbicanclient"
    echo "barbicanclient set up" >> "$TRACE_FILE"
    GITDIR["python-aodhclient"]=$DEST/python-aodhclient
    GITREPO["python-aodhclient"]=$GIT_BASE/openstack/python-aodhclient.git
    git_clone_by_name "python-aodhclient"
    setup_dev_lib "python-aodhclient"
    echo "aodhclient set up" >> "$TRACE_FILE"
"#;

#[test]
#[ignore = "reason: needs uv (the test cache's, installed from PyPI on its first use): ./run_tests.sh runs it"]
fn a_library_whose_git_server_cannot_be_reached_comes_from_the_index_under_the_constraints() {
    let t = Tree::new();
    give_uv(&t);
    let root = t.top.parent().unwrap();
    // python-barbicanclient is pinned by the project's constraints file (7.6.0): the
    // index's newer release must not be taken. python-cyborgclient is not pinned.
    let index = package_index(
        root,
        &[
            ("python-barbicanclient", &["7.6.0", "9.9.9"]),
            ("python-cyborgclient", &["2.6.0"]),
            ("aodhclient", &["3.12.0"]),
        ],
    );
    let repo = fixture_plugin(&t, "clonefix", "", CLONING_PLUGIN);
    t.local_conf(
        &format!(
            "disable_all_services\nGIT_BASE={UNREACHABLE_GIT_BASE}\nenable_plugin clonefix {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack_env(&["stack"], &[("UV_INDEX_URL", &index)]);
    run.success();
    let out = output(&run);
    assert_eq!(
        t.trace_lines()
            .iter()
            .filter(|l| l.ends_with("set up"))
            .collect::<Vec<_>>(),
        [
            "cyborgclient set up",
            "barbicanclient set up",
            "aodhclient set up"
        ]
    );
    let have = installed(&t);
    assert!(
        have.contains(&"python_barbicanclient-7.6.0".to_owned()),
        "the constrained release: {have:?}"
    );
    for dist in ["python_cyborgclient-2.6.0", "aodhclient-3.12.0"] {
        assert!(have.contains(&dist.to_owned()), "{dist}: {have:?}");
    }
    for repo in [
        "http://127.0.0.1:1/openstack/python-cyborgclient",
        "http://127.0.0.1:1/openstack/python-barbicanclient.git",
    ] {
        assert!(
            out.contains(&format!("git clone of {repo} failed")),
            "a warning names {repo}:\n{out}"
        );
    }
}

#[test]
#[ignore = "reason: needs uv (the test cache's, installed from PyPI on its first use): ./run_tests.sh runs it"]
fn with_error_on_clone_a_failed_library_clone_stays_an_error() {
    let t = Tree::new();
    give_uv(&t);
    let root = t.top.parent().unwrap();
    let index = package_index(root, &[("python-cyborgclient", &["2.6.0"])]);
    let repo = fixture_plugin(&t, "clonefix", "", CLONING_PLUGIN);
    // As a gate job has it: the plugin is in place, every clone is forbidden.
    std::fs::create_dir_all(&t.dest).unwrap();
    git(
        root,
        &[
            "clone",
            "-q",
            &repo.display().to_string(),
            &t.dest.join("clonefix").display().to_string(),
        ],
    );
    t.local_conf(
        &format!(
            "disable_all_services\nGIT_BASE={UNREACHABLE_GIT_BASE}\nERROR_ON_CLONE=True\nenable_plugin clonefix {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack_env(&["stack"], &[("UV_INDEX_URL", &index)]);
    run.failure();
    let out = output(&run);
    assert!(out.contains("ERROR_ON_CLONE"), "{out}");
    assert!(!t.trace().contains("set up"), "{}", t.trace());
    assert!(
        !installed(&t)
            .iter()
            .any(|d| d.starts_with("python_cyborgclient")),
        "nothing installed instead"
    );
}

#[test]
#[ignore = "reason: needs uv (the test cache's, installed from PyPI on its first use): ./run_tests.sh runs it"]
fn a_library_the_index_does_not_have_stays_a_clone_error() {
    let t = Tree::new();
    give_uv(&t);
    let root = t.top.parent().unwrap();
    // An index without python-cyborgclient.
    let index = package_index(root, &[("python-barbicanclient", &["7.6.0"])]);
    let repo = fixture_plugin(&t, "clonefix", "", CLONING_PLUGIN);
    t.local_conf(
        &format!(
            "disable_all_services\nGIT_BASE={UNREACHABLE_GIT_BASE}\nenable_plugin clonefix {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack_env(&["stack"], &[("UV_INDEX_URL", &index)]);
    run.failure();
    let out = output(&run);
    assert!(
        out.contains("git clone of http://127.0.0.1:1/openstack/python-cyborgclient failed"),
        "{out}"
    );
    assert!(!t.trace().contains("set up"), "{}", t.trace());
}
