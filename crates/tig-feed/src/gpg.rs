//! GPG feeds: signing and verifying through the `gpg` program, the way git does
//! (`gpg --status-fd=2 -bsau KEY` to sign, `gpg --status-fd=1 --verify SIG -` to check).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{FeedError, FeedId};

/// How to run `gpg`.
#[derive(Debug, Clone)]
pub struct Gpg {
    program: PathBuf,
}

impl Default for Gpg {
    fn default() -> Self {
        Gpg {
            program: PathBuf::from("gpg"),
        }
    }
}

/// The outcome of checking one OpenPGP signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpgCheck {
    /// Good signature made by this fingerprint (primary key's fingerprint).
    Good {
        /// Fingerprint of the key that signed (the subkey, if one was used).
        signer: String,
        /// Fingerprint of the primary key.
        primary: String,
    },
    /// The signature does not match the payload.
    Bad,
    /// The signature cannot be checked (e.g. the key is not in the keyring).
    Unchecked(String),
}

impl Gpg {
    /// Uses `program` instead of `gpg` (git's `gpg.program`).
    pub fn with_program(program: impl Into<PathBuf>) -> Gpg {
        Gpg {
            program: program.into(),
        }
    }

    /// The program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.program);
        c.env("LC_ALL", "C");
        c
    }

    /// The 40-hex fingerprint of the primary key `key_id` names (a fingerprint,
    /// key id, or user id), as `gpg --with-colons --list-keys` reports it.
    pub fn fingerprint(&self, key_id: &str) -> Result<String, FeedError> {
        let out = self
            .command()
            .args([
                "--batch",
                "--with-colons",
                "--fingerprint",
                "--list-keys",
                "--",
            ])
            .arg(key_id)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| FeedError::Gpg(format!("run {}: {e}", self.program.display())))?;
        if !out.status.success() {
            return Err(FeedError::NotFound(format!("gpg key {key_id:?}")));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut after_pub = false;
        let mut found = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            match f.first() {
                Some(&"pub") => after_pub = true,
                Some(&"fpr") if after_pub => {
                    if let Some(fpr) = f.get(9) {
                        found.push(fpr.to_string());
                    }
                    after_pub = false;
                }
                _ => {}
            }
        }
        match found.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(FeedError::NotFound(format!("gpg key {key_id:?}"))),
            _ => Err(FeedError::Gpg(format!(
                "{key_id:?} names {} keys; give the fingerprint",
                found.len()
            ))),
        }
    }

    /// Makes a detached armored signature of `payload` with `key_id`, exactly as git
    /// does for `commit --gpg-sign`.
    pub fn sign(&self, key_id: &str, payload: &[u8]) -> Result<String, FeedError> {
        let mut child = self
            .command()
            .args(["--status-fd=2", "-bsau", key_id])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| FeedError::Gpg(format!("run {}: {e}", self.program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(payload)
                .map_err(|e| FeedError::Gpg(format!("write payload: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| FeedError::Gpg(format!("wait: {e}")))?;
        let status = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !status.contains("[GNUPG:] SIG_CREATED ") {
            let reason = status
                .lines()
                .find(|l| !l.starts_with("[GNUPG:]") && !l.trim().is_empty())
                .unwrap_or("signing failed")
                .trim()
                .to_string();
            return Err(FeedError::Gpg(format!(
                "signing with {key_id:?} failed: {reason}"
            )));
        }
        String::from_utf8(out.stdout).map_err(|_| FeedError::Gpg("signature is not text".into()))
    }

    /// Checks a detached signature over `payload` through `gpg --verify`.
    pub fn verify(&self, signature: &str, payload: &[u8]) -> Result<GpgCheck, FeedError> {
        let mut file = tempfile::NamedTempFile::new()
            .map_err(|e| FeedError::io("create signature file", e))?;
        file.write_all(signature.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| FeedError::io("write signature file", e))?;
        let mut child = self
            .command()
            .args([
                "--batch",
                "--keyid-format=long",
                "--status-fd=1",
                "--verify",
            ])
            .arg(file.path())
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| FeedError::Gpg(format!("run {}: {e}", self.program.display())))?;
        if let Some(mut stdin) = child.stdin.take() {
            // gpg may exit early on a malformed signature: a broken pipe is not our error
            let _ = stdin.write_all(payload);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| FeedError::Gpg(format!("wait: {e}")))?;
        Ok(parse_status(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Reads gpg's `--status-fd` lines.
pub(crate) fn parse_status(status: &str) -> GpgCheck {
    let mut good = false;
    let mut valid: Option<(String, String)> = None;
    let mut bad = false;
    let mut problem = None;
    for line in status.lines() {
        let Some(rest) = line.strip_prefix("[GNUPG:] ") else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        match f[0] {
            "GOODSIG" => good = true,
            "BADSIG" => bad = true,
            "VALIDSIG" => {
                let signer = f.get(1).copied().unwrap_or_default().to_string();
                let primary = f.get(10).copied().unwrap_or(signer.as_str()).to_string();
                valid = Some((signer, primary));
            }
            "ERRSIG" | "NO_PUBKEY" => {
                problem = Some(if f[0] == "NO_PUBKEY" {
                    format!(
                        "no public key {} in the gpg keyring",
                        f.get(1).unwrap_or(&"?")
                    )
                } else {
                    "gpg cannot check the signature".to_string()
                })
            }
            "EXPKEYSIG" | "REVKEYSIG" => {
                problem = Some(format!("{} (key expired or revoked)", f[0]))
            }
            _ => {}
        }
    }
    if bad {
        return GpgCheck::Bad;
    }
    match (good, valid) {
        (true, Some((signer, primary))) => GpgCheck::Good { signer, primary },
        _ => GpgCheck::Unchecked(
            problem.unwrap_or_else(|| "gpg did not report a valid signature".into()),
        ),
    }
}

/// True if a good check was made by `feed`'s key (primary or signing subkey).
pub(crate) fn made_by(check: &GpgCheck, feed: &FeedId) -> bool {
    match check {
        GpgCheck::Good { signer, primary } => feed.matches(primary) || feed.matches(signer),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_lines() {
        let ok = "[GNUPG:] NEWSIG\n[GNUPG:] GOODSIG D87953FAD4BB4EC4 bob\n[GNUPG:] VALIDSIG AAAA 2020-07-18 1595000000 0 4 0 22 10 00 CE44B3CFC4C68B868A7AE868D87953FAD4BB4EC4\n";
        let c = parse_status(ok);
        assert_eq!(
            c,
            GpgCheck::Good {
                signer: "AAAA".into(),
                primary: "CE44B3CFC4C68B868A7AE868D87953FAD4BB4EC4".into()
            }
        );
        let id = FeedId::parse("ce44b3cfc4c68b868a7ae868d87953fad4bb4ec4").unwrap();
        assert!(made_by(&c, &id));
        assert_eq!(parse_status("[GNUPG:] BADSIG X bob\n"), GpgCheck::Bad);
        assert!(matches!(
            parse_status("[GNUPG:] ERRSIG X 22 10 00 1 9\n[GNUPG:] NO_PUBKEY X\n"),
            GpgCheck::Unchecked(_)
        ));
    }
}
