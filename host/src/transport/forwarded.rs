//! Requests that arrive through a reverse proxy (TLS termination, a load
//! balancer). A proxy names the client in `Forwarded` (RFC 7239) or the
//! `X-Forwarded-For`/`-Host`/`-Proto` headers; anyone can write those
//! headers, so Moat believes them only from the peers listed in
//! `[http] trusted_proxies`. From a trusted peer, the client's address
//! replaces the peer's (for per-address limits and throttles and the
//! audit record) and the forwarded host replaces `Host` (for the
//! DNS-rebinding check). From anyone else the headers are removed, so no
//! later step can read a spoofed one. The scheme a proxy reports is not
//! needed: the public URL that tokens are bound to is the configured
//! `resource`, never one read from a request.

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The headers a proxy uses to describe the client.
const FORWARDING_HEADERS: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// Addresses handed to the chain walk at most: a proxy chain is short, and
/// a client can make the list it starts as long as the header limit allows.
const MAX_HOPS: usize = 32;

/// The peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// What a trusted proxy said about the client.
#[derive(Debug, Default, PartialEq, Eq)]
struct Forwarding {
    /// Addresses the request passed through, client first.
    chain: Vec<Option<IpAddr>>,
    /// The host the client asked for.
    host: Option<String>,
}

impl TrustedProxies {
    /// Trusts the peers in `nets`.
    pub fn new(nets: Vec<IpNet>) -> Self {
        TrustedProxies(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer`, and its headers as Moat should
    /// read them: forwarding headers applied from a trusted peer, removed
    /// otherwise. The client is the nearest address in the chain that is
    /// not itself a trusted proxy; a hop written as `unknown` or an
    /// obfuscated name stops the walk at the proxy that wrote it.
    pub fn resolve(&self, peer: SocketAddr, headers: &mut HeaderMap) -> SocketAddr {
        let forwarding = self.trusts(peer.ip()).then(|| read(headers));
        for name in FORWARDING_HEADERS {
            headers.remove(name);
        }
        let Some(forwarding) = forwarding else {
            return peer;
        };
        if let Some(host) = forwarding
            .host
            .as_deref()
            .and_then(|h| HeaderValue::from_str(h).ok())
        {
            headers.insert(http::header::HOST, host);
        }
        let mut client = peer.ip();
        for hop in forwarding.chain.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.trusts(*ip) {
                        break;
                    }
                }
                None => break,
            }
        }
        SocketAddr::new(client.to_canonical(), 0)
    }
}

/// Middleware over every route: replaces the connection's address with
/// the client's, and applies or removes the forwarding headers.
pub async fn apply(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let peer = *peer;
        let client = trusted.resolve(peer, request.headers_mut());
        request.extensions_mut().insert(ConnectInfo(client));
    }
    next.run(request).await
}

/// Reads a trusted proxy's description of the client. `Forwarded`, the
/// standard, wins over the `X-Forwarded-*` headers when both are present.
/// The host comes from the last element: the one the nearest proxy wrote.
fn read(headers: &HeaderMap) -> Forwarding {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let standard = values("forwarded");
    if !standard.is_empty() {
        let mut forwarding = Forwarding::default();
        for element in tail(&standard) {
            let mut hop = None;
            for pair in element.split(';') {
                let Some((key, value)) = pair.split_once('=') else {
                    continue;
                };
                let value = value.trim().trim_matches('"');
                match key.trim().to_ascii_lowercase().as_str() {
                    "for" => hop = Some(node(value)),
                    "host" => forwarding.host = Some(value.to_string()),
                    _ => {}
                }
            }
            // An element without `for` says nothing of that hop.
            forwarding.chain.push(hop.flatten());
        }
        return forwarding;
    }
    Forwarding {
        chain: tail(&values("x-forwarded-for"))
            .iter()
            .map(|v| node(v))
            .collect(),
        host: values("x-forwarded-host").pop(),
    }
}

/// The last [`MAX_HOPS`] entries: the ones nearest to Moat.
fn tail(values: &[String]) -> &[String] {
    &values[values.len().saturating_sub(MAX_HOPS)..]
}

/// An address as a proxy writes it: `192.0.2.1`, `192.0.2.1:443`,
/// `[2001:db8::1]`, `[2001:db8::1]:443` or `2001:db8::1`. `unknown` and
/// obfuscated names (`_hidden`) are `None`.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        map
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 50000)
    }

    #[test]
    fn an_untrusted_peer_cannot_name_another_client_or_host() {
        let trusted = proxies(&["127.0.0.1/32"]);
        let mut h = headers(&[
            ("host", "moat.internal:8080"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "for=203.0.113.9;host=evil.example"),
        ]);
        let client = trusted.resolve(peer("198.51.100.4"), &mut h);
        assert_eq!(client, peer("198.51.100.4"));
        assert_eq!(h.get("host").unwrap(), "moat.internal:8080");
        for name in FORWARDING_HEADERS {
            assert!(h.get(name).is_none(), "{name} was kept");
        }
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_the_host() {
        let trusted = proxies(&["127.0.0.1/32", "10.0.0.0/8"]);
        // Headers given, then the client and the Host Moat reads.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 8] = [
            // nginx: one proxy, one address.
            (
                &[
                    ("x-forwarded-for", "203.0.113.9"),
                    ("x-forwarded-host", "tools.example.com"),
                ],
                "203.0.113.9",
                "tools.example.com",
            ),
            // A client-written address before the real one is skipped: the
            // walk stops at the first address no trusted proxy vouches for.
            (
                &[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.2.3")],
                "203.0.113.9",
                "moat.internal",
            ),
            // Headers repeated are one list.
            (
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "203.0.113.9"),
                ],
                "203.0.113.9",
                "moat.internal",
            ),
            // `unknown` stops the walk at the proxy that wrote it.
            (
                &[("x-forwarded-for", "203.0.113.9, unknown, 10.1.2.3")],
                "10.1.2.3",
                "moat.internal",
            ),
            // Every hop a trusted proxy: the first of them.
            (
                &[("x-forwarded-for", "10.9.9.9, 10.1.2.3")],
                "10.9.9.9",
                "moat.internal",
            ),
            // RFC 7239, with ports, IPv6 and quoting; it wins over X-F-*.
            (
                &[
                    (
                        "forwarded",
                        "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https;host=tools.example.com",
                    ),
                    ("x-forwarded-for", "198.51.100.1"),
                ],
                "2001:db8::7",
                "tools.example.com",
            ),
            (
                &[("forwarded", "for=_hidden;proto=https")],
                "127.0.0.1",
                "moat.internal",
            ),
            // No forwarding headers at all: the proxy itself.
            (&[], "127.0.0.1", "moat.internal"),
        ];
        for (given, client, host) in cases {
            let mut h = headers(given);
            h.insert("host", "moat.internal".parse().unwrap());
            let resolved = trusted.resolve(peer("127.0.0.1"), &mut h);
            assert_eq!(
                resolved.ip(),
                client.parse::<IpAddr>().unwrap(),
                "{given:?}"
            );
            assert_eq!(h.get("host").unwrap(), host, "{given:?}");
            assert!(h.get("x-forwarded-for").is_none() && h.get("forwarded").is_none());
        }
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks_and_long_chains_are_cut() {
        let trusted = proxies(&["127.0.0.0/8"]);
        let mut h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        let mapped = SocketAddr::new("::ffff:127.0.0.1".parse().unwrap(), 1);
        assert_eq!(
            trusted.resolve(mapped, &mut h).ip().to_string(),
            "203.0.113.9"
        );
        let long = std::iter::repeat_n("127.0.0.5", 1000)
            .collect::<Vec<_>>()
            .join(",");
        let mut h = headers(&[("x-forwarded-for", &format!("203.0.113.9,{long}"))]);
        // Only the nearest hops are read: all trusted, so the first of them.
        assert_eq!(
            trusted.resolve(peer("127.0.0.1"), &mut h).ip().to_string(),
            "127.0.0.5"
        );
    }
}
