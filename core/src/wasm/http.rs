//! The `http-send` import: outbound HTTP for sink plugins, owned by the host.
//!
//! - Only hosts in the stage's `allowed_hosts` (`host` or `host:port`, exact match).
//! - Hostnames must resolve to public addresses; a private, loopback or link-local address
//!   is reachable only as an IP literal listed in `allowed_hosts`. (An allowlist of names
//!   alone does not stop DNS from pointing a name at the internal network.)
//! - No redirects, no proxy, `http`/`https` only, a fixed set of methods.
//! - The response body is capped at [`MAX_RESPONSE`]; the whole exchange must finish
//!   within what is left of the stage's deadline.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Client, Url};

/// Largest response body handed back to a plugin.
pub(crate) const MAX_RESPONSE: usize = 1 << 20;
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Why no response came back (mirrors the WIT `http-error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Denied(String),
    Timeout(String),
    Failed(String),
    TooLarge(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// A sink stage's outbound HTTP: its allowlist and its client.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    allowed: Arc<Vec<String>>,
    client: Client,
}

/// An `allowed_hosts` entry: a host name or IP literal, optionally with `:port`.
pub(crate) fn validate_allowed(entry: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{entry}` is not a host (write `hooks.slack.com`, `127.0.0.1:8080` or `[::1]:8080`)"
        )
    };
    if entry.is_empty() || entry.contains(['/', '@', '?', '#', ' ']) {
        return Err(bad());
    }
    Url::parse(&format!("http://{entry}/"))
        .ok()
        .filter(|u| u.host().is_some())
        .map(|_| ())
        .ok_or_else(bad)
}

impl Policy {
    pub(crate) fn new(allowed: &[String]) -> Result<Policy, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(PublicOnly))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Policy {
            allowed: Arc::new(allowed.to_vec()),
            client,
        })
    }

    /// Whether `url` may be requested; the reason when not.
    pub(crate) fn check(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("scheme `{}` is not allowed", url.scheme()));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err("the URL has no host".into()),
        };
        let port = url.port_or_known_default().unwrap_or(0);
        let with_port = format!("{host}:{port}");
        if self.allowed.iter().any(|a| *a == host || *a == with_port) {
            Ok(())
        } else {
            Err(format!("host `{host}` is not in allowed_hosts"))
        }
    }

    /// Send, within `budget`.
    pub(crate) async fn send(
        &self,
        method: &str,
        url: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        budget: Duration,
    ) -> Result<Reply, Failure> {
        let url = Url::parse(url).map_err(|e| Failure::Denied(format!("bad URL: {e}")))?;
        self.check(&url).map_err(Failure::Denied)?;
        let method = method.to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(Failure::Denied(format!("method `{method}` is not allowed")));
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|e| Failure::Denied(e.to_string()))?;
        let mut request = self.client.request(method, url).body(body);
        for (name, value) in headers {
            if name.eq_ignore_ascii_case("host") {
                return Err(Failure::Denied(
                    "the `host` header is set by the host".into(),
                ));
            }
            request = request.header(name, value);
        }
        let exchange = async {
            let mut response = request.send().await.map_err(|e| classify(&e))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string())))
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
                if body.len() + chunk.len() > MAX_RESPONSE {
                    return Err(Failure::TooLarge(format!(
                        "the response body passed {MAX_RESPONSE} bytes"
                    )));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(budget, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout(format!(
                "no complete response within {}",
                humantime::format_duration(budget)
            ))),
        }
    }
}

fn classify(e: &reqwest::Error) -> Failure {
    // reqwest's Display hides the cause ("error sending request"); the chain says why.
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    let private = std::iter::successors(std::error::Error::source(e), |s| s.source()).any(|s| {
        // An `io::Error` wrapping it names it in its `get_ref`, not its `source`.
        s.is::<PrivateOnly>()
            || s.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<PrivateOnly>())
    });
    if e.is_timeout() {
        Failure::Timeout(message)
    } else if private {
        Failure::Denied(message)
    } else {
        Failure::Failed(message)
    }
}

/// Whether an address is outside the public internet (loopback, private, link-local, ...).
pub(crate) fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_private(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

/// A name that resolves to no public address: refused like a host outside `allowed_hosts`.
#[derive(Debug)]
struct PrivateOnly(String);

impl std::fmt::Display for PrivateOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` resolves only to private addresses (list its IP literal in allowed_hosts to reach it)",
            self.0
        )
    }
}

impl std::error::Error for PrivateOnly {}

/// Resolves names to their public addresses only.
#[derive(Debug)]
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| !is_private(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(PrivateOnly(host)) as _);
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> Policy {
        Policy::new(&hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>()).expect("client")
    }

    fn url(u: &str) -> Url {
        Url::parse(u).expect("url")
    }

    #[test]
    fn only_listed_hosts_pass() {
        let p = policy(&["hooks.slack.com", "127.0.0.1:8080"]);
        assert!(p.check(&url("https://hooks.slack.com/services/x")).is_ok());
        assert!(p.check(&url("https://HOOKS.slack.com/x")).is_ok());
        assert!(p.check(&url("http://127.0.0.1:8080/x")).is_ok());
        assert!(
            p.check(&url("http://127.0.0.1:8081/x")).is_err(),
            "other port"
        );
        assert!(
            p.check(&url("http://10.0.0.1/x")).is_err(),
            "private literal not listed"
        );
        assert!(p.check(&url("https://evil.example/x")).is_err());
        assert!(p.check(&url("ftp://hooks.slack.com/x")).is_err());
    }

    #[test]
    fn private_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn allowed_entries_are_hosts() {
        assert!(validate_allowed("hooks.slack.com").is_ok());
        assert!(validate_allowed("127.0.0.1:9000").is_ok());
        assert!(validate_allowed("[::1]:9000").is_ok());
        assert!(validate_allowed("https://hooks.slack.com").is_err());
        assert!(validate_allowed("").is_err());
    }

    #[tokio::test]
    async fn refusals_never_connect() {
        let p = policy(&["hooks.slack.com"]);
        let denied = p
            .send(
                "POST",
                "http://127.0.0.1:1/x",
                vec![],
                vec![],
                Duration::from_secs(1),
            )
            .await;
        assert!(matches!(denied, Err(Failure::Denied(m)) if m.contains("not in allowed_hosts")));
        let method = p
            .send(
                "TRACE",
                "https://hooks.slack.com/x",
                vec![],
                vec![],
                Duration::from_secs(1),
            )
            .await;
        assert!(matches!(method, Err(Failure::Denied(_))));
    }

    #[tokio::test]
    async fn a_listed_name_that_resolves_to_loopback_is_refused() {
        let p = policy(&["localhost:1"]);
        let r = p
            .send(
                "GET",
                "http://localhost:1/",
                vec![],
                vec![],
                Duration::from_secs(5),
            )
            .await;
        assert!(
            matches!(r, Err(Failure::Denied(ref m)) if m.contains("private")),
            "{r:?}"
        );
    }
}
