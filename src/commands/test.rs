//! `devstack test`: runs tempest in the workspace the last stack configured, streams
//! its output, and ends with the counts and the names of the failures.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::services::tempest;
use crate::state::Ledger;
use crate::system::netns;
use crate::system::process::{Cmd, LineSink, Stream};
use crate::ui::report::Report;

/// What to run.
#[derive(Debug, Clone, Default)]
pub(crate) struct Selection {
    /// tempest's API tests instead of the smoke set.
    pub(crate) api: bool,
    pub(crate) concurrency: Option<u32>,
    /// Regexes (joined with `|`); none: the smoke set (or the API tests).
    pub(crate) regexes: Vec<String>,
}

/// The `tempest run` arguments for a selection. `--smoke` and `--regex` exclude each
/// other in tempest, so a smoke run with a regex selects `\bsmoke\b` in the regex.
pub(crate) fn run_args(sel: &Selection) -> Vec<String> {
    let mut args = vec!["run".to_owned()];
    let any = sel.regexes.join("|");
    // `--api identity`: the API tests whose names match (not the API tests plus
    // everything that matches).
    let pattern = match (sel.api, sel.regexes.is_empty()) {
        (false, true) => None,
        (false, false) => Some(any),
        (true, true) => Some(r"^tempest\.api\.".to_owned()),
        (true, false) => Some(format!(r"^tempest\.api\..*(?:{any})")),
    };
    if let Some(pattern) = pattern {
        args.push("--regex".into());
        args.push(pattern);
    } else {
        args.push("--smoke".into());
    }
    if let Some(n) = sel.concurrency {
        args.push("--concurrency".into());
        args.push(n.to_string());
    }
    args
}

/// The counts stestr prints at the end, and the names of the failed tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) passed: u64,
    pub(crate) failed: u64,
    pub(crate) skipped: u64,
    pub(crate) failures: Vec<String>,
}

/// Reads stestr's totals (` - Passed: N`) and its `... FAILED` lines.
pub(crate) fn parse(lines: &[String]) -> Outcome {
    let mut out = Outcome::default();
    let count = |line: &str, key: &str| -> Option<u64> {
        line.trim()
            .strip_prefix("- ")
            .and_then(|l| l.strip_prefix(key))
            .and_then(|l| l.trim().parse().ok())
    };
    for line in lines {
        if let Some(n) = count(line, "Passed:") {
            out.passed = n;
        } else if let Some(n) = count(line, "Failed:") {
            out.failed = n;
        } else if let Some(n) = count(line, "Skipped:") {
            out.skipped = n;
        } else if line.trim_end().ends_with("... FAILED") {
            // `{0} NAME[...] [1.2s] ... FAILED`, or a class that failed to set up:
            // `{0} setUpClass (NAME) [0.0s] ... FAILED`.
            if let Some(name) = line
                .split_whitespace()
                .map(|w| w.trim_start_matches('(').trim_end_matches(')'))
                .find(|w| w.starts_with("tempest.") || w.contains(".tests."))
            {
                let name = name.split('[').next().unwrap_or(name).to_owned();
                if !out.failures.contains(&name) {
                    out.failures.push(name);
                }
            }
        }
    }
    out
}

/// tempest validates guests through floating IPs that only the public namespace
/// reaches, so it runs there: the API addresses it needs are forwarded into the
/// namespace (loopback is there already; another host address is added to the
/// namespace's own `lo`, never to the host). The namespace's name.
fn enter_public_namespace(fact: &str) -> anyhow::Result<String> {
    let (ns, addrs) = fact.split_once('\t').unwrap_or((fact, ""));
    let addrs: Vec<SocketAddr> = addrs
        .split_whitespace()
        .filter_map(|a| a.parse().ok())
        .collect();
    for addr in addrs.iter().filter(|a| !a.ip().is_loopback()) {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Cmd::new("ip")
            .args(["-n", ns, "addr", "replace"])
            .arg(format!("{}/{prefix}", addr.ip()))
            .args(["dev", "lo"])
            .timeout(Duration::from_secs(10))
            .label("ip")
            .run()?;
    }
    netns::forward_into(ns, &addrs)?;
    println!(
        "tempest runs in network namespace {ns} (the floating IPs' side), its API \
         connections forwarded to the host"
    );
    Ok(ns.to_owned())
}

/// Prints each line as it comes and keeps them for the summary.
struct Tee(Mutex<Vec<String>>);

impl LineSink for Tee {
    fn line(&self, _source: &str, _stream: Stream, line: &str) {
        println!("{line}");
        self.0.lock().expect("tee lock").push(line.to_owned());
    }
}

pub(crate) fn test(top_dir: &Path, sel: &Selection) -> anyhow::Result<ExitCode> {
    let ledger = Ledger::load(top_dir)?;
    let Some((workspace, config)) = ledger
        .fact(tempest::WORKSPACE_FACT)
        .and_then(|f| f.split_once('\t'))
        .map(|(w, c)| (PathBuf::from(w), PathBuf::from(c)))
    else {
        return Err(Report {
            headline: "no tempest workspace: the last stack did not configure tempest".into(),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some("enable_service tempest in local.conf, then ./stack.sh".into()),
        }
        .into());
    };
    let bin = workspace.join(".venv/bin/tempest");
    let tee = Arc::new(Tee(Mutex::new(Vec::new())));
    let config_dir = config.parent().unwrap_or(&workspace).to_path_buf();
    let mut command = vec![bin.into_os_string()];
    if let Some(fact) = ledger.fact(tempest::NETNS_FACT) {
        let ns = enter_public_namespace(fact)?;
        let inner = std::mem::take(&mut command);
        command = ["ip", "netns", "exec", ns.as_str()]
            .iter()
            .map(Into::into)
            .chain(inner)
            .collect();
    }
    let result = Cmd::new(&command[0])
        .args(&command[1..])
        .args(run_args(sel))
        .current_dir(&workspace)
        .env("TEMPEST_CONFIG_DIR", &config_dir)
        .env("TEMPEST_CONFIG", config.file_name().unwrap_or_default())
        .inherit_env()
        .timeout(Duration::from_secs(4 * 3600))
        .allow_failure()
        .label("tempest")
        .sink(tee.clone())
        .run();
    let lines = std::mem::take(&mut *tee.0.lock().expect("tee lock"));
    let outcome = parse(&lines);
    result?;
    // Not "N passed, N failed": that line is CI's own summary of the project's tests.
    println!(
        "\ntempest: passed {}, failed {}, skipped {}",
        outcome.passed, outcome.failed, outcome.skipped
    );
    for name in &outcome.failures {
        println!("  FAILED {name}");
    }
    println!("workspace: {} (logs in its logs/)", workspace.display());
    let ran = outcome.passed + outcome.failed > 0;
    Ok(if ran && outcome.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_becomes_tempest_arguments() {
        assert_eq!(run_args(&Selection::default()), ["run", "--smoke"]);
        let api = Selection {
            api: true,
            concurrency: Some(2),
            regexes: vec!["identity".into()],
        };
        assert_eq!(
            run_args(&api),
            [
                "run",
                "--regex",
                r"^tempest\.api\..*(?:identity)",
                "--concurrency",
                "2"
            ]
        );
    }

    #[test]
    fn totals_and_failures_are_read_from_stestr() {
        let lines: Vec<String> = [
            "{0} tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token [0.5s] ... ok",
            "{1} tempest.api.compute.servers.test_x.X.test_y[id-1,smoke] [3.1s] ... FAILED",
            "{0} setUpClass (tempest.api.compute.servers.test_z.Z) [0.000000s] ... FAILED",
            "======",
            "Totals",
            "======",
            "Ran: 12 tests in 30.0000 sec.",
            " - Passed: 9",
            " - Skipped: 2",
            " - Expected Fail: 0",
            " - Unexpected Success: 0",
            " - Failed: 1",
        ]
        .map(str::to_owned)
        .to_vec();
        assert_eq!(
            parse(&lines),
            Outcome {
                passed: 9,
                failed: 1,
                skipped: 2,
                failures: vec![
                    "tempest.api.compute.servers.test_x.X.test_y".into(),
                    "tempest.api.compute.servers.test_z.Z".into()
                ],
            }
        );
    }
}
