//! `moat probe`: one GET over plain HTTP, for health checks inside images
//! that carry no HTTP client of their own.

use anyhow::{Context, bail};
use http_body_util::Empty;
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
    let (Some("http"), Some(authority)) = (uri.scheme_str(), uri.authority().cloned()) else {
        bail!("{url:?}: probe takes an http:// URL (TLS is the proxy's, in front of Moat)");
    };
    let ask = async {
        let tcp =
            tokio::net::TcpStream::connect((authority.host(), authority.port_u16().unwrap_or(80)))
                .await
                .with_context(|| format!("cannot connect to {authority}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        let request = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())?;
        Ok::<_, anyhow::Error>(sender.send_request(request).await?.status())
    };
    let status = tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no answer within {} ms", timeout.as_millis()))??;
    println!("{url}: {status}");
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
