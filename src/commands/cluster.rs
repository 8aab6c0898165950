//! `devstack cluster stack|unstack|clean|status -i INVENTORY`: a multi-node cloud,
//! driven by the playbooks in `ansible/` (DevStack's subnode model: the controller
//! first, the computes in parallel, `discover_hosts`). A thin command: it makes sure
//! ansible-core is installed in a venv of its own (uv when present, else python3's
//! venv and pip), then runs `ansible-playbook` with the tree and this binary to ship;
//! running the playbooks directly with `ansible-playbook` works the same.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use crate::system::process::{Cmd, LineSink, Stream};
use crate::ui::report::Report;

/// What ansible-core the venv gets: the releases this project's playbooks are
/// checked with (`ansible-playbook --syntax-check` in tests/it/multinode.rs).
pub(crate) const ANSIBLE_CORE: &str = "ansible-core>=2.15,<2.20";

pub(crate) use crate::cli::ClusterAction as Action;

/// The playbook of an action, under `ansible/`.
pub(crate) fn playbook(action: Action) -> &'static str {
    match action {
        Action::Stack => "site.yml",
        Action::Unstack => "unstack.yml",
        Action::Clean => "clean.yml",
        Action::Status => "status.yml",
    }
}

/// Where ansible-core's venv lives: `DEVSTACK_ANSIBLE_VENV`, else the user's cache
/// (outside the tree, which the playbook ships to the nodes).
pub(crate) fn venv_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(crate::env_vars::DEVSTACK_ANSIBLE_VENV) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os(crate::env_vars::XDG_CACHE_HOME).map_or_else(
        || {
            PathBuf::from(std::env::var_os(crate::env_vars::HOME).unwrap_or_else(|| "/root".into()))
                .join(".cache")
        },
        PathBuf::from,
    );
    cache.join("devstack-rs/ansible")
}

/// Prints a child's lines as they come.
struct Print;

impl LineSink for Print {
    fn line(&self, _source: &str, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => println!("{line}"),
            Stream::Stderr => eprintln!("{line}"),
        }
    }
}

/// Makes the venv with ansible-core when it has no `ansible-playbook` yet.
pub(crate) fn ensure_ansible(venv: &Path) -> anyhow::Result<PathBuf> {
    let playbook = venv.join("bin/ansible-playbook");
    if playbook.is_file() {
        return Ok(playbook);
    }
    eprintln!(
        "devstack cluster: installing {ANSIBLE_CORE} into {}",
        venv.display()
    );
    let sink: Arc<dyn LineSink> = Arc::new(Print);
    let steps: Vec<Cmd> = if crate::system::process::which("uv").is_some() {
        vec![
            Cmd::new("uv").arg("venv").arg(venv).inherit_env(),
            Cmd::new("uv")
                .args(["pip", "install", "--python"])
                .arg(venv.join("bin/python"))
                .arg(ANSIBLE_CORE)
                .inherit_env(),
        ]
    } else {
        vec![
            Cmd::new("python3").args(["-m", "venv"]).arg(venv),
            Cmd::new(venv.join("bin/pip"))
                .args(["install", "--quiet", ANSIBLE_CORE])
                .inherit_env(),
        ]
    };
    for cmd in steps {
        cmd.sink(Arc::clone(&sink))
            .label("ansible venv")
            .run()
            .with_context(|| format!("installing ansible-core into {}", venv.display()))?;
    }
    Ok(playbook)
}

/// The `ansible-playbook` command line for an action on an inventory.
pub(crate) fn playbook_cmd(
    ansible_playbook: &Path,
    top_dir: &Path,
    action: Action,
    inventory: &Path,
    devstack_bin: &Path,
    extra: &[String],
) -> Cmd {
    let dir = top_dir.join("ansible");
    Cmd::new(ansible_playbook)
        .inherit_env()
        .env("ANSIBLE_CONFIG", dir.join("ansible.cfg"))
        .arg("-i")
        .arg(inventory)
        .arg(dir.join(playbook(action)))
        .arg("-e")
        .arg(format!("devstack_tree_src={}", top_dir.display()))
        .arg("-e")
        .arg(format!("devstack_local_bin={}", devstack_bin.display()))
        .args(extra)
        .current_dir(top_dir)
}

/// `devstack cluster ACTION -i INVENTORY [-- ANSIBLE-PLAYBOOK ARGS]`.
pub(crate) fn cluster(
    top_dir: &Path,
    action: Action,
    inventory: &Path,
    extra: &[String],
) -> anyhow::Result<ExitCode> {
    if !inventory.exists() {
        return Err(Report {
            headline: format!("no inventory at {}", inventory.display()),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some(
                "an Ansible inventory with groups controller (one host) and compute: \
                 ansible/inventory.example.ini"
                    .into(),
            ),
        }
        .into());
    }
    let inventory = fs_err::canonicalize(inventory)
        .with_context(|| format!("the inventory {}", inventory.display()))?;
    crate::system::interrupt::install();
    let ansible_playbook = ensure_ansible(&venv_dir())?;
    let devstack_bin = std::env::current_exe().context("cannot find this binary")?;
    let out = playbook_cmd(
        &ansible_playbook,
        top_dir,
        action,
        &inventory,
        &devstack_bin,
        extra,
    )
    .sink(Arc::new(Print))
    .label("ansible-playbook")
    .allow_failure()
    .run()?;
    Ok(if out.status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_runs_its_playbook_with_the_tree_and_this_binary() {
        let cmd = playbook_cmd(
            Path::new("/venv/bin/ansible-playbook"),
            Path::new("/src/devstack-rs"),
            Action::Unstack,
            Path::new("/lab/hosts.ini"),
            Path::new("/src/devstack-rs/target/release/devstack"),
            &["--limit".into(), "cpu1".into()],
        );
        assert_eq!(
            cmd.display(),
            "/venv/bin/ansible-playbook -i /lab/hosts.ini /src/devstack-rs/ansible/unstack.yml \
             -e devstack_tree_src=/src/devstack-rs \
             -e devstack_local_bin=/src/devstack-rs/target/release/devstack --limit cpu1"
        );
        for action in [
            Action::Stack,
            Action::Unstack,
            Action::Clean,
            Action::Status,
        ] {
            let file = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("ansible")
                .join(playbook(action));
            assert!(file.is_file(), "{}", file.display());
        }
    }
}
