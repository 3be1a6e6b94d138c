//! `moat probe` and `moat reload`: one request over plain HTTP, for health
//! checks inside images that carry no HTTP client of their own, and for
//! the admin address.

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::process::ExitCode;
use std::time::Duration;

/// GETs `url` within `timeout`; exit code 0 on a 2xx answer, 1 otherwise
/// (the status is printed), 2 when nothing answers.
pub(super) async fn probe(url: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{url:?} is not a URL"))?;
    let (Some("http"), Some(_)) = (uri.scheme_str(), uri.authority()) else {
        bail!("{url:?}: probe takes an http:// URL (TLS is the proxy's, in front of Moat)");
    };
    let (status, _) = ask(http::Method::GET, &uri, timeout).await?;
    println!("{url}: {status}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Bytes of an answer kept: a reload's summary or error is short.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Sends `method` to `uri` within `timeout`: the status and the body (at
/// most [`MAX_ANSWER_BYTES`]).
async fn ask(
    method: http::Method,
    uri: &http::Uri,
    timeout: Duration,
) -> anyhow::Result<(http::StatusCode, String)> {
    let authority = uri.authority().cloned().context("the URL names no host")?;
    let ask = async {
        let tcp =
            tokio::net::TcpStream::connect((authority.host(), authority.port_u16().unwrap_or(80)))
                .await
                .with_context(|| format!("cannot connect to {authority}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .header(crate::transport::admin::RELOAD_HEADER, "1")
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, anyhow::Error>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("{uri}: no answer within {} ms", timeout.as_millis()))?
}

/// `[admin] listen` of the config at `path`.
fn admin_listen(path: &std::path::Path) -> anyhow::Result<std::net::SocketAddr> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", path.display()))?;
    let listen = table
        .get("admin")
        .and_then(|a| a.get("listen"))
        .and_then(|l| l.as_str())
        .with_context(|| {
            format!(
                "{} has no [admin] listen; give the address with --admin",
                path.display()
            )
        })?;
    listen
        .parse()
        .with_context(|| format!("[admin] listen = {listen:?} is not an address"))
}

/// `moat reload`: POSTs `/reload` to the admin address; exit 0 when the
/// server reloaded, 1 when it kept its plugins (the reason is printed),
/// 2 when it could not be asked.
pub(super) async fn reload(
    admin: Option<std::net::SocketAddr>,
    config: Option<&std::path::Path>,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let addr = match (admin, config) {
        (Some(addr), _) => addr,
        // Only the address is read: the file may hold an edit the server
        // is about to be asked to load, with mistakes the server reports.
        (None, Some(path)) => admin_listen(path)?,
        (None, None) => bail!(
            "give the running server's admin address with --admin (or --config with [admin] listen)"
        ),
    };
    let uri: http::Uri = format!("http://{addr}/reload").parse()?;
    let (status, body) = ask(http::Method::POST, &uri, timeout).await?;
    println!("{}", body.trim_end());
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
