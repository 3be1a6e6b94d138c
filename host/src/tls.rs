//! The TLS client every outbound connection of the host uses (plugins'
//! requests and the issuer's keys): rustls with ring and the webpki roots.
//! A leaf module, so that auth and the network capability share it
//! without importing each other.

use std::sync::{Arc, LazyLock};
use tokio::io::{AsyncRead, AsyncWrite};

/// TLS for every connection the host makes: rustls, ring, webpki roots.
pub static TLS: LazyLock<tokio_rustls::TlsConnector> = LazyLock::new(|| {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.into(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
});

/// A byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
