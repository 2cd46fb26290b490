//! TLS with rustls: a self-signed certificate made by the `openssl` binary, the
//! flags and their env vars, HTTPS through reqwest and curl, and bad certificates.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

struct Cert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

/// A self-signed certificate for 127.0.0.1/localhost; `None` without `openssl`.
fn self_signed(kind: &str) -> Option<Cert> {
    let dir = tempfile::tempdir().expect("tmp");
    let cert = dir.path().join("tig.crt");
    let key = dir.path().join("tig.key");
    let newkey: &[&str] = match kind {
        "ec" => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
        _ => &["-newkey", "rsa:2048"],
    };
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(newkey)
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        // A leaf, not a CA: webpki refuses a CA certificate used by a server.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match out {
        Ok(o) if o.status.success() => Some(Cert {
            _dir: dir,
            cert,
            key,
        }),
        Ok(o) => panic!("openssl failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            eprintln!("openssl not installed: skipping TLS test");
            None
        }
    }
}

fn https_client(cert: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(cert).expect("cert");
    reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn round_trip(s: &TigServer, cert: &Path) {
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let c = https_client(cert);
    let r = c
        .put(format!("{}/", s.url))
        .body("over tls")
        .send()
        .expect("https put");
    assert_eq!(r.status(), 200);
    let path = r.text().expect("t");
    assert_eq!(path, obj_path(b"over tls"));
    let r = c.get(format!("{}{path}", s.url)).send().expect("https get");
    assert_eq!(r.text().expect("t"), "over tls");
}

#[test]
fn tls_flags_serve_https() {
    for kind in ["ec", "rsa"] {
        let Some(cert) = self_signed(kind) else {
            return;
        };
        let s = TigServer::start_with(
            None,
            &[
                "--tls-cert",
                cert.cert.to_str().expect("utf8"),
                "--tls-key",
                cert.key.to_str().expect("utf8"),
            ],
            &[],
        );
        round_trip(&s, &cert.cert);
        // curl with the certificate as its CA, as a user would.
        let out = Command::new("curl")
            .args(["-s", "--noproxy", "*", "--cacert"])
            .arg(&cert.cert)
            .arg(format!("{}{}", s.url, obj_path(b"over tls")))
            .output()
            .expect("curl");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "over tls");
        // Plain HTTP on the TLS port gets no object.
        let plain = s.url.replacen("https://", "http://", 1);
        if let Ok(r) = http()
            .get(format!("{plain}{}", obj_path(b"over tls")))
            .send()
        {
            assert_ne!(r.status(), 200);
        }
        // A client that does not trust the certificate refuses it.
        assert!(http().get(format!("{}/", s.url)).send().is_err());
    }
}

#[test]
fn tls_from_env_vars() {
    let Some(cert) = self_signed("ec") else {
        return;
    };
    let s = TigServer::start_with(
        None,
        &[],
        &[
            ("TIG_TLS_CERT", cert.cert.to_str().expect("utf8")),
            ("TIG_TLS_KEY", cert.key.to_str().expect("utf8")),
        ],
    );
    round_trip(&s, &cert.cert);
}

#[test]
fn bad_certificate_is_a_startup_error() {
    let Some(cert) = self_signed("ec") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("w");
    let missing = dir.path().join("missing.pem");
    let cases = [
        (garbage.clone(), cert.key.clone()),
        (cert.cert.clone(), garbage.clone()),
        (missing.clone(), cert.key.clone()),
        // A key that does not match the certificate.
        (cert.cert.clone(), {
            let other = self_signed("ec").expect("openssl");
            let k = dir.path().join("other.key");
            std::fs::copy(&other.key, &k).expect("copy");
            k
        }),
    ];
    for (c, k) in cases {
        let failure = TigServer::try_start_with(
            None,
            &[
                "--tls-cert",
                c.to_str().expect("utf8"),
                "--tls-key",
                k.to_str().expect("utf8"),
            ],
            &[],
        )
        .err()
        .unwrap_or_else(|| panic!("started with cert {c:?} key {k:?}"));
        assert_eq!(failure.status.and_then(|s| s.code()), Some(1), "{failure}");
        let last = failure.stderr.lines().last().unwrap_or("").to_string();
        assert!(last.starts_with("tig: "), "{failure}");
    }
}
