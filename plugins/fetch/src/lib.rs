//! Fetches a URL with HTTP GET and returns it as readable text (HTML is
//! reduced to its text), size-capped. It can reach only the hosts in its
//! `allow_hosts` grant; a refusal comes back as a clear tool error.

use moat_plugin::prelude::*;
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

const DEFAULT_MAX_BYTES: usize = 100_000;

#[derive(Deserialize, JsonSchema)]
struct FetchArgs {
    /// The http:// or https:// URL to fetch.
    url: String,
    /// Return at most this many bytes of text (default 100000).
    #[serde(default)]
    max_bytes: Option<usize>,
}

struct Response {
    status: u16,
    content_type: String,
    body: Vec<u8>,
    truncated: bool,
}

fn fetch(args: FetchArgs) -> Result<String, String> {
    let max = args.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
    let response = get(&args.url, max)?;
    let text = String::from_utf8_lossy(&response.body);
    let mut text = if response.content_type.contains("html") {
        html_to_text(&text)
    } else {
        text.into_owned()
    };
    if response.truncated {
        text.push_str(&format!("\n[truncated at {max} bytes]"));
    }
    if !(200..300).contains(&response.status) {
        return Err(format!(
            "{} answered HTTP {}: {text}",
            args.url, response.status
        ));
    }
    Ok(text)
}

fn get(url: &str, max: usize) -> Result<Response, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url}: not an absolute http:// or https:// URL"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("{url}: scheme `{other}` is not supported")),
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    let request = OutgoingRequest::new(Fields::new());
    let invalid = |_| format!("{url}: not a valid URL");
    request.set_scheme(Some(&scheme)).map_err(invalid)?;
    request.set_authority(Some(authority)).map_err(invalid)?;
    request.set_path_with_query(Some(&path)).map_err(invalid)?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| explain(url, &e))?;
    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or_else(|| format!("{url}: no response"))?
        .map_err(|()| format!("{url}: no response"))?
        .map_err(|e| explain(url, &e))?;
    let content_type = response
        .headers()
        .get("content-type")
        .first()
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    let status = response.status();
    let body = response.consume().map_err(|()| format!("{url}: no body"))?;
    let stream = body.stream().map_err(|()| format!("{url}: no body"))?;
    let mut bytes = Vec::new();
    let mut truncated = false;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                bytes.extend_from_slice(&chunk);
                if bytes.len() > max {
                    bytes.truncate(max);
                    truncated = true;
                    break;
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                let code = wasi::http::types::http_error_code(&e);
                return Err(match code {
                    Some(code) => explain(url, &code),
                    None => format!(
                        "{url}: reading the response failed: {}",
                        e.to_debug_string()
                    ),
                });
            }
        }
    }
    Ok(Response {
        status,
        content_type,
        body: bytes,
        truncated,
    })
}

fn explain(url: &str, error: &ErrorCode) -> String {
    match error {
        ErrorCode::HttpRequestDenied => format!(
            "{url}: refused by the sandbox (HttpRequestDenied): this plugin may only reach the hosts its operator granted in allow_hosts"
        ),
        ErrorCode::HttpResponseBodySize(_) => {
            format!(
                "{url}: the response is larger than this plugin may read (HttpResponseBodySize)"
            )
        }
        other => format!("{url}: {other:?}"),
    }
}

/// Reduces HTML to its text: drops scripts, styles and tags, decodes the
/// common entities and collapses blank space.
fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&rest[..open]);
        let tag = &rest[open..];
        let lower = tag.get(..8).unwrap_or(tag).to_ascii_lowercase();
        let skip_to = if lower.starts_with("<script") {
            "</script>"
        } else if lower.starts_with("<style") {
            "</style>"
        } else {
            ">"
        };
        match tag.to_ascii_lowercase().find(skip_to) {
            Some(end) => {
                out.push(' ');
                rest = &tag[end + skip_to.len()..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let lines: Vec<String> = decoded
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .collect();
    lines.join("\n")
}

moat_plugin::plugin![
    Tool::new(
        "get",
        "Fetches a URL (HTTP GET) and returns its text.",
        fetch
    )
    .read_only()
    .open_world(),
];
