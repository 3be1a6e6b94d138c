//! The outbound allow-list: parsed once from `allow_hosts`, matched on every
//! request. Pure: no I/O, no wasmtime.
//!
//! An entry is `[scheme://]host[:ports]`:
//! - scheme `http` or `https`; without one, `https` only (plain HTTP must
//!   be granted explicitly);
//! - host: a name (`api.example.com`), a wildcard (`*.example.com`: every
//!   subdomain, not the apex), `*` (any public host), an IPv4 address, an
//!   IPv6 address in brackets, or a CIDR block (`10.1.2.0/24`,
//!   `[fd00::]/8`);
//! - ports: one (`:8443`), a list (`:80,443`), a range (`:8000-8100`) or any
//!   (`:*`); without them, the scheme's default port.
//!
//! Names match names and addresses match addresses: a name never grants an
//! IP literal, and an IP or CIDR never grants a name. After a name is
//! resolved, each address is checked again: loopback, private, link-local
//! and other special addresses are refused unless an IP or CIDR entry
//! grants that address explicitly.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The port used when none is written.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    /// Parses `http` or `https` (any case).
    pub fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// Where a request goes: a name as written in the URL (lowercase, without
/// a trailing dot), or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name.
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl Host {
    /// The host of a URL as WHATWG parsing read it (decimal, hex and octal
    /// IPv4 spellings already turned into addresses); `None` for a name
    /// that is not plain ASCII labels.
    pub fn from_url<S: AsRef<str>>(host: url::Host<S>) -> Option<Host> {
        match host {
            url::Host::Ipv4(ip) => Some(Host::Ip(IpAddr::V4(ip))),
            url::Host::Ipv6(ip) => Some(Host::Ip(canonical(IpAddr::V6(ip)))),
            url::Host::Domain(name) => normalize_name(name.as_ref()).map(Host::Name),
        }
    }
}

/// One scheme, host and port: what a kept-alive connection may be reused
/// for, and what an upstream connection's `hosts` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// For HTTPS, also the name the certificate is checked against.
    pub host: Host,
    /// The port, the scheme's default when none is written.
    pub port: u16,
}

impl Origin {
    /// Exactly `scheme://host[:port]`: no path, query, user or wildcard.
    pub fn parse(text: &str) -> Result<Origin, EntryError> {
        let fix = "write an origin such as \"https://api.example.com\" (a port if not the default)";
        let url = url::Url::parse(text).map_err(|_| bad(format!("`{text}` is not a URL"), fix))?;
        let scheme = Scheme::parse(url.scheme())
            .ok_or_else(|| bad(format!("`{text}`: only http and https are supported"), fix))?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        let host = url.host().and_then(Host::from_url);
        match host {
            Some(host) if bare => Ok(Origin {
                scheme,
                port: url.port().unwrap_or(scheme.default_port()),
                host,
            }),
            _ => Err(bad(format!("`{text}` is not a bare origin"), fix)),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Name(String),
    /// `*.suffix`: stores `.suffix`.
    Subdomains(String),
    Net {
        addr: IpAddr,
        prefix: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Any,
    /// Inclusive ranges.
    Ranges(Vec<(u16, u16)>),
}

/// One parsed entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    scheme: Scheme,
    host: HostPattern,
    ports: Ports,
}

/// A parsed `allow_hosts` list. The default allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    rules: Vec<Rule>,
    /// The entries as the operator wrote them, for `moat check`.
    written: Vec<String>,
}

/// Why an entry could not be parsed, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// What is wrong.
    pub message: String,
    /// What to write instead.
    pub fix: String,
}

fn bad(message: impl Into<String>, fix: impl Into<String>) -> EntryError {
    EntryError {
        message: message.into(),
        fix: fix.into(),
    }
}

impl AllowedHosts {
    /// Parses every entry; the first bad one is reported with its index.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts, (usize, EntryError)> {
        let rules = entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_entry(e.as_ref()).map_err(|err| (i, err)))
            .collect::<Result<_, _>>()?;
        Ok(AllowedHosts {
            rules,
            written: entries.iter().map(|e| e.as_ref().to_string()).collect(),
        })
    }

    /// The entries as written.
    pub fn entries(&self) -> &[String] {
        &self.written
    }

    /// Whether nothing at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a request to `scheme://host:port` is allowed by the URL.
    pub fn allows(&self, scheme: Scheme, host: &Host, port: u16) -> bool {
        self.rules.iter().any(|rule| {
            rule.scheme == scheme
                && rule.ports.contains(port, scheme)
                && match (&rule.host, host) {
                    (HostPattern::Any, _) => true,
                    (HostPattern::Name(n), Host::Name(h)) => n == h,
                    (HostPattern::Subdomains(suffix), Host::Name(h)) => {
                        h.len() > suffix.len() && h.ends_with(suffix.as_str())
                    }
                    (HostPattern::Net { addr, prefix }, Host::Ip(ip)) => {
                        in_net(*ip, *addr, *prefix)
                    }
                    _ => false,
                }
        })
    }

    /// Whether connecting to `addr` (resolved for a request already allowed
    /// by [`Self::allows`]) is allowed: any public address, or a special
    /// one that an IP or CIDR entry names for this scheme and port.
    pub fn allows_address(&self, scheme: Scheme, port: u16, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        if special_range(addr).is_none() {
            return true;
        }
        self.rules.iter().any(|rule| {
            rule.scheme == scheme
                && rule.ports.contains(port, scheme)
                && matches!(rule.host, HostPattern::Net { addr: net, prefix } if in_net(addr, net, prefix))
        })
    }
}

impl Ports {
    fn contains(&self, port: u16, scheme: Scheme) -> bool {
        match self {
            Ports::Any => true,
            Ports::Ranges(ranges) if ranges.is_empty() => port == scheme.default_port(),
            Ports::Ranges(ranges) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&port)),
        }
    }
}

fn parse_entry(entry: &str) -> Result<Rule, EntryError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(bad("an entry is empty", "remove it"));
    }
    let (scheme, rest) = match entry.split_once("://") {
        Some((s, rest)) => (
            Scheme::parse(s).ok_or_else(|| {
                bad(
                    format!("`{entry}` has scheme `{s}`"),
                    "use http:// or https:// (or no scheme, which means https)",
                )
            })?,
            rest,
        ),
        None => (Scheme::Https, entry),
    };
    if rest.contains('@') {
        return Err(bad(
            format!("`{entry}` contains user information"),
            "grant only scheme, host and port, such as \"https://api.example.com\"",
        ));
    }
    if let Some(i) = path_start(rest) {
        return Err(bad(
            format!("`{entry}` has a path (`{}`)", &rest[i..]),
            "grants are per host and port; remove the path",
        ));
    }
    let (host, ports) = split_host_ports(rest).ok_or_else(|| {
        bad(
            format!("`{entry}` has an unclosed `[`"),
            "write IPv6 addresses as [::1]",
        )
    })?;
    Ok(Rule {
        scheme,
        host: parse_host(host, entry)?,
        ports: parse_ports(ports, entry)?,
    })
}

/// Where a path would start: a `/` that is not a CIDR prefix length.
fn path_start(rest: &str) -> Option<usize> {
    let slash = rest.find('/')?;
    let after = &rest[slash + 1..];
    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
    let cidr = digits > 0 && (after.len() == digits || after[digits..].starts_with(':'));
    if cidr { None } else { Some(slash) }
}

/// Splits `host[:ports]`, keeping brackets and CIDR suffixes with the host.
fn split_host_ports(rest: &str) -> Option<(&str, Option<&str>)> {
    let host_end = if rest.starts_with('[') {
        let close = rest.find(']')?;
        // A CIDR suffix after the bracket belongs to the host.
        let after = &rest[close + 1..];
        close + 1 + after.find(':').unwrap_or(after.len())
    } else {
        rest.find(':').unwrap_or(rest.len())
    };
    let (host, ports) = rest.split_at(host_end);
    Some((host, ports.strip_prefix(':')))
}

fn parse_host(host: &str, entry: &str) -> Result<HostPattern, EntryError> {
    if host.is_empty() {
        return Err(bad(
            format!("`{entry}` has no host"),
            "name a host, such as \"https://api.example.com\"",
        ));
    }
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if let Some((addr, len)) = host.split_once('/') {
        let addr = parse_ip(addr).ok_or_else(|| {
            bad(
                format!("`{entry}`: `{addr}` is not an IP address"),
                "write a CIDR block as 10.1.2.0/24 or [fd00::]/8",
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = len.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            bad(
                format!("`{entry}`: prefix length `{len}` is not 0 to {max}"),
                "fix the prefix length",
            )
        })?;
        return Ok(HostPattern::Net {
            addr: canonical(addr),
            prefix,
        });
    }
    if let Some(ip) = parse_ip(host) {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        return Ok(HostPattern::Net {
            addr: canonical(ip),
            prefix,
        });
    }
    let (wildcard, name) = match host.strip_prefix("*.") {
        Some(name) => (true, name),
        None => (false, host),
    };
    let name = normalize_name(name).ok_or_else(|| {
        bad(
            format!("`{entry}`: `{host}` is not a host name"),
            "use letters, digits, `-` and `.` (punycode for international names); a wildcard must be a leading `*.`",
        )
    })?;
    if wildcard && !name.contains('.') {
        return Err(bad(
            format!("`{entry}` grants every subdomain of a top-level domain"),
            "name the domain, such as \"*.example.com\"",
        ));
    }
    Ok(if wildcard {
        HostPattern::Subdomains(format!(".{name}"))
    } else {
        HostPattern::Name(name)
    })
}

fn parse_ports(ports: Option<&str>, entry: &str) -> Result<Ports, EntryError> {
    let Some(ports) = ports else {
        return Ok(Ports::Ranges(Vec::new()));
    };
    if ports == "*" {
        return Ok(Ports::Any);
    }
    let fail = || {
        bad(
            format!("`{entry}` has bad ports `{ports}`"),
            "write one port (:8443), a list (:80,443), a range (:8000-8100) or any (:*)",
        )
    };
    let port = |s: &str| s.parse::<u16>().ok().filter(|p| *p > 0);
    let ranges = ports
        .split(',')
        .map(|part| match part.split_once('-') {
            Some((lo, hi)) => match (port(lo), port(hi)) {
                (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
                _ => None,
            },
            None => port(part).map(|p| (p, p)),
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(fail)?;
    Ok(Ports::Ranges(ranges))
}

/// Lowercases a DNS name and drops one trailing dot; `None` unless it is
/// plain ASCII letters, digits, `-` and `.` in non-empty labels.
pub fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(name)
}

/// Parses a strict IP literal: dotted-quad IPv4, or IPv6 with or without
/// brackets. Other spellings (decimal, hex, octal) are not accepted here:
/// URL parsing normalises them before they are matched.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let inner = s.strip_prefix('[').and_then(|s| s.strip_suffix(']'));
    match inner {
        Some(v6) => v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
        None => s.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// IPv4-mapped IPv6 addresses are treated as the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (canonical(ip), net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The kind of special address `ip` is, if it is one: a destination that
/// is refused unless granted explicitly.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4 == Ipv4Addr::new(169, 254, 169, 254) {
                Some("cloud metadata")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("carrier-grade NAT")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if o[0] >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                Some("cloud metadata")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("unique local (private)")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if s[0] == 0x64 && s[1] == 0xff9b {
                // NAT64 can reach any IPv4 address, private ones included.
                Some("NAT64")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_exact_scheme_host_and_port() {
        let o = Origin::parse("https://API.GitHub.com").unwrap();
        assert_eq!(o.to_string(), "https://api.github.com:443");
        assert_eq!(Origin::parse("https://api.github.com/").unwrap(), o);
        assert_eq!(
            Origin::parse("http://127.0.0.1:8080").unwrap().to_string(),
            "http://127.0.0.1:8080"
        );
        for bad in [
            "api.github.com",
            "ftp://a.example",
            "https://a.example/v1",
            "https://a.example?x=1",
            "https://user@a.example",
            "https://*.example.com",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn entries_match_scheme_host_and_port() {
        use Scheme::{Http, Https};
        let hosts = AllowedHosts::parse(&[
            "https://api.github.com",
            "api.example.com:8443",
            "https://*.example.org",
            "http://127.0.0.1:9000",
            "https://10.1.2.0/24",
            "http://multi.example:80,8080-8081",
            "https://[::1]:*",
            "HTTPS://Upper.Example.",
        ])
        .unwrap();
        let cases: &[(Scheme, Host, u16, bool)] = &[
            (Https, name("api.github.com"), 443, true),
            (Https, name("api.github.com"), 8443, false),
            (Http, name("api.github.com"), 443, false),
            (Http, name("api.github.com"), 80, false),
            (Https, name("github.com"), 443, false),
            (Https, name("api.github.com.evil.com"), 443, false),
            (Https, name("api.example.com"), 8443, true),
            (Https, name("api.example.com"), 443, false),
            (Http, name("api.example.com"), 8443, false),
            (Https, name("a.example.org"), 443, true),
            (Https, name("a.b.example.org"), 443, true),
            (Https, name("example.org"), 443, false),
            (Https, name("badexample.org"), 443, false),
            (Http, ip("127.0.0.1"), 9000, true),
            (Http, ip("127.0.0.1"), 9001, false),
            (Https, ip("127.0.0.1"), 9000, false),
            (Http, name("localhost"), 9000, false),
            (Https, ip("10.1.2.77"), 443, true),
            (Https, ip("10.1.3.1"), 443, false),
            (Https, ip("::ffff:10.1.2.5"), 443, true),
            (Http, name("multi.example"), 80, true),
            (Http, name("multi.example"), 8081, true),
            (Http, name("multi.example"), 8082, false),
            (Https, ip("::1"), 1, true),
            (Https, name("upper.example"), 443, true),
        ];
        for (scheme, host, port, expected) in cases {
            assert_eq!(
                hosts.allows(*scheme, host, *port),
                *expected,
                "{scheme}://{host}:{port}"
            );
        }
        assert!(!AllowedHosts::default().allows(Https, &name("example.com"), 443));
    }

    #[test]
    fn any_host_still_refuses_special_addresses() {
        let hosts = AllowedHosts::parse(&["https://*"]).unwrap();
        assert!(hosts.allows(Scheme::Https, &name("anything.example"), 443));
        assert!(hosts.allows_address(Scheme::Https, 443, "93.184.216.34".parse().unwrap()));
        assert!(!hosts.allows_address(Scheme::Https, 443, "127.0.0.1".parse().unwrap()));
        assert!(!hosts.allows(Scheme::Http, &name("anything.example"), 80));
    }

    #[test]
    fn resolved_special_addresses_need_an_explicit_ip_grant() {
        let hosts =
            AllowedHosts::parse(&["http://localhost:9000", "http://127.0.0.1:9000"]).unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(hosts.allows_address(Scheme::Http, 9000, loopback));
        assert!(!hosts.allows_address(Scheme::Http, 9001, loopback));
        let by_name_only = AllowedHosts::parse(&["http://localhost:9000"]).unwrap();
        assert!(!by_name_only.allows_address(Scheme::Http, 9000, loopback));
        for special in [
            "127.0.0.2",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00:ec2::254",
            "fc00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
        ] {
            let addr: IpAddr = special.parse().unwrap();
            assert!(special_range(addr).is_some(), "{special}");
            assert!(
                !by_name_only.allows_address(Scheme::Http, 9000, addr),
                "{special}"
            );
        }
        for public in ["93.184.216.34", "1.1.1.1", "2606:4700::1111"] {
            assert_eq!(special_range(public.parse().unwrap()), None, "{public}");
        }
    }

    #[test]
    fn bad_entries_say_what_to_write() {
        let cases = [
            ("", "empty", "remove"),
            ("ftp://files.example", "scheme `ftp`", "http://"),
            (
                "https://user@api.example",
                "user information",
                "scheme, host and port",
            ),
            (
                "https://api.example/v1",
                "has a path (`/v1`)",
                "remove the path",
            ),
            ("https://api.example:0", "bad ports", ":8443"),
            ("https://api.example:90-80", "bad ports", "range"),
            ("https://api.example:http", "bad ports", "list"),
            ("https://10.0.0.0/33", "prefix length", "prefix"),
            ("https://*.com", "top-level domain", "*.example.com"),
            ("https://api.*.example", "not a host name", "leading `*.`"),
            ("https://exämple.com", "not a host name", "punycode"),
            ("https://[::1", "unclosed", "[::1]"),
            ("https://", "no host", "name a host"),
        ];
        for (entry, message, fix) in cases {
            let (index, err) = AllowedHosts::parse(&["https://ok.example", entry]).unwrap_err();
            assert_eq!(index, 1, "{entry}");
            assert!(err.message.contains(message), "{entry}: {err:?}");
            assert!(err.fix.contains(fix), "{entry}: {err:?}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A DNS name of one to four labels. Its last label starts with a
        /// letter, as top-level domains do: one that is a number (`0`,
        /// `0x1f`) makes the whole name an IPv4 address (`0.0.0.0`).
        fn dns_name() -> impl Strategy<Value = String> {
            (
                prop::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 0..4),
                "[a-z]([a-z0-9-]{0,8}[a-z0-9])?",
            )
                .prop_map(|(mut labels, last)| {
                    labels.push(last);
                    labels.join(".")
                })
        }

        proptest! {
            /// No entry, however malformed, panics the parser.
            #[test]
            fn any_entry_is_parsed_or_refused(entry in "\\PC{0,80}") {
                let _ = AllowedHosts::parse(&[entry]);
            }

            /// An entry naming a host allows that host on that port and
            /// scheme, and nothing beside it: not another scheme or port,
            /// not a subdomain, not a name that merely ends the same way.
            #[test]
            fn a_named_host_allows_itself_only(host in dns_name(), port in 1u16.., other in "[a-z]{1,8}") {
                let hosts = AllowedHosts::parse(&[format!("https://{}:{port}", host.to_uppercase())]).unwrap();
                let elsewhere = if port == 1 { 2 } else { port - 1 };
                prop_assert!(hosts.allows(Scheme::Https, &name(&host), port));
                prop_assert!(!hosts.allows(Scheme::Http, &name(&host), port));
                prop_assert!(!hosts.allows(Scheme::Https, &name(&host), elsewhere));
                let (below, glued) = (format!("{other}.{host}"), format!("{other}{host}"));
                prop_assert!(!hosts.allows(Scheme::Https, &name(&below), port));
                prop_assert!(!hosts.allows(Scheme::Https, &name(&glued), port));
            }

            /// `*.name` allows every subdomain and neither the name itself
            /// nor a name that merely ends with it; `*.tld` is refused.
            #[test]
            fn a_wildcard_allows_subdomains_only(name_ in dns_name(), tld in "[a-z]{2,6}", sub in dns_name()) {
                let top = format!("https://*.{tld}");
                prop_assert!(AllowedHosts::parse(&[top]).is_err());
                let host = format!("{name_}.{tld}");
                let hosts = AllowedHosts::parse(&[format!("https://*.{host}")]).unwrap();
                let below = format!("{sub}.{host}");
                prop_assert!(hosts.allows(Scheme::Https, &name(&below), 443));
                prop_assert!(!hosts.allows(Scheme::Https, &name(&host), 443));
                let glued = format!("{sub}{host}");
                prop_assert!(!hosts.allows(Scheme::Https, &name(&glued), 443));
            }

            /// A CIDR entry allows exactly the addresses of its block.
            #[test]
            fn a_block_allows_its_addresses(net in any::<u32>(), prefix in 0u8..=32, probe in any::<u32>()) {
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let base = std::net::Ipv4Addr::from(net & mask);
                let hosts = AllowedHosts::parse(&[format!("https://{base}/{prefix}")]).unwrap();
                let inside = (probe & mask) == (net & mask);
                let probe = IpAddr::V4(std::net::Ipv4Addr::from(probe));
                prop_assert_eq!(hosts.allows(Scheme::Https, &Host::Ip(probe), 443), inside);
            }

            /// Normalising a name twice changes nothing, and an IP address
            /// reads back as itself.
            #[test]
            fn names_and_addresses_round_trip(text in "\\PC{0,40}", v4 in any::<u32>(), v6 in any::<u128>()) {
                if let Some(n) = normalize_name(&text) {
                    prop_assert_eq!(normalize_name(&n), Some(n));
                }
                let v4 = std::net::Ipv4Addr::from(v4);
                prop_assert_eq!(parse_ip(&v4.to_string()), Some(IpAddr::V4(v4)));
                let v6 = Ipv6Addr::from(v6);
                prop_assert_eq!(parse_ip(&format!("[{v6}]")), Some(IpAddr::V6(v6)));
                prop_assert_eq!(canonical(canonical(IpAddr::V6(v6))), canonical(IpAddr::V6(v6)));
            }
        }
    }
}
