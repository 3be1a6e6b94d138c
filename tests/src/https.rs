//! A real HTTPS file server on an ephemeral loopback port, with a
//! certificate from a test CA: the web server a publisher puts release
//! files on. Its files can be changed while it serves.

use crate::nginx::TestCa;
use http_body_util::Full;
use hyper::body::Bytes;
use rustls::pki_types::pem::PemObject;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Paths and their bodies.
pub type Files = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// A running server; it stops when dropped.
pub struct HttpsFiles {
    /// `https://127.0.0.1:<port>`.
    pub base: String,
    /// What it serves, by path (such as `/hello.wasm`).
    pub files: Files,
    task: tokio::task::JoinHandle<()>,
}

impl HttpsFiles {
    /// Starts serving with `ca`'s server certificate.
    pub async fn start(ca: &TestCa) -> HttpsFiles {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&ca.cert_pem)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&ca.key_pem).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("https://{}", listener.local_addr().unwrap());
        let files: Files = Arc::default();
        let served = files.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, files) = (acceptor.clone(), served.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let body = files.lock().unwrap().get(req.uri().path()).cloned();
                            async move {
                                let response = match body {
                                    Some(body) => {
                                        hyper::Response::new(Full::new(Bytes::from(body)))
                                    }
                                    None => hyper::Response::builder()
                                        .status(404)
                                        .body(Full::new(Bytes::new()))
                                        .unwrap(),
                                };
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        HttpsFiles { base, files, task }
    }

    /// Serves `body` at `path`.
    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.files.lock().unwrap().insert(path.into(), body.into());
    }
}

impl Drop for HttpsFiles {
    fn drop(&mut self) {
        self.task.abort();
    }
}
