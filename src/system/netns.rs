//! Reaching the host's APIs from inside a network namespace the stack made.
//!
//! The public network's side lives in a namespace (`devstack-public`), so nothing in the
//! host's own namespace routes to guest ranges. A program that must talk to both, the
//! APIs on the host and the guests' floating IPs (tempest with validation), runs inside
//! the namespace, and this forwarder carries its API connections out: for each API
//! address it listens on the same address inside the namespace and copies every
//! connection to the host's. No route or address is added to the host's namespace.
//!
//! A socket belongs to the namespace it was created in, whatever thread uses it later:
//! one short-lived thread enters the namespace, binds the listeners and ends; the
//! accept and connect threads run in the host's namespace, so the outgoing connections
//! are the host's.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::thread;

use nix::sched::{CloneFlags, setns};

/// What can go wrong setting up a forwarder.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetnsError {
    #[error("network namespace {name} not found ({path})")]
    NoNamespace {
        name: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot enter network namespace {name}")]
    Enter {
        name: String,
        #[source]
        source: nix::Error,
    },
    #[error("cannot listen on {addr} inside network namespace {name}")]
    Listen {
        name: String,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// Where `ip netns add NAME` keeps a namespace.
pub(crate) fn path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// Listens on each of `addrs` inside namespace `name` and forwards every connection to
/// the same address in the host's namespace, for as long as this process runs.
/// Addresses other than loopback must exist inside the namespace (`ip addr add`).
pub(crate) fn forward_into(name: &str, addrs: &[SocketAddr]) -> Result<(), NetnsError> {
    let ns_path = path(name);
    let ns = fs_err::File::open(&ns_path).map_err(|source| NetnsError::NoNamespace {
        name: name.to_owned(),
        path: ns_path.clone(),
        source,
    })?;
    let owned_name = name.to_owned();
    let wanted = addrs.to_vec();
    // The thread that enters the namespace ends with it: no other thread, and no
    // later work of this one, runs there.
    let listeners = thread::spawn(move || -> Result<Vec<TcpListener>, NetnsError> {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
            name: owned_name.clone(),
            source,
        })?;
        wanted
            .iter()
            .map(|addr| {
                TcpListener::bind(addr).map_err(|source| NetnsError::Listen {
                    name: owned_name.clone(),
                    addr: *addr,
                    source,
                })
            })
            .collect()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
    for (listener, target) in listeners.into_iter().zip(addrs.iter().copied()) {
        thread::spawn(move || accept_loop(&listener, target));
    }
    Ok(())
}

fn accept_loop(listener: &TcpListener, target: SocketAddr) {
    for inside in listener.incoming().flatten() {
        thread::spawn(move || {
            if let Ok(outside) = TcpStream::connect(target) {
                splice(inside, outside);
            }
        });
    }
}

/// Copies both ways until each side has said all it has to say.
fn splice(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let upstream = thread::spawn(move || copy_then_close(a, b2));
    copy_then_close(b, a2);
    let _ = upstream.join();
}

fn copy_then_close(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// `host:port` of a URL (`http://127.0.0.1/identity` is `127.0.0.1:80`); `None` for
/// names that are not addresses (a forwarder listens on addresses).
pub(crate) fn url_address(url: &str) -> Option<SocketAddr> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let default_port = if scheme == "https" { 443 } else { 80 };
    if let Ok(addr) = authority.parse::<SocketAddr>() {
        return Some(addr);
    }
    let host = authority.trim_start_matches('[').trim_end_matches(']');
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_give_their_addresses() {
        let a = |s: &str| url_address(s).map(|x| x.to_string());
        assert_eq!(
            a("http://127.0.0.1/identity").as_deref(),
            Some("127.0.0.1:80")
        );
        assert_eq!(
            a("https://10.1.2.3/compute/v2.1").as_deref(),
            Some("10.1.2.3:443")
        );
        assert_eq!(
            a("http://10.1.2.3:8776/v3/%(project_id)s").as_deref(),
            Some("10.1.2.3:8776")
        );
        assert_eq!(a("http://[::1]/image").as_deref(), Some("[::1]:80"));
        assert_eq!(a("http://[::1]:9292").as_deref(), Some("[::1]:9292"));
        assert_eq!(a("http://controller/identity"), None);
        assert_eq!(a("not a url"), None);
    }

    /// A real namespace (root): a client inside it reaches a server of the host's
    /// namespace through the forwarder, at the same loopback address.
    #[test]
    #[ignore = "reason: creates a network namespace (root): ./run_tests.sh runs it"]
    fn a_client_inside_the_namespace_reaches_the_hosts_loopback() {
        use std::io::{Read, Write};
        let ns = format!("ds-test-fwd-{}", std::process::id());
        let ip = |args: &[&str]| {
            crate::system::process::Cmd::new("ip")
                .args(args)
                .run()
                .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
        };
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        thread::spawn(move || {
            for mut c in server.incoming().flatten() {
                let mut buf = [0u8; 5];
                if c.read_exact(&mut buf).is_ok() {
                    let _ = c.write_all(b"host:");
                    let _ = c.write_all(&buf);
                }
            }
        });
        forward_into(&ns, &[addr]).unwrap();
        let out = crate::system::process::Cmd::new("ip")
            .args(["netns", "exec", &ns, "bash", "-c"])
            .arg(format!(
                "exec 3<>/dev/tcp/127.0.0.1/{}; printf hello >&3; timeout 5 cat <&3",
                addr.port()
            ))
            .capture()
            .allow_failure()
            .run();
        ip(&["netns", "del", &ns]);
        assert_eq!(out.unwrap().stdout.trim(), "host:hello");
        // Without the forwarder the same address inside the namespace is closed.
        assert!(forward_into("ds-test-no-such-namespace", &[addr]).is_err());
    }
}
