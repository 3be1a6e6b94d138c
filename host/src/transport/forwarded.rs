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

/// The peers whose forwarding headers are believed, and which headers
/// they write.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    headers: ProxyHeaders,
}

/// The headers a deployment's proxy writes. Only those are read: a proxy
/// passes the other kind on from the client untouched, so reading both
/// would let any client speak for the proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyHeaders {
    /// `X-Forwarded-For` and `X-Forwarded-Host` (nginx, HAProxy, most
    /// load balancers and ingress controllers).
    #[default]
    XForwarded,
    /// `Forwarded` (RFC 7239).
    Forwarded,
}

/// What a trusted proxy said about the client.
#[derive(Debug, Default, PartialEq, Eq)]
struct Forwarding {
    /// Addresses the request passed through, client first.
    chain: Vec<Option<IpAddr>>,
    /// The host the client asked for.
    host: Option<String>,
}

impl TrustedProxies {
    /// Trusts the peers in `nets` to write `headers`.
    pub fn new(nets: Vec<IpNet>, headers: ProxyHeaders) -> Self {
        TrustedProxies { nets, headers }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request from `peer`, and its headers as Moat should
    /// read them: forwarding headers applied from a trusted peer, removed
    /// otherwise. The client is the nearest address in the chain that is
    /// not itself a trusted proxy; a hop written as `unknown` or an
    /// obfuscated name stops the walk at the proxy that wrote it.
    pub fn resolve(&self, peer: SocketAddr, headers: &mut HeaderMap) -> SocketAddr {
        let forwarding = self.trusts(peer.ip()).then(|| read(headers, self.headers));
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

/// Reads a trusted proxy's description of the client from the `kind` of
/// headers it writes. The host is the one the nearest proxy wrote: the
/// last value, or the last element's `host`.
fn read(headers: &HeaderMap, kind: ProxyHeaders) -> Forwarding {
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
    match kind {
        ProxyHeaders::XForwarded => Forwarding {
            chain: tail(&values("x-forwarded-for"))
                .iter()
                .map(|v| node(v))
                .collect(),
            host: values("x-forwarded-host").pop(),
        },
        ProxyHeaders::Forwarded => {
            let mut forwarding = Forwarding::default();
            for element in tail(&values("forwarded")) {
                let (mut hop, mut host) = (None, None);
                for pair in element.split(';') {
                    let Some((key, value)) = pair.split_once('=') else {
                        continue;
                    };
                    let value = value.trim().trim_matches('"');
                    match key.trim().to_ascii_lowercase().as_str() {
                        "for" => hop = node(value),
                        "host" => host = Some(value.to_string()),
                        _ => {}
                    }
                }
                // An element without `for` says nothing of that hop.
                forwarding.chain.push(hop);
                forwarding.host = host;
            }
            forwarding
        }
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
    use crate::transport::test_headers as headers;

    fn proxies(nets: &[&str]) -> TrustedProxies {
        with_headers(nets, ProxyHeaders::XForwarded)
    }

    fn with_headers(nets: &[&str], headers: ProxyHeaders) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect(), headers)
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
    fn a_trusted_proxy_names_the_client_and_the_host_in_the_headers_it_writes() {
        use ProxyHeaders::{Forwarded, XForwarded};
        // The proxy's header kind, the headers it sent, then the client and
        // the Host Moat reads.
        type Case<'a> = (ProxyHeaders, &'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 11] = [
            // nginx: one proxy, one address.
            (
                XForwarded,
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
                XForwarded,
                &[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.1.2.3")],
                "203.0.113.9",
                "moat.internal",
            ),
            // Headers repeated are one list.
            (
                XForwarded,
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "203.0.113.9"),
                ],
                "203.0.113.9",
                "moat.internal",
            ),
            // `unknown` stops the walk at the proxy that wrote it.
            (
                XForwarded,
                &[("x-forwarded-for", "203.0.113.9, unknown, 10.1.2.3")],
                "10.1.2.3",
                "moat.internal",
            ),
            // Every hop a trusted proxy: the first of them.
            (
                XForwarded,
                &[("x-forwarded-for", "10.9.9.9, 10.1.2.3")],
                "10.9.9.9",
                "moat.internal",
            ),
            // A proxy that writes X-Forwarded-* passes the client's own
            // `Forwarded` on: it is not read.
            (
                XForwarded,
                &[
                    ("forwarded", "for=198.51.100.1;host=evil.example"),
                    ("x-forwarded-for", "203.0.113.9"),
                ],
                "203.0.113.9",
                "moat.internal",
            ),
            // RFC 7239, with ports, IPv6 and quoting.
            (
                Forwarded,
                &[(
                    "forwarded",
                    "for=1.2.3.4, for=\"[2001:db8::7]:4711\";proto=https;host=tools.example.com",
                )],
                "2001:db8::7",
                "tools.example.com",
            ),
            // The host is the nearest proxy's: an earlier element's is not.
            (
                Forwarded,
                &[("forwarded", "host=evil.example, for=203.0.113.9")],
                "203.0.113.9",
                "moat.internal",
            ),
            // And X-Forwarded-* from the client is not read either.
            (
                Forwarded,
                &[
                    ("x-forwarded-for", "198.51.100.1"),
                    ("x-forwarded-host", "evil.example"),
                ],
                "127.0.0.1",
                "moat.internal",
            ),
            (
                Forwarded,
                &[("forwarded", "for=_hidden;proto=https")],
                "127.0.0.1",
                "moat.internal",
            ),
            // No forwarding headers at all: the proxy itself.
            (XForwarded, &[], "127.0.0.1", "moat.internal"),
        ];
        for (kind, given, client, host) in cases {
            let trusted = with_headers(&["127.0.0.1/32", "10.0.0.0/8"], kind);
            let mut h = headers(given);
            h.insert("host", "moat.internal".parse().unwrap());
            let resolved = trusted.resolve(peer("127.0.0.1"), &mut h);
            assert_eq!(
                resolved.ip(),
                client.parse::<IpAddr>().unwrap(),
                "{given:?}"
            );
            assert_eq!(h.get("host").unwrap(), host, "{given:?}");
            for name in FORWARDING_HEADERS {
                assert!(h.get(name).is_none(), "{name} was kept");
            }
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
