//! Outbound HTTP: the one client a service calls other services with.
//!
//! - TLS by rustls with the aws-lc-rs provider (post-quantum key exchange
//!   included), certificates checked against the system's roots (the
//!   image's `ca-certificates`); `https://` and `http://` both work. The
//!   `ring` provider builds faster (measured in the template's
//!   BENCHMARKS.md), but rustls deprecated it (0.23.48) for lacking
//!   post-quantum key exchange.
//! - The Nebula 10 s rule (`timeouts.http_client_ms`) bounds the connect and
//!   the whole call, body included.
//! - Every request carries the W3C trace context of the span it was built
//!   in (with the `otel` feature and the export on).
//! - [`Destinations`]: where a URL comes from a client of the service (a
//!   webhook target), a host allowlist, and loopback, private and
//!   link-local addresses refused unless allowed, both for literal
//!   addresses and for what a name resolves to at connect time (so a name
//!   pointing at `169.254.169.254` is refused too).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

// reqwest's types are part of this API: a major reqwest upgrade is a
// breaking change of the runtime's.
pub use reqwest::{Error, Method, RequestBuilder, Response, StatusCode, Url};
use reqwest::{
    dns::{Addrs, Name, Resolve, Resolving},
    header::HeaderMap,
};

use crate::trace_context;

/// The client every outbound call of a service goes through. Cheap to
/// clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

/// Why the client could not be built (the system's certificate store could
/// not be read, say).
#[derive(Debug, thiserror::Error)]
#[error("the outbound HTTP client cannot be built: {0}")]
pub struct BuildError(#[from] reqwest::Error);

impl HttpClient {
    /// A client whose connects and calls end after `timeout` (pass
    /// `settings.timeouts.http_client()`), to any destination, following
    /// up to 10 redirects.
    ///
    /// # Errors
    /// [`BuildError`].
    pub fn new(timeout: Duration) -> Result<Self, BuildError> {
        Self::build(timeout, None)
    }

    /// A client as [`HttpClient::new`] whose connections go only where
    /// `destinations` allows: a name that resolves only to refused
    /// addresses fails the call, redirects are not followed (a 3xx is the
    /// answer), and proxies set in the environment are not used. Check each URL first with [`Destinations::check`]; this
    /// catches what a name resolves to.
    ///
    /// # Errors
    /// [`BuildError`].
    pub fn guarded(timeout: Duration, destinations: &Destinations) -> Result<Self, BuildError> {
        Self::build(timeout, Some(destinations.private_networks))
    }

    fn build(timeout: Duration, guard: Option<bool>) -> Result<Self, BuildError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout);
        if let Some(private_networks) = guard {
            builder = builder
                .dns_resolver(Arc::new(GuardedResolver { private_networks }))
                // A redirect could lead to a host the allowlist refuses.
                .redirect(reqwest::redirect::Policy::none())
                // Through a proxy (HTTPS_PROXY and the like), the proxy would
                // resolve the target, past the resolver's check.
                .no_proxy();
        }
        Ok(Self {
            client: builder.build()?,
        })
    }

    /// A request to `url`, carrying the current span's trace context.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let mut headers = HeaderMap::new();
        trace_context::inject(&mut headers);
        self.client.request(method, url).headers(headers)
    }
}

/// Where calls to URLs that clients of the service name may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    /// Host names allowed, lowercase; `*.example.com` allows every name
    /// under `example.com` (not `example.com` itself).
    hosts: Vec<String>,
    /// Whether loopback, private and link-local addresses are allowed.
    private_networks: bool,
}

impl Destinations {
    /// Allows `hosts` (names or literal addresses; `*.domain` for every
    /// name under a domain) and, with `private_networks`, loopback, private
    /// and link-local addresses. No hosts allow nothing.
    #[must_use]
    pub fn new(hosts: impl IntoIterator<Item = String>, private_networks: bool) -> Self {
        Self {
            hosts: hosts
                .into_iter()
                .map(|host| normalize_host(&host))
                .collect(),
            private_networks,
        }
    }

    /// Checks `url` before a call: an `http` or `https` URL whose host is
    /// allowed, and, when it is a literal address, not a refused one.
    ///
    /// # Errors
    /// A message naming what is refused, for the client that sent the URL.
    pub fn check(&self, url: &str) -> Result<Url, String> {
        let parsed = parse_http_url(url)?;
        let host = normalize_host(parsed.host_str().ok_or_else(|| "has no host".to_owned())?);
        // An IPv6 host comes bracketed.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(address) = host.parse::<IpAddr>() {
            self.check_address(address)?;
        }
        if !self.hosts.iter().any(|allowed| host_matches(allowed, host)) {
            return Err(format!("host {host} is not among the allowed hosts"));
        }
        Ok(parsed)
    }

    fn check_address(&self, address: IpAddr) -> Result<(), String> {
        if !self.private_networks && is_internal(address) {
            return Err(format!(
                "address {address} is internal (loopback, private, link-local or reserved), which is not allowed"
            ));
        }
        Ok(())
    }
}

/// Parses `url` and checks that it is `http://` or `https://`, the two
/// schemes the client speaks.
///
/// # Errors
/// A message saying what is wrong, to follow the setting's or field's name.
pub fn parse_http_url(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|error| format!("is not a valid URL ({error})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL, got {}://",
            parsed.scheme()
        ));
    }
    Ok(parsed)
}

/// Lowercase, without the root's trailing dot (`Example.COM.` is
/// `example.com`).
fn normalize_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn host_matches(allowed: &str, host: &str) -> bool {
    match allowed.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|label| label.len() > 1 && label.ends_with('.')),
        None => allowed == host,
    }
}

/// Addresses a caller outside the network must not reach through the
/// service: loopback, private (RFC 1918, unique local, site-local),
/// link-local (cloud metadata endpoints among them), shared (RFC 6598),
/// benchmarking, protocol-assignment, reserved, multicast, unspecified and
/// broadcast ones, and IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4), judged by that address.
///
/// Written here because std's `IpAddr::is_global` is still unstable and no
/// well-kept crate covers the embedded-IPv4 forms an SSRF guard needs.
#[must_use]
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_internal_v4(v4);
            }
            let [first, second, third, ..] = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local (fc00::/7), link-local (fe80::/10) and the
                // deprecated site-local (fec0::/10).
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || first & 0xffc0 == 0xfec0
                // NAT64 for local use (64:ff9b:1::/48).
                || (first == 0x64 && second == 0xff9b && third == 1)
        }
    }
}

/// The IPv4 address inside an IPv6 one that reaches it: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), well-known NAT64
/// (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let (high, low) = match v6.segments() {
        [0, 0, 0, 0, 0, 0, high, low] if high != 0 || low > 1 => (high, low),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] | [0x2002, high, low, ..] => (high, low),
        _ => return None,
    };
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Some(Ipv4Addr::new(a, b, c, d))
}

fn is_internal_v4(v4: Ipv4Addr) -> bool {
    let [first, second, third, _] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        // 0/8 "this network", 100.64/10 shared, 198.18/15 benchmarking,
        // 192.0.0/24 protocol assignments, 240/4 reserved.
        || first == 0
        || (first == 100 && second & 0xc0 == 64)
        || (first == 198 && second & 0xfe == 18)
        || (first == 192 && second == 0 && third == 0)
        || first >= 240
}

/// Resolves names with the system resolver and drops refused addresses,
/// so a connection never reaches one, whatever name led there.
#[derive(Debug)]
struct GuardedResolver {
    private_networks: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let private_networks = self.private_networks;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| private_networks || !is_internal(address.ip()))
                .collect();
            if resolved.is_empty() {
                return Err(format!(
                    "{host} resolves only to internal addresses (loopback, private, link-local or reserved), which are not allowed"
                )
                .into());
            }
            Ok(Box::new(resolved.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Destinations {
        Destinations::new(
            ["hooks.example.com".to_owned(), "*.partner.test".to_owned()],
            false,
        )
    }

    #[test]
    fn only_allowed_hosts_pass() {
        let destinations = example();
        assert!(destinations.check("https://hooks.example.com/in").is_ok());
        assert!(destinations.check("https://HOOKS.example.com/in").is_ok());
        assert!(destinations.check("http://a.partner.test/x").is_ok());
        assert!(destinations.check("http://a.b.partner.test/x").is_ok());
        assert_eq!(
            destinations.check("https://partner.test/x"),
            Err("host partner.test is not among the allowed hosts".to_owned())
        );
        assert_eq!(
            destinations.check("https://evil-partner.test/x"),
            Err("host evil-partner.test is not among the allowed hosts".to_owned())
        );
        assert_eq!(
            destinations.check("https://example.com/"),
            Err("host example.com is not among the allowed hosts".to_owned())
        );
        assert_eq!(
            destinations.check("ftp://hooks.example.com/"),
            Err("must be an http:// or https:// URL, got ftp://".to_owned())
        );
        assert!(
            destinations
                .check("not a url")
                .unwrap_err()
                .starts_with("is not a valid URL")
        );
        assert_eq!(
            Destinations::default().check("https://hooks.example.com/"),
            Err("host hooks.example.com is not among the allowed hosts".to_owned())
        );
    }

    #[test]
    fn internal_literal_addresses_are_refused_unless_allowed() {
        let any_host = |url: &str| {
            let host = Url::parse(url).unwrap().host_str().unwrap().to_owned();
            Destinations::new(
                [host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned()],
                false,
            )
        };
        for url in [
            "http://127.0.0.1:8080/",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.169.254./latest/meta-data",
            // The same addresses written otherwise: the URL parser makes
            // them dotted quads before the check.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[::ffff:192.168.1.1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::1]/",
            "http://[2002:a00:1::]/",
            "http://[ff02::1]/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://0.0.0.0/",
        ] {
            let refused = any_host(url).check(url);
            assert!(
                refused.as_ref().is_err_and(|message| message
                    .contains("is internal (loopback, private, link-local or reserved)")),
                "{url}: {refused:?}"
            );
        }
        let allowed = Destinations::new(["127.0.0.1".to_owned()], true);
        assert!(allowed.check("http://127.0.0.1:8080/hook").is_ok());
        assert_eq!(
            allowed.check("http://127.0.0.2:8080/hook"),
            Err("host 127.0.0.2 is not among the allowed hosts".to_owned())
        );
    }

    #[test]
    fn public_addresses_are_not_internal() {
        for address in [
            "8.8.8.8",
            "2001:4860:4860::8888",
            "100.128.0.1",
            "172.32.0.1",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_internal(address.parse().unwrap()), "{address}");
        }
        for address in [
            "172.16.0.1",
            "192.168.0.1",
            "255.255.255.255",
            "::",
            "192.0.0.8",
        ] {
            assert!(is_internal(address.parse().unwrap()), "{address}");
        }
    }

    #[test]
    fn a_trailing_dot_names_the_same_host() {
        let destinations = Destinations::new(["Hooks.Example.com.".to_owned()], false);
        assert!(destinations.check("https://hooks.example.com./in").is_ok());
        assert!(destinations.check("https://hooks.example.com/in").is_ok());
    }

    /// `https://` is spoken: the first bytes on the wire are a TLS
    /// handshake record (a `ClientHello`), and a peer that is no TLS server
    /// fails the call.
    #[tokio::test]
    async fn https_urls_are_called_over_tls() {
        use tokio::io::AsyncReadExt;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("https://{}/", listener.local_addr().unwrap())).unwrap();
        let client = HttpClient::new(Duration::from_secs(5)).unwrap();
        let call = tokio::spawn(async move { client.request(Method::GET, url).send().await });
        let (mut connection, _) = listener.accept().await.unwrap();
        let mut record_header = [0_u8; 3];
        connection.read_exact(&mut record_header).await.unwrap();
        // Content type 22 (handshake), protocol major version 3.
        assert_eq!(record_header[..2], [0x16, 0x03], "{record_header:?}");
        drop(connection);
        assert!(call.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused_unless_allowed() {
        let resolver = GuardedResolver {
            private_networks: false,
        };
        let error = resolver
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost resolves to loopback only");
        assert!(
            error
                .to_string()
                .starts_with("localhost resolves only to internal addresses (loopback, private, link-local or reserved)"),
            "{error}"
        );
        let allowing = GuardedResolver {
            private_networks: true,
        };
        let addresses: Vec<SocketAddr> = allowing
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(!addresses.is_empty());
        assert!(addresses.iter().all(|address| address.ip().is_loopback()));
    }

    #[tokio::test]
    async fn a_guarded_client_does_not_connect_to_loopback_by_name() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let client = HttpClient::guarded(
            Duration::from_secs(5),
            &Destinations::new(["localhost".to_owned()], false),
        )
        .unwrap();
        let url = Url::parse(&format!("http://localhost:{port}/")).unwrap();
        let error = client.request(Method::GET, url).send().await.unwrap_err();
        let mut causes = Vec::new();
        let mut cause: Option<&dyn std::error::Error> = Some(&error);
        while let Some(current) = cause {
            causes.push(current.to_string());
            cause = current.source();
        }
        assert!(
            causes.iter().any(|message| message
                .contains("localhost resolves only to internal addresses (loopback, private, link-local or reserved)")),
            "{causes:?}"
        );
    }
}
