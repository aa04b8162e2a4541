//! A TCP relay between the service and its PostgreSQL server, which a
//! test can cut and restore: the service sees its database go away (open
//! connections dropped, new ones refused) and come back, as in a failover
//! or a network partition, while the test's own server keeps running for
//! the other tests.

use std::net::{SocketAddr, ToSocketAddrs};

use tokio::{
    net::{TcpSocket, TcpStream},
    task::{JoinHandle, JoinSet},
};

/// Relays connections on [`Relay::address`] to `upstream` until cut.
pub struct Relay {
    pub address: SocketAddr,
    upstream: SocketAddr,
    serving: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(upstream: SocketAddr) -> Self {
        let mut relay = Self {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            serving: None,
        };
        relay.restore();
        relay
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&mut self) {
        if let Some(serving) = self.serving.take() {
            // The connection tasks live in the serving task's JoinSet and
            // end with it.
            serving.abort();
        }
    }

    /// Listens again on the same address.
    pub fn restore(&mut self) {
        let socket = TcpSocket::new_v4().expect("relay socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(self.address)
            .expect("relay binds its address again");
        let listener = socket.listen(64).expect("relay listens");
        self.address = listener.local_addr().expect("relay address");
        let upstream = self.upstream;
        self.serving = Some(tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

/// The host and port of a `postgres://` URL.
pub fn server_address(url: &str) -> SocketAddr {
    let authority = authority(url);
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    // A name such as `localhost` (as in the generated CI) is resolved here;
    // without a port, PostgreSQL's 5432 is meant.
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    // IPv4 first: `localhost` may resolve to ::1 while the server listens
    // on 127.0.0.1 only.
    let addresses: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    addresses
        .iter()
        .find(|address| address.is_ipv4())
        .or_else(|| addresses.first())
        .copied()
        .unwrap_or_else(|| panic!("the test PostgreSQL URL's host {host_port} does not resolve"))
}

/// `url` with its host and port replaced by `address`.
pub fn through(url: &str, address: SocketAddr) -> String {
    let authority = authority(url);
    let replaced = match authority.rsplit_once('@') {
        Some((user, _)) => format!("{user}@{address}"),
        None => address.to_string(),
    };
    url.replacen(authority, &replaced, 1)
}

fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?']).next().unwrap_or(rest)
}
