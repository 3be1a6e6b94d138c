//! Plugins and signatures by URL.

use super::FetchError;
use super::store::{download, too_large};
use std::time::Duration;

/// How long a download may take in all.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The client of every download by URL: rustls with ring, `roots` (DER),
/// redirects followed only to https.
pub fn client(roots: &[Vec<u8>]) -> reqwest::Client {
    let roots = roots
        .iter()
        .filter_map(|der| reqwest::Certificate::from_der(der).ok());
    reqwest::Client::builder()
        .tls_certs_only(roots)
        .https_only(true)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .timeout(DOWNLOAD_TIMEOUT)
        .user_agent(concat!("moat/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with rustls and ring builds")
}

/// The bytes at `url`, which must hash to `sha256` and have at most
/// `limit` bytes.
pub async fn fetch(
    client: &reqwest::Client,
    url: &url::Url,
    sha256: &str,
    limit: u64,
) -> Result<Vec<u8>, FetchError> {
    let response = get(client, url).await?;
    let response = response.error_for_status().map_err(|e| {
        FetchError::new(
            format!("{url} answered {}", e.status().unwrap_or_default()),
            "check the URL",
        )
    })?;
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(too_large(url.as_str(), limit));
    }
    let size = response.content_length();
    download(response.bytes_stream(), size, limit, sha256, url.as_str()).await
}

/// The text at `url` (a signature), `None` when the server has none (404),
/// refused past `limit` bytes.
pub async fn text(
    client: &reqwest::Client,
    url: &url::Url,
    limit: u64,
) -> Result<Option<String>, FetchError> {
    let response = get(client, url).await?;
    if response.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    let mut response = response.error_for_status().map_err(|e| {
        FetchError::new(
            format!("{url} answered {}", e.status().unwrap_or_default()),
            "check the URL",
        )
    })?;
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        FetchError::new(format!("the download of {url} broke off: {e}"), "try again")
    })? {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::new(
                format!("{url} has more than {limit} bytes, more than a signature"),
                "point `signature` at the .minisig file",
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map(Some).map_err(|_| {
        FetchError::new(
            format!("{url} is not text"),
            "point `signature` at the .minisig file",
        )
    })
}

async fn get(client: &reqwest::Client, url: &url::Url) -> Result<reqwest::Response, FetchError> {
    client.get(url.clone()).send().await.map_err(|e| {
        FetchError::new(
            format!("cannot download {url}: {}", error_chain(&e)),
            "check the URL and the network (the first start needs it; later ones use the cache)",
        )
    })
}

/// An error with its causes, for messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
