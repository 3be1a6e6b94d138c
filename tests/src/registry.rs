//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution
//! registry) on an ephemeral loopback port, storing into a test folder, and
//! pushes to it through the registry's own HTTP API, as `oras` and `wkg`
//! push. Killed on drop.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Media types of a WebAssembly OCI artifact (the CNCF layout `wkg` uses).
pub const WASM_CONFIG: &str = "application/vnd.wasm.config.v0+json";
/// The component layer's media type.
pub const WASM_LAYER: &str = "application/wasm";

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    config: PathBuf,
    /// Its storage folder.
    root: PathBuf,
    /// `127.0.0.1:<port>`, as references name it.
    pub addr: String,
    http: reqwest::Client,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Registry {
    /// Starts one with its storage in `dir`.
    pub fn start(dir: &Path) -> Registry {
        let root = dir.join("registry");
        std::fs::create_dir_all(&root).unwrap();
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                root.display()
            ),
        )
        .unwrap();
        let mut registry = Registry {
            child: None,
            config,
            root,
            addr,
            http: reqwest::Client::new(),
        };
        registry.restart();
        registry
    }

    /// Stops it and starts it again over TLS with `ca`'s certificate,
    /// refusing pulls without the basic-auth credentials `user`,
    /// `password` (an htpasswd file with a bcrypt hash, as the registry
    /// takes them); its storage is kept.
    pub fn secure(&mut self, ca: &crate::nginx::TestCa, user: &str, password: &str) {
        self.stop();
        let dir = self.config.parent().unwrap();
        let htpasswd = dir.join("htpasswd");
        let hash = bcrypt::hash_with_result(password, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoA);
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\nauth:\n  htpasswd:\n    realm: moat-test\n    path: {}\n",
            ca.cert_pem.display(),
            ca.key_pem.display(),
            htpasswd.display()
        ));
        std::fs::write(&self.config, config).unwrap();
        self.restart();
    }

    /// Starts it again after [`Registry::stop`], with the same storage.
    pub fn restart(&mut self) {
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry (Debian: apt-get install docker-registry)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it now (an outage): connections are refused from here on.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(std::net::TcpStream::connect(&self.addr).is_err());
    }

    /// Uploads `bytes` as a blob of `repo`; returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = digest(bytes);
        let started = self
            .http
            .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 202, "{:?}", started.text().await);
        let location = started.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("http://{}{location}", self.addr)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{:?}", put.text().await);
        digest
    }

    /// Puts `manifest` at `reference` (a tag) of `repo`; returns its digest.
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &serde_json::Value,
    ) -> String {
        let body = serde_json::to_vec(manifest).unwrap();
        let put = self
            .http
            .put(format!(
                "http://{}/v2/{repo}/manifests/{reference}",
                self.addr
            ))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{:?}", put.text().await);
        digest(&body)
    }

    /// Deletes the manifest `digest` of `repo` (and so every tag on it).
    pub async fn delete_manifest(&self, repo: &str, digest: &str) {
        let deleted = self
            .http
            .delete(format!("http://{}/v2/{repo}/manifests/{digest}", self.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 202, "{:?}", deleted.text().await);
    }

    /// Pushes `wasm` as a WebAssembly artifact tagged `tag`; returns the
    /// manifest digest.
    pub async fn push_wasm(&self, repo: &str, tag: &str, wasm: &[u8]) -> String {
        let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
        let config_digest = self.push_blob(repo, config).await;
        let layer = self.push_blob(repo, wasm).await;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": WASM_CONFIG,
            "config": {"mediaType": WASM_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": WASM_LAYER, "digest": layer, "size": wasm.len()}],
        });
        self.push_manifest(repo, tag, &manifest).await
    }

    /// Attaches `signature` (a .minisig's text) to the manifest `digest`
    /// of `repo`, at cosign's tag `sha256-<hex>.sig`.
    pub async fn push_signature(&self, repo: &str, manifest: &str, signature: &str) {
        let empty = b"{}";
        let config_digest = self.push_blob(repo, empty).await;
        let layer = self.push_blob(repo, signature.as_bytes()).await;
        let manifest_json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": "application/vnd.minisign.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config_digest, "size": empty.len()},
            "layers": [{"mediaType": "application/vnd.minisign.signature", "digest": layer, "size": signature.len()}],
        });
        let tag = format!("{}.sig", manifest.replace(':', "-"));
        self.push_manifest(repo, &tag, &manifest_json).await;
    }

    /// The file the registry serves the blob `digest` from (to alter it
    /// behind the registry's back, as a compromised store would).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
