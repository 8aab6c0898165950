//! The test image's own scripts, run on the host with the same busybox the guest
//! has (busybox-static: run_tests.sh installs it): what tempest's scenario tests ask
//! of a cirros guest over ssh must work in ours.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use crate::project_root;

/// A directory whose `nc` is busybox's, as in the guest.
fn busybox_bin() -> tempfile::TempDir {
    let busybox = ["/usr/bin/busybox", "/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox (busybox-static) is installed: run_tests.sh installs it");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(busybox, dir.path().join("nc")).unwrap();
    dir
}

/// Serves one request: returns what the client sent, answers `status` with `body`.
fn serve_once(status: &str, body: &str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = format!("HTTP/1.0 {status}\r\nContent-Type: text/plain\r\n\r\n{body}");
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then as many body bytes as Content-Length says.
        loop {
            let n = stream.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if got.len() >= end + 4 + length || n == 0 {
                    break;
                }
            } else if n == 0 {
                break;
            }
        }
        stream.write_all(answer.as_bytes()).unwrap();
        String::from_utf8_lossy(&got).to_string()
    });
    (port, handle)
}

/// Runs the guest's `tools/test-image/SCRIPT ARGS` with `bin` (busybox applets) first
/// on PATH.
fn guest_script(bin: &tempfile::TempDir, script: &str, args: &[&str]) -> std::process::Output {
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    Command::new("sh")
        .arg(project_root().join("tools/test-image").join(script))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn curl(bin: &tempfile::TempDir, args: &[&str]) -> std::process::Output {
    guest_script(bin, "curl", args)
}

#[test]
fn the_guests_curl_gets_a_url_and_posts_a_form_as_tempest_asks() {
    let bin = busybox_bin();
    // GET: the metadata checks of test_server_basic_ops.
    let (port, server) = serve_once("200 OK", "172.24.4.10");
    let out = curl(
        &bin,
        &[&format!(
            "http://127.0.0.1:{port}/latest/meta-data/public-ipv4"
        )],
    );
    let request = server.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "172.24.4.10");
    assert!(
        request.starts_with("GET /latest/meta-data/public-ipv4 HTTP/1.0\r\n"),
        "{request}"
    );

    // POST of the password, as the test sends it: `curl -X POST -d DATA URL`.
    let data = "testtest".repeat(12);
    let (port, server) = serve_once("200 OK", "");
    let url = format!("http://127.0.0.1:{port}/openstack/2013-10-17/password");
    let out = curl(&bin, &["-X", "POST", "-d", &data, &url]);
    let request = server.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        request.starts_with("POST /openstack/2013-10-17/password HTTP/1.0\r\n"),
        "{request}"
    );
    assert!(
        request.contains(&format!("\r\nContent-Length: {}\r\n", data.len())),
        "{request}"
    );
    assert!(request.contains("\r\nContent-Type: application/x-www-form-urlencoded\r\n"));
    assert!(request.ends_with(&format!("\r\n\r\n{data}")), "{request}");

    // -f: an HTTP error is exit 22, as curl's.
    let (port, server) = serve_once("404 Not Found", "no");
    let out = curl(&bin, &["-sf", &format!("http://127.0.0.1:{port}/nothing")]);
    server.join().unwrap();
    assert_eq!(out.status.code(), Some(22), "{out:?}");
}

#[test]
fn the_guests_blkid_finds_by_label_only_and_says_so() {
    let bin = busybox_bin();
    let busybox = std::fs::read_link(bin.path().join("nc")).unwrap();
    std::os::unix::fs::symlink(busybox, bin.path().join("findfs")).unwrap();
    let blkid = |args: &[&str]| guest_script(&bin, "blkid", args);
    // tempest's call, for a label no device has: blkid's "not found".
    let out = blkid(&["-L", "no-such-label-devstack-rs", "-o", "device"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty());
    // Anything else is refused with a reason, not a wrong answer.
    let out = blkid(&["/dev/sr0"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("blkid -L LABEL"));
}
