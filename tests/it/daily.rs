//! The developer's daily loop on a stacked cloud: edit a local checkout, `devstack
//! restart NAME`, see the change, follow the log. And the checks that keep a stack
//! from completing into a cloud that cannot work (a DEST QEMU cannot reach).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Tree, devstack_bin};

/// A free port on 127.0.0.1 (bound, then released for the fixture's server).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The body of `GET /` on 127.0.0.1:`port`, once the server answers (it is started
/// in the background: give it a few seconds to listen).
fn get(port: u16) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            if stream
                .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
                .is_ok()
            {
                let mut text = String::new();
                if stream.read_to_string(&mut text).is_ok() {
                    if let Some((_, body)) = text.split_once("\r\n\r\n") {
                        return Some(body.to_owned());
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The fixture's "local checkout": a small HTTP server whose answer and start-up
/// log line name its version, as a project a developer edits.
fn write_checkout(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir.join("hello")).unwrap();
    std::fs::write(
        dir.join("hello/server.py"),
        format!(
            "import http.server, sys\n\
             VERSION = \"{version}\"\n\
             class Hello(http.server.BaseHTTPRequestHandler):\n\
             \x20   def do_GET(self):\n\
             \x20       body = f\"hello {{VERSION}}\\n\".encode()\n\
             \x20       self.send_response(200)\n\
             \x20       self.send_header(\"Content-Length\", str(len(body)))\n\
             \x20       self.end_headers()\n\
             \x20       self.wfile.write(body)\n\
             port = int(sys.argv[1])\n\
             print(f\"hello-api {{VERSION}} listening on {{port}}\", flush=True)\n\
             http.server.HTTPServer((\"127.0.0.1\", port), Hello).serve_forever()\n"
        ),
    )
    .unwrap();
}

/// A stacked tree, unstacked when dropped: a failed assertion leaves no process.
struct Stacked(Tree);

impl std::ops::Deref for Stacked {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        &self.0
    }
}

impl Drop for Stacked {
    fn drop(&mut self) {
        let _ = self.0.devstack(&["unstack"]);
    }
}

/// A tree whose plugin runs `hello-api` from the checkout `HELLO_REPO` points at
/// (the way a service plugin runs its project's code), stacked.
fn stacked_hello() -> (Stacked, std::path::PathBuf, u16) {
    let tree = Tree::new();
    let checkout = tree.top.parent().unwrap().join("hello-checkout");
    write_checkout(&checkout, "v1");
    let port = free_port();
    tree.local_conf(
        &format!(
            "disable_all_services\nenable_service hello-api\nHELLO_REPO={}\nHELLO_PORT={port}",
            checkout.display()
        ),
        "",
    );
    tree.extras(
        "50-hello.sh",
        "if [[ $1 == stack && $2 == extra ]]; then\n\
         \x20   run_process hello-api \"/usr/bin/python3 $HELLO_REPO/hello/server.py $HELLO_PORT\"\n\
         fi\n",
    );
    tree.devstack(&["stack"]).success();
    (Stacked(tree), checkout, port)
}

fn pid_in_status(tree: &Tree, name: &str) -> Option<u32> {
    let status = tree.devstack(&["status"]);
    status
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
}

#[test]
fn an_edit_to_the_local_checkout_is_live_after_devstack_restart() {
    let (tree, checkout, port) = stacked_hello();
    assert_eq!(get(port).as_deref(), Some("hello v1\n"));
    let first = pid_in_status(&tree, "hello-api").expect("a pid in status");

    // The developer's edit, then the restart: the new code answers.
    write_checkout(&checkout, "v2");
    let restart = tree.devstack(&["restart", "hello-api"]);
    restart.success();
    assert!(
        restart.stdout.contains("hello-api: restarted (pid "),
        "{}",
        restart.stdout
    );
    assert_eq!(get(port).as_deref(), Some("hello v2\n"));
    let second = pid_in_status(&tree, "hello-api").expect("a pid in status");
    assert_ne!(first, second);
    let log = tree.devstack(&["logs", "hello-api"]);
    log.success();
    assert!(
        log.stdout.contains("hello-api v1 listening")
            && log.stdout.contains("hello-api v2 listening"),
        "{}",
        log.stdout
    );

    // stop: down, and status says so; start: up again as the stack started it.
    tree.devstack(&["stop", "hello-api"]).success();
    let status = tree.devstack(&["status"]);
    status.failure();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("hello-api") && l.contains("stopped")),
        "{}",
        status.stdout
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    tree.devstack(&["start", "hello-api"]).success();
    assert_eq!(get(port).as_deref(), Some("hello v2\n"));
    tree.devstack(&["status"]).success();

    // Unstack still stops it: the state knows the new pid.
    tree.devstack(&["unstack"]).success();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn devstack_logs_follow_shows_what_a_restarted_service_writes() {
    let (tree, checkout, port) = stacked_hello();
    // v1 answers, so it has written its start-up line.
    assert_eq!(get(port).as_deref(), Some("hello v1\n"));
    let mut follow = Command::new(devstack_bin())
        .arg("--top-dir")
        .arg(&tree.top)
        .args(["logs", "hello-api", "-f"])
        .env("DEST", &tree.dest)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    write_checkout(&checkout, "v3");
    tree.devstack(&["restart", "hello-api"]).success();
    assert_eq!(get(port).as_deref(), Some("hello v3\n"));
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let done = line.contains("hello-api v3 listening");
                seen.push(line);
                if done {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(
        seen.iter().any(|l| l.contains("hello-api v3 listening")),
        "{seen:?}"
    );
    // The log written before the follow began came first.
    assert!(seen[0].contains("hello-api v1 listening"), "{seen:?}");
    tree.devstack(&["unstack"]).success();
}

#[test]
fn restart_names_what_it_does_not_know_and_what_it_does() {
    let (tree, _checkout, _port) = stacked_hello();
    let run = tree.devstack(&["restart", "nope-*"]);
    run.failure();
    assert!(
        run.stderr.contains("no recorded process named nope-*") && run.stderr.contains("hello-api"),
        "{}",
        run.stderr
    );
    // DevStack's wildcard selects by pattern.
    let run = tree.devstack(&["restart", "hello-*"]);
    run.success();
    assert!(
        run.stdout.contains("hello-api: restarted"),
        "{}",
        run.stdout
    );
    tree.devstack(&["unstack"]).success();
    // After unstack nothing is recorded: nothing to restart.
    let run = tree.devstack(&["restart", "hello-api"]);
    run.failure();
    assert!(
        run.stderr.contains("nothing is stacked here"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_service_that_dies_after_restart_is_an_error_with_its_log() {
    let (tree, checkout, _port) = stacked_hello();
    std::fs::write(
        checkout.join("hello/server.py"),
        "raise SystemExit('broken by the edit')\n",
    )
    .unwrap();
    let run = tree.devstack(&["restart", "hello-api"]);
    run.failure();
    assert!(
        run.stderr
            .contains("hello-api did not stay up after it was restarted")
            && run.stderr.contains("broken by the edit"),
        "{}",
        run.stderr
    );
    tree.devstack(&["unstack"]).success();
}

/// A DEST under a directory QEMU's user cannot enter (0700, as mktemp -d makes
/// them): refused before anything is installed, with the directory and the fix.
#[test]
fn a_dest_qemu_cannot_reach_is_refused_before_anything_is_installed() {
    use std::os::unix::fs::PermissionsExt as _;
    let tree = Tree::new();
    let private = tree.top.parent().unwrap().to_path_buf();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    tree.local_conf("disable_all_services\nenable_service n-cpu key", "");
    let run = tree.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr.contains(&format!(
            "QEMU (user libvirt-qemu) cannot reach the guests' disks under {}",
            tree.dest.join("data/nova").display()
        )) && run
            .stderr
            .contains(&format!("chmod o+x {}", private.display())),
        "{}",
        run.stderr
    );
    // Refused at the settings: no step after them ran, nothing was recorded.
    assert!(!run.stderr.contains("[ok]"), "{}", run.stderr);
    assert!(
        !tree.path(".devstack/state.json").exists() || {
            let state = std::fs::read_to_string(tree.path(".devstack/state.json")).unwrap();
            !state.contains("\"packages\": [\"")
        }
    );
    // plan says the same; with the fake driver (no QEMU) the check does not apply.
    tree.devstack(&["plan"]).failure();
    tree.local_conf(
        "disable_all_services\nenable_service n-cpu key\nVIRT_DRIVER=fake",
        "",
    );
    let plan = tree.devstack(&["plan"]);
    plan.success();
    // Once the directory is enterable, libvirt's plan goes through.
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
    tree.local_conf("disable_all_services\nenable_service n-cpu key", "");
    tree.devstack(&["plan"]).success();
}

/// DevStack's default set members added here are in the default set, and each can
/// be disabled as DevStack's can.
#[test]
fn the_default_set_has_devstacks_members_and_each_can_be_disabled() {
    use std::os::unix::fs::PermissionsExt as _;
    let tree = Tree::new();
    // QEMU's user must be able to reach DEST for the default (libvirt) plan.
    let parent = tree.top.parent().unwrap();
    std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let enabled = |plan: &str| -> Vec<String> {
        plan.lines()
            .find_map(|l| l.strip_prefix("ENABLED_SERVICES="))
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect()
    };
    tree.local_conf("", "");
    let plan = tree.devstack(&["plan"]);
    plan.success();
    let names = enabled(&plan.stdout);
    for name in ["placement-client", "dstat", "q-ovn-agent"] {
        assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n == "q-ovn-metadata-agent"),
        "{names:?}"
    );
    tree.local_conf(
        "disable_service placement-client dstat q-ovn-agent\nenable_service q-ovn-metadata-agent",
        "",
    );
    let plan = tree.devstack(&["plan"]);
    plan.success();
    let names = enabled(&plan.stdout);
    for name in ["placement-client", "dstat", "q-ovn-agent"] {
        assert!(!names.iter().any(|n| n == name), "{name}: {names:?}");
    }
    assert!(
        names.iter().any(|n| n == "q-ovn-metadata-agent"),
        "{names:?}"
    );
}

#[test]
#[ignore = "reason: installs and runs Debian's dstat, takes the layer-1 lock: ./run_tests.sh runs it"]
fn dstat_records_resource_usage_and_status_lists_it() {
    let _lock = crate::layer1::lock();
    let tree = Tree::new();
    tree.local_conf("disable_all_services\nenable_service dstat", "");
    let tree = Stacked(tree);
    tree.devstack(&["stack"]).success();
    let csv = tree.dest.join("logs/dstat-csv.log");
    let log = tree.dest.join("logs/dstat.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    let rows = |p: &Path| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .count()
    };
    while Instant::now() < deadline && (rows(&csv) < 2 || rows(&log) < 2) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        rows(&csv) >= 2,
        "{}",
        std::fs::read_to_string(&csv).unwrap_or_default()
    );
    assert!(
        rows(&log) >= 2,
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let status = tree.devstack(&["status"]);
    status.success();
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("dstat ") && l.contains("running")),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("dstat: resource usage"),
        "{}",
        status.stdout
    );
    tree.devstack(&["unstack"]).success();
    let gone = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(&*csv.to_string_lossy()))
        .count();
    assert_eq!(gone, 0, "a dstat of this tree survived unstack");
    tree.devstack(&["clean"]).success();
    assert!(!csv.exists());
}
