//! Whether rmcp's service will take a POST: its `Host` among the allowed
//! hosts and any `Origin` among the allowed origins (DNS-rebinding
//! protection), and the media types it requires. Admission runs before
//! rmcp's service (so that a refusal can still be a 403 or 429), and a
//! request rmcp will refuse anyway must not be admitted first: a web page
//! that rebinds a name to a loopback Moat would otherwise spend the local
//! user's rate limit and write audit records. Such a request passes on
//! unadmitted, and rmcp answers it. The rules mirror rmcp 3.11's.

use http::{HeaderMap, Uri};

/// The allow-lists of one listener.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Allowed `Host` values (host, and the port when one is named);
    /// `None`: any.
    hosts: Option<Vec<(String, Option<u16>)>>,
    /// Allowed origins: scheme, host, and the port (`None`: any).
    origins: Vec<(String, String, Option<u16>)>,
}

impl Expected {
    /// The lists given to rmcp: `hosts` (`"*"` allows any) and `origins`
    /// (`scheme://host[:port]`, `:*` for any port).
    pub fn new(hosts: &[String], origins: &[String]) -> Self {
        let hosts = (!hosts.iter().any(|h| h == "*"))
            .then(|| hosts.iter().filter_map(|h| authority(h)).collect());
        let origins = origins
            .iter()
            .filter_map(|o| {
                let (base, any_port) = match o.strip_suffix(":*") {
                    Some(base) => (base, true),
                    None => (o.as_str(), false),
                };
                let (scheme, host, port) = origin(base)?;
                Some((scheme, host, if any_port { None } else { port }))
            })
            .collect();
        Expected { hosts, origins }
    }

    /// Whether rmcp will take a POST with these headers.
    pub fn accepts(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        self.host_allowed(uri, headers) && self.origin_allowed(headers) && media_types_ok(headers)
    }

    fn host_allowed(&self, uri: &Uri, headers: &HeaderMap) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        let given = match headers.get(http::header::HOST) {
            Some(value) => value.to_str().ok().and_then(authority),
            None => uri.authority().and_then(|a| authority(a.as_str())),
        };
        let Some((host, port)) = given else {
            return false;
        };
        hosts
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }

    fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(http::header::ORIGIN) else {
            return true;
        };
        let Some((scheme, host, port)) = value.to_str().ok().and_then(origin) else {
            return false;
        };
        let port = port.or(match scheme.as_str() {
            "http" => Some(80),
            "https" => Some(443),
            _ => None,
        });
        self.origins
            .iter()
            .any(|(s, h, p)| *s == scheme && *h == host && p.is_none_or(|p| Some(p) == port))
    }
}

/// rmcp takes a POST only when it accepts both JSON and event streams and
/// carries JSON.
fn media_types_ok(headers: &HeaderMap) -> bool {
    let essence = |value: &str| {
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let accepted: Vec<String> = headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(essence)
        .collect();
    let content_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| essence(v) == "application/json");
    content_json
        && accepted.iter().any(|a| a == "application/json")
        && accepted.iter().any(|a| a == "text/event-stream")
}

/// A host and optional port, lowercased, without brackets or a final dot.
fn authority(text: &str) -> Option<(String, Option<u16>)> {
    // A bare IPv6 address, as allow-lists name it (`::1`).
    if let Ok(std::net::IpAddr::V6(ip)) = text.trim().parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), None));
    }
    let authority = http::uri::Authority::try_from(text.trim()).ok()?;
    Some((normal_host(authority.host()), authority.port_u16()))
}

/// An origin's scheme, host and port.
fn origin(text: &str) -> Option<(String, String, Option<u16>)> {
    let uri = Uri::try_from(text.trim()).ok()?;
    let authority = uri.authority()?;
    Some((
        uri.scheme_str()?.to_ascii_lowercase(),
        normal_host(authority.host()),
        authority.port_u16(),
    ))
}

fn normal_host(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::test_headers as headers;

    #[test]
    fn requests_rmcp_would_refuse_are_told_apart() {
        let loopback = Expected::new(
            &["localhost".into(), "127.0.0.1".into(), "::1".into()],
            &["http://localhost:*".into(), "https://app.example".into()],
        );
        let uri: Uri = "/mcp".parse().unwrap();
        let json = [
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = json.to_vec();
            all.extend_from_slice(extra);
            headers(&all)
        };
        let cases: [(&[(&str, &str)], bool); 9] = [
            (&[("host", "127.0.0.1:8080")], true),
            (&[("host", "LOCALHOST:1")], true),
            (&[("host", "[::1]:8080")], true),
            (&[("host", "evil.example:8080")], false),
            (
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://localhost:5173"),
                ],
                true,
            ),
            (
                &[
                    ("host", "localhost:8080"),
                    ("origin", "https://app.example"),
                ],
                true,
            ),
            (
                &[("host", "localhost:8080"), ("origin", "http://app.example")],
                false,
            ),
            (
                &[
                    ("host", "localhost:8080"),
                    ("origin", "http://evil.example"),
                ],
                false,
            ),
            (&[("host", "localhost:8080"), ("origin", "null")], false),
        ];
        for (extra, expected) in cases {
            assert_eq!(loopback.accepts(&uri, &with(extra)), expected, "{extra:?}");
        }
        let any = Expected::new(&["*".into()], &[]);
        assert!(any.accepts(&uri, &with(&[("host", "anything.example")])));
        assert!(!any.accepts(&uri, &with(&[("host", "x"), ("origin", "http://x")])));
        // Media types rmcp refuses with 406 and 415.
        let host = ("host", "localhost");
        for bad in [
            headers(&[host, ("content-type", "text/plain"), json[1]]),
            headers(&[host, json[0], ("accept", "application/json")]),
            headers(&[host, json[0]]),
        ] {
            assert!(!loopback.accepts(&uri, &bad), "{bad:?}");
        }
    }
}
