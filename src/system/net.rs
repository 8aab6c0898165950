//! TCP for readiness probes: every connection has a timeout, and so does every read and
//! write on it (a probe without one once hung for ten minutes against a crashing server).

use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Connects to the first address `addr` resolves to, with `timeout` on the connect
/// and on every later read and write.
pub(crate) fn connect(addr: impl ToSocketAddrs, timeout: Duration) -> io::Result<TcpStream> {
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing")
    })?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_and_accepted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = connect(("127.0.0.1", port), Duration::from_secs(1)).unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_secs(1)));
        drop(listener);
        assert!(connect(("127.0.0.1", port), Duration::from_secs(1)).is_err());
    }
}
