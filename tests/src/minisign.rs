//! Publishers' keys and signatures made with Debian's `minisign`, as a
//! publisher would make them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A minisign key pair without a password.
pub struct Key {
    /// The public key, as `minisign -G` prints it (the .pub's second line).
    pub public: String,
    secret: PathBuf,
}

impl Key {
    /// Makes `<dir>/<name>.key` and `<dir>/<name>.pub`.
    pub fn generate(dir: &Path, name: &str) -> Key {
        let public = dir.join(format!("{name}.pub"));
        let secret = dir.join(format!("{name}.key"));
        let out = Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(&public)
            .arg("-s")
            .arg(&secret)
            .output()
            .expect("running minisign (Debian: apt-get install minisign)");
        assert!(out.status.success(), "minisign -G: {out:?}");
        let text = std::fs::read_to_string(&public).unwrap();
        Key {
            public: text.lines().nth(1).unwrap().to_string(),
            secret,
        }
    }

    /// Signs `file` into `<file>.minisig` and returns the signature.
    pub fn sign(&self, file: &Path) -> String {
        let mut sig = file.as_os_str().to_owned();
        sig.push(".minisig");
        let out = Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&self.secret)
            .arg("-m")
            .arg(file)
            .arg("-x")
            .arg(&sig)
            .output()
            .expect("running minisign");
        assert!(out.status.success(), "minisign -S: {out:?}");
        std::fs::read_to_string(sig).unwrap()
    }
}
