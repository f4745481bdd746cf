//! Certificates for TLS tests, made with `openssl` as an operator would: two CAs (`ca` and
//! `other-ca`) and leaf certificates for 127.0.0.1 and localhost, good for servers and clients,
//! signed by `ca`. The directory goes when the value is dropped.

use super::*;

pub struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    /// The two CAs, in a scratch directory named after `name`.
    pub fn make(name: &str) -> Self {
        let dir = scratch_dir(&format!("certs-{name}"));
        let certs = Self { dir };
        for ca in ["ca", "other-ca"] {
            let (subject, key, cert) = (
                format!("/CN={ca}"),
                format!("{ca}.key"),
                format!("{ca}.crt"),
            );
            certs.openssl(&[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject,
                "-keyout", &key, "-out", &cert,
            ]);
        }
        std::fs::write(
            certs.dir.join("ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("write ext");
        certs
    }

    /// `<leaf>.crt` and `<leaf>.key`, signed by `ca` (a new serial each time).
    pub fn issue(&self, leaf: &str) {
        self.issue_by(leaf, "ca");
    }

    /// `<leaf>.crt` and `<leaf>.key`, signed by the CA `ca` (`ca` or `other-ca`).
    pub fn issue_by(&self, leaf: &str, ca: &str) {
        let (subject, key, csr, cert) = (
            format!("/CN={leaf}"),
            format!("{leaf}.key"),
            format!("{leaf}.csr"),
            format!("{leaf}.crt"),
        );
        self.openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", &subject, "-keyout", &key, "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            &cert,
        ]);
    }

    /// The path of `file` in the directory.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
