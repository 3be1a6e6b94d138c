//! A real nginx (Debian's package) on an ephemeral loopback port in front
//! of Moat replicas, as deployments run it: TLS from a test CA terminated
//! at nginx, round-robin over the replicas, the client described in
//! `X-Forwarded-*`. Killed on drop.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A certificate authority made for one test, and a server certificate
/// it signed for `localhost` and `127.0.0.1`.
pub struct TestCa {
    /// The CA's certificate (PEM), for clients to trust.
    pub ca_pem: PathBuf,
    /// The server's certificate (PEM).
    pub cert_pem: PathBuf,
    /// The server's private key (PEM).
    pub key_pem: PathBuf,
}

impl TestCa {
    /// Writes the three files into `dir`.
    pub fn new(dir: &Path) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Moat test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let files = TestCa {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server.key"),
        };
        std::fs::write(&files.ca_pem, ca.pem()).unwrap();
        std::fs::write(&files.cert_pem, server.pem()).unwrap();
        std::fs::write(&files.key_pem, key.serialize_pem()).unwrap();
        files
    }
}

/// A running nginx.
pub struct Nginx {
    child: Child,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Starts nginx on `port` (from [`crate::free_port`]) with its files
    /// in `dir`, proxying to `upstreams` (`127.0.0.1:<port>` each); over
    /// TLS with `tls`'s certificate when given.
    pub fn start(dir: &Path, port: u16, upstreams: &[String], tls: Option<&TestCa>) -> Nginx {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=2s;\n"))
            .collect();
        let listen = match tls {
            Some(ca) => format!(
                "listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};",
                ca.cert_pem.display(),
                ca.key_pem.display()
            ),
            None => format!("listen 127.0.0.1:{port};"),
        };
        // The proxy block is deploy/nginx/moat.conf's, with paths of its own.
        let config = format!(
            r#"daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log {d}/access.log;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream moat {{
{servers}    keepalive 16;
  }}
  server {{
    {listen}
    location / {{
{proxy}
    }}
  }}
}}
"#,
            d = dir.display(),
            proxy = proxy_block(),
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap())
            .spawn()
            .expect("starting nginx (Debian: apt-get install nginx)");
        let mut nginx = Nginx { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", nginx.log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen on {port}:\n{}",
                nginx.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// What nginx logged.
    pub fn log(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- nginx log ---\n{}", self.log());
        }
    }
}

/// The `location` body of the example in deploy/nginx/moat.conf, so the
/// tests run the configuration operators are told to use.
fn proxy_block() -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/moat.conf"),
    )
    .unwrap();
    let start = example
        .find("# BEGIN proxy")
        .expect("deploy/nginx/moat.conf marks its proxy block");
    let end = example.find("# END proxy").unwrap();
    example[start..end]
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// nginx's binary: on PATH, or where Debian puts it (/usr/sbin is not on
/// every user's PATH).
fn nginx_bin() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
        .expect("nginx is not installed (Debian: apt-get install nginx)")
}
