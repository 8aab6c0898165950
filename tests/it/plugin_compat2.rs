//! What zaqar, designate and blazar need of the library (tools/plugin-compat.sh, issue
//! 15 item 7), each through a fixture plugin that calls the library as they do.
//!
//! A library cloned from a git server that cannot be reached comes from the package
//! index (plugin_compat.rs); these plugins also read files of what they cloned:
//! zaqar's install copies `${GITDIR["zaqar-ui"]}/zaqar_ui/enabled/*` into Horizon,
//! designate and blazar link their dashboards' `enabled/` panels from theirs. So the
//! directory the clone would have made holds the source release of what was installed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::Tree;
use crate::plugin_compat::{
    UNREACHABLE_GIT_BASE, fixture_plugin, give_uv, installed, output, write_wheel,
};

/// A source release (sdist) of NAME at VERSION: `<dist>-<version>/` with PKG-INFO,
/// setup.cfg and a dashboard-like `<dist>/enabled/_90_fixture_panel.py`.
fn write_sdist(dir: &Path, name: &str, version: &str) -> String {
    let dist = name.replace('-', "_");
    let file = format!("{dist}-{version}.tar.gz");
    let script = r#"
import io, sys, tarfile
path, name, dist, version = sys.argv[1:5]
top = f"{dist}-{version}"
files = {
    f"{top}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    f"{top}/setup.cfg": f"[metadata]\nname = {name}\n",
    f"{top}/{dist}/__init__.py": "",
    f"{top}/{dist}/enabled/_90_fixture_panel.py": f"PANEL = '{name} {version}'\n",
}
with tarfile.open(path, "w:gz") as t:
    for p, text in files.items():
        data = text.encode()
        info = tarfile.TarInfo(p)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
"#;
    let st = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(dir.join(&file))
        .args([name, &dist, version])
        .status()
        .expect("python3");
    assert!(st.success(), "building the fixture sdist {file}");
    file
}

/// A PEP 503 index in a directory: NAME at VERSION as a wheel and, with `sdist`, a
/// source release too.
fn index_of(root: &Path, name: &str, version: &str, sdist: bool) -> String {
    let index = root.join("index");
    let dir = index.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = vec![write_wheel(&dir, name, version)];
    if sdist {
        files.push(write_sdist(&dir, name, version));
    }
    let mut links = String::new();
    for f in &files {
        let _ = writeln!(links, "<a href=\"{f}\">{f}</a>");
    }
    std::fs::write(
        dir.join("index.html"),
        format!("<html><body>\n{links}</body></html>\n"),
    )
    .unwrap();
    format!("file://{}", index.display())
}

/// The lines the install wrote (not the fixture's `NAME:phase` lines).
fn plugin_lines(t: &Tree) -> Vec<String> {
    t.trace_lines()
        .into_iter()
        .filter(|l| !l.starts_with("uifix:"))
        .collect()
}

/// zaqar's install_zaqarui, with a fixture dashboard published on the index: its
/// GITREPO/GITDIR/GITBRANCH, git_clone_by_name, setup_dev_lib, then the copy of its
/// panels out of the clone's directory (into the fixture's own "Horizon").
const DASHBOARD_PLUGIN: &str = r#"
    GITREPO["fixture-ui"]=${FIXTUREUI_REPO:-${GIT_BASE}/openstack/fixture-ui.git}
    GITBRANCH["fixture-ui"]=${FIXTUREUI_BRANCH:-master}
    GITDIR["fixture-ui"]=$DEST/fixture-ui
    PANELS=$DEST/fixture-horizon/openstack_dashboard/local/enabled
    mkdir -p $PANELS
    git_clone_by_name "fixture-ui"
    setup_dev_lib "fixture-ui"
    cp -a ${GITDIR["fixture-ui"]}/fixture_ui/enabled/* $PANELS/
    echo "panels: $(ls $PANELS)" >> "$TRACE_FILE"
    # A later run (a re-stack) clones into the directory this one filled.
    git_clone_by_name "fixture-ui"
    setup_dev_lib "fixture-ui"
    echo "cloned again" >> "$TRACE_FILE"
"#;

#[test]
#[ignore = "reason: needs uv (the test cache's, installed from PyPI on its first use): ./run_tests.sh runs it"]
fn a_library_from_the_index_has_its_source_release_where_the_clone_would_be() {
    let t = Tree::new();
    give_uv(&t);
    let index = index_of(t.top.parent().unwrap(), "fixture-ui", "4.2.0", true);
    let repo = fixture_plugin(&t, "uifix", "", DASHBOARD_PLUGIN);
    t.local_conf(
        &format!(
            "disable_all_services\nGIT_BASE={UNREACHABLE_GIT_BASE}\nenable_plugin uifix {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack_env(&["stack"], &[("UV_INDEX_URL", &index)]);
    run.success();
    assert_eq!(
        plugin_lines(&t),
        ["panels: _90_fixture_panel.py", "cloned again"],
        "{}",
        output(&run)
    );
    let panel = t
        .dest
        .join("fixture-horizon/openstack_dashboard/local/enabled/_90_fixture_panel.py");
    assert_eq!(
        std::fs::read_to_string(panel).unwrap(),
        "PANEL = 'fixture-ui 4.2.0'\n",
        "the panel of the installed version"
    );
    assert!(
        installed(&t).contains(&"fixture_ui-4.2.0".to_owned()),
        "the release is installed: {:?}",
        installed(&t)
    );
    assert!(t.dest.join("fixture-ui/PKG-INFO").is_file());
    // Nothing of the unpacking is left next to it.
    let left: Vec<_> = std::fs::read_dir(&t.dest)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".release-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
#[ignore = "reason: needs uv (the test cache's, installed from PyPI on its first use): ./run_tests.sh runs it"]
fn a_library_the_index_has_only_as_a_wheel_is_installed_and_its_directory_stays_absent() {
    let t = Tree::new();
    give_uv(&t);
    let index = index_of(t.top.parent().unwrap(), "fixture-ui", "4.2.0", false);
    let repo = fixture_plugin(
        &t,
        "uifix",
        "",
        r#"
    GITREPO["fixture-ui"]=${GIT_BASE}/openstack/fixture-ui.git
    GITDIR["fixture-ui"]=$DEST/fixture-ui
    git_clone_by_name "fixture-ui"
    setup_dev_lib "fixture-ui"
    [[ -d $DEST/fixture-ui ]] || echo "no directory" >> "$TRACE_FILE"
"#,
    );
    t.local_conf(
        &format!(
            "disable_all_services\nGIT_BASE={UNREACHABLE_GIT_BASE}\nenable_plugin uifix {}",
            repo.display()
        ),
        "",
    );
    let run = t.devstack_env(&["stack"], &[("UV_INDEX_URL", &index)]);
    run.success();
    assert_eq!(plugin_lines(&t), ["no directory"], "{}", output(&run));
    assert!(installed(&t).contains(&"fixture_ui-4.2.0".to_owned()));
    let log = std::fs::read_to_string(t.dest.join("logs/stack.sh.log")).unwrap();
    assert!(
        log.contains("the source release of fixture-ui 4.2.0 is not on the package index"),
        "the log says why the directory is absent:\n{log}"
    );
}
