//! Transports: they adapt MCP's wire formats to [`crate::mcp::McpHandler`]
//! and hold no tool logic of their own.

pub mod admin;
mod admission;
mod body;
mod direct;
pub mod forwarded;
pub mod http;
mod rebinding;
mod sessions;
pub mod stdio;

/// A header map of `pairs`, in order (repeated names kept), for tests.
#[cfg(test)]
fn test_headers(pairs: &[(&str, &str)]) -> ::http::HeaderMap {
    let mut map = ::http::HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    map
}
