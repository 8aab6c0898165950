//! Debian packages: one batched install of every enabled service's prerequisites, and
//! the shell library's `install_package` family. `apt-get update` runs once per run;
//! what we install is recorded in the state (clean does not remove packages, as
//! DevStack does not, but `status` and the user can see them).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use fs_err as fs;

use crate::system::Machine;
use crate::system::process::ProcessError;

/// apt can be slow on a cold mirror; a hung apt is still reported.
const APT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Debian's hook that tells maintainer scripts not to start services (exit 101).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

/// The commands of DevStack's `files/debs/general` that plugins run from their
/// `devstack/settings` and hooks (`uuidgen`, `bc`, `curl`, `wget`, `lsof`, `killall`,
/// `ping`, `unzip`, `openssl`, `sudo`, `git`, `gawk`): installed before the first hook,
/// as a DevStack machine has them by then.
pub(crate) const GENERAL: &[&str] = &[
    "uuid-runtime",
    "bc",
    "curl",
    "gawk",
    "git",
    "iputils-ping",
    "lsof",
    "openssl",
    "psmisc",
    "sudo",
    "tar",
    "unzip",
    "wget",
];

/// The rest of `files/debs/general` a plugin's `pip install` of C extensions needs
/// (compilers, headers): installed with the services' packages, where DevStack's
/// install_prereqs does.
pub(crate) const BUILD: &[&str] = &[
    "gcc",
    "g++",
    "pkg-config",
    "python3-dev",
    // The stack's venvs (`python3 -m venv`): Debian's python3 has no ensurepip
    // without it (DevStack installs it with Python itself).
    "python3-venv",
    "libffi-dev",
    "libssl-dev",
    "libxml2-dev",
    "libxslt1-dev",
    "libyaml-dev",
    "zlib1g-dev",
];

#[derive(Debug, thiserror::Error)]
pub(crate) enum PackageError {
    #[error("apt-get failed")]
    Apt(#[source] ProcessError),
    #[error("could not read the package list {path}")]
    List {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which of these packages are installed (dpkg says "install ok installed"): one
/// dpkg-query for all of them (it names unknown ones on stderr and exits 1).
pub(crate) fn installed(host: &Machine<'_>, packages: &[String]) -> BTreeSet<String> {
    if packages.is_empty() {
        return BTreeSet::new();
    }
    let out = host
        .cmd("dpkg-query")
        .args(["-W", "-f=${Package}\t${Status}\n"])
        .args(packages)
        .capture()
        .allow_failure()
        .run();
    out.map(|o| parse_installed(&o.stdout)).unwrap_or_default()
}

/// Reads `PACKAGE<TAB>STATUS` lines into the set of installed packages.
fn parse_installed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.to_owned())
        .collect()
}

pub(crate) fn apt(host: &Machine<'_>) -> crate::system::process::Cmd {
    host.cmd("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("APT_LISTCHANGES_FRONTEND", "none")
        .timeout(APT_TIMEOUT)
}

/// `apt-get update`, once per run.
pub(crate) fn update(host: &mut Machine<'_>) -> Result<(), PackageError> {
    if *host.apt_updated || host.settings.flag("NO_UPDATE_REPOS", false) {
        return Ok(());
    }
    apt(host)
        .args(["-q", "update"])
        .run()
        .map_err(PackageError::Apt)?;
    *host.apt_updated = true;
    Ok(())
}

/// Installs the packages that are not installed yet and records them.
pub(crate) fn install(
    host: &mut Machine<'_>,
    packages: &[String],
) -> Result<Vec<String>, PackageError> {
    install_from(host, packages, None)
}

/// [`install`], from a target release (`-t bookworm-backports`) when given.
pub(crate) fn install_from(
    host: &mut Machine<'_>,
    packages: &[String],
    target: Option<&str>,
) -> Result<Vec<String>, PackageError> {
    let wanted: Vec<String> = packages
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let present = installed(host, &wanted);
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|p| !present.contains(p))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    update(host)?;
    // Without systemd, a maintainer script would start a server we do not supervise;
    // Debian's policy-rc.d hook tells it not to (containers usually ship one).
    let guard = !Path::new(POLICY_RC_D).exists()
        && fs::write(POLICY_RC_D, "#!/bin/sh\nexit 101\n").is_ok()
        && set_executable(POLICY_RC_D);
    let result = apt(host)
        .args([
            "-q",
            "-y",
            "-o",
            "Dpkg::Options::=--force-confold",
            // Another apt (unattended upgrades, a second tree) waits its turn.
            "-o",
            "DPkg::Lock::Timeout=600",
            "install",
            "--no-install-recommends",
        ])
        .args(target.map(|t| ["-t", t]).into_iter().flatten())
        .args(&missing)
        .run();
    if guard {
        let _ = fs::remove_file(POLICY_RC_D);
    }
    result.map_err(PackageError::Apt)?;
    for p in &missing {
        host.ledger.record_package(p);
    }
    Ok(missing)
}

fn set_executable(path: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o755)).is_ok()
}

/// Reads a DevStack package list (`files/debs/NAME`): one package per line, `#`
/// comments, lines marked `# NOPRIME` skipped.
pub(crate) fn read_list(path: &Path) -> Result<Vec<String>, PackageError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PackageError::List {
                path: path.display().to_string(),
                source,
            });
        }
    };
    Ok(text
        .lines()
        .filter(|l| !l.contains("NOPRIME"))
        .filter_map(|l| l.split('#').next())
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// The last lines of apt's output, for an error reply.
pub(crate) fn tail_text(e: &PackageError) -> String {
    match e {
        PackageError::Apt(p) => p.tail().join("\n"),
        PackageError::List { .. } => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_query_lines_give_the_installed_set() {
        let text = "sudo\tinstall ok installed\nfoo\tdeinstall ok config-files\nbar\tinstall ok installed\n";
        let set = parse_installed(text);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["bar", "sudo"]);
    }

    #[test]
    fn package_lists_follow_devstack_syntax() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        fs_err::write(&f, "# comment\nfoo\nbar # dist:bookworm\nbaz # NOPRIME\n\n").unwrap();
        assert_eq!(read_list(&f).unwrap(), ["foo", "bar"]);
        assert!(read_list(&dir.path().join("missing")).unwrap().is_empty());
    }
}
