//! `[http]`: how Moat serves Streamable HTTP.

use crate::diagnostics::{ConfigError, Source};
use crate::transport::forwarded::ProxyHeaders;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use toml::Spanned;

/// Validated `[http]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    /// Where to listen when `--http` is not given.
    pub listen: Option<SocketAddr>,
    /// The MCP endpoint's path.
    pub path: String,
    /// Serve without sessions: every request stands alone.
    pub stateless: bool,
    /// Accepted `Host` header values (`name` or `name:port`; `*` accepts
    /// any). `None`: loopback names when bound to loopback, else required.
    pub allowed_hosts: Option<Vec<String>>,
    /// Accepted browser `Origin`s (`scheme://host[:port]`, `:*` for any
    /// port). `None`: loopback origins when bound to loopback, else none.
    pub allowed_origins: Option<Vec<String>>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long one HTTP request may take to produce its response.
    pub request_timeout: Duration,
    /// How long in-flight calls get to finish after SIGTERM or Ctrl-C.
    pub shutdown_grace: Duration,
    /// Peers (reverse proxies) whose forwarding headers are believed;
    /// empty: nobody's.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which forwarding headers those proxies write.
    pub proxy_headers: ProxyHeaders,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            path: "/mcp".into(),
            stateless: false,
            allowed_hosts: None,
            allowed_origins: None,
            max_body_bytes: 4 << 20,
            request_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(10),
            trusted_proxies: Vec::new(),
            proxy_headers: ProxyHeaders::default(),
        }
    }
}

/// Paths Moat serves itself, outside the MCP endpoint.
pub const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz"];

/// Folders of paths Moat serves itself: the pages where callers connect
/// accounts, and where they revoke them.
const RESERVED_FOLDERS: &[&str] = &["/connect", "/connections"];

/// Checks an MCP endpoint path written as `key`: absolute, no trailing
/// slash, plain characters (routers give `{`, `*` and `:` meanings), and
/// clear of Moat's own paths.
pub(super) fn endpoint_path(
    src: &Source,
    path: &Spanned<String>,
    key: &str,
) -> Result<String, ConfigError> {
    let p = path.get_ref();
    let plain = p
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b));
    if !p.starts_with('/')
        || p.len() < 2
        || p.ends_with('/')
        || p.contains("//")
        || !plain
        || p.starts_with("/.well-known")
        || RESERVED_PATHS.contains(&p.as_str())
        || RESERVED_FOLDERS
            .iter()
            .any(|f| p == f || p.strip_prefix(f).is_some_and(|rest| rest.starts_with('/')))
    {
        return Err(src.error(
            path.span(),
            format!("{key} = {p:?} cannot be an MCP endpoint"),
            "use an absolute path of letters, digits and `/-._~` without a trailing slash, such as \"/mcp\", other than /healthz, /readyz, /.well-known/…, /connect/… and /connections/…",
        ));
    }
    Ok(p.clone())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    stateless: Option<bool>,
    allowed_hosts: Option<Vec<String>>,
    allowed_origins: Option<Vec<Spanned<String>>>,
    max_body_bytes: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
    shutdown_grace_ms: Option<Spanned<u64>>,
    #[serde(default)]
    trusted_proxies: Vec<Spanned<String>>,
    proxy_headers: Option<Spanned<String>>,
}

pub(super) fn parse(src: &Source, raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let mut http = HttpConfig::default();
    if let Some(listen) = raw.listen {
        http.listen = Some(listen.get_ref().parse().map_err(|_| {
            src.error(
                listen.span(),
                format!("listen = {:?} is not an address and port", listen.get_ref()),
                "write it as \"127.0.0.1:8080\" or \"[::1]:8080\"",
            )
        })?);
    }
    if let Some(path) = raw.path {
        http.path = endpoint_path(src, &path, "path")?;
    }
    http.stateless = raw.stateless.unwrap_or(false);
    http.allowed_hosts = raw.allowed_hosts;
    if let Some(origins) = raw.allowed_origins {
        for origin in &origins {
            let o = origin.get_ref();
            if o != "null" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(src.error(
                    origin.span(),
                    format!("allowed origin {o:?} has no scheme"),
                    "write origins as \"https://app.example.com\" or \"http://localhost:*\"",
                ));
            }
        }
        http.allowed_origins = Some(origins.into_iter().map(Spanned::into_inner).collect());
    }
    if let Some(v) = &raw.max_body_bytes {
        http.max_body_bytes = src.ranged(v, "max_body_bytes", 1024, 1 << 30)? as usize;
    }
    if let Some(v) = &raw.request_timeout_ms {
        http.request_timeout =
            Duration::from_millis(src.ranged(v, "request_timeout_ms", 1, 3_600_000)?);
    }
    if let Some(v) = &raw.shutdown_grace_ms {
        http.shutdown_grace =
            Duration::from_millis(src.ranged(v, "shutdown_grace_ms", 0, 600_000)?);
    }
    for proxy in raw.trusted_proxies {
        let text = proxy.get_ref().trim();
        let net = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                src.error(
                    proxy.span(),
                    format!("trusted proxy {text:?} is not an address or network"),
                    "write the proxies' addresses as \"127.0.0.1\" or networks as \"10.0.0.0/8\"",
                )
            })?;
        if net.prefix_len() == 0 {
            return Err(src.error(
                proxy.span(),
                format!("trusted proxy {text:?} is every address"),
                "list the proxies' own addresses: with every peer trusted, any client can name any address and host",
            ));
        }
        http.trusted_proxies.push(net.trunc());
    }
    if let Some(kind) = raw.proxy_headers {
        http.proxy_headers = match kind.get_ref().as_str() {
            "x-forwarded" => ProxyHeaders::XForwarded,
            "forwarded" => ProxyHeaders::Forwarded,
            other => {
                return Err(src.error(
                    kind.span(),
                    format!("proxy_headers = {other:?} is not a choice"),
                    "use \"x-forwarded\" (X-Forwarded-For and X-Forwarded-Host, as nginx writes them) or \"forwarded\" (RFC 7239)",
                ));
            }
        };
    }
    Ok(http)
}
