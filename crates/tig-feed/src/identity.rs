//! Ed25519 identities kept as OpenSSH key files, and SSH signatures (SSHSIG,
//! namespace `git`, SHA-512) over commit payloads, as `git` with
//! `gpg.format=ssh` makes and checks them.

use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::Signer as _;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::{FeedError, FeedId};

/// The SSHSIG namespace git uses for commit signatures.
pub const GIT_NAMESPACE: &str = "git";

/// An ed25519 key pair that owns a feed.
#[derive(Clone)]
pub struct Identity {
    signing: ed25519_dalek::SigningKey,
    public: PublicKey,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("feed", &self.feed_id().to_string())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new random key pair (from the operating system's random source).
    pub fn generate() -> Identity {
        let mut seed = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
        Identity::from_seed(&seed)
    }

    /// The key pair for a 32-byte ed25519 seed (deterministic; for tests and fixtures).
    pub fn from_seed(seed: &[u8; 32]) -> Identity {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = public_key(&signing.verifying_key().to_bytes());
        Identity { signing, public }
    }

    /// Reads an unencrypted OpenSSH ed25519 private key (what `ssh-keygen -t ed25519
    /// -N ''` and [`Identity::write`] produce).
    pub fn load(path: &Path) -> Result<Identity, FeedError> {
        let key_err = |reason: String| FeedError::Key {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                FeedError::NotFound(format!("key file {}", path.display()))
            } else {
                key_err(e.to_string())
            }
        })?;
        let key = PrivateKey::from_openssh(text.trim_start())
            .map_err(|e| key_err(format!("not an OpenSSH private key ({e})")))?;
        if key.is_encrypted() {
            return Err(key_err(
                "passphrase-protected keys are not supported".into(),
            ));
        }
        let pair = key
            .key_data()
            .ed25519()
            .ok_or_else(|| key_err(format!("{} key, expected ed25519", key.algorithm())))?;
        let seed = pair.private.to_bytes();
        let id = Identity::from_seed(&seed);
        if id.signing.verifying_key().to_bytes() != pair.public.0 {
            return Err(key_err("public and private halves do not match".into()));
        }
        Ok(id)
    }

    /// Writes the key pair: `path` (private, OpenSSH format, mode 0600) and
    /// `path.pub`. Refuses to overwrite either file.
    pub fn write(&self, path: &Path) -> Result<PathBuf, FeedError> {
        let pub_path = pub_path(path);
        for p in [path, pub_path.as_path()] {
            if p.exists() {
                return Err(FeedError::AlreadyExists(format!(
                    "{} (refusing to overwrite a key)",
                    p.display()
                )));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| FeedError::io(format!("create {}", dir.display()), e))?;
        }
        let comment = format!("tig feed {}", self.feed_id());
        let pair = ssh_key::private::Ed25519Keypair::from_seed(&self.signing.to_bytes());
        let private = PrivateKey::new(ssh_key::private::KeypairData::Ed25519(pair), &comment)
            .and_then(|k| k.to_openssh(LineEnding::LF))
            .map_err(|e| FeedError::Key {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        write_new(path, private.as_bytes(), 0o600)?;
        let mut public = self.public.clone();
        public.set_comment(comment);
        let line = public.to_openssh().map_err(|e| FeedError::Key {
            path: pub_path.clone(),
            reason: e.to_string(),
        })?;
        write_new(&pub_path, format!("{line}\n").as_bytes(), 0o644)?;
        Ok(pub_path)
    }

    /// The feed this key owns.
    pub fn feed_id(&self) -> FeedId {
        FeedId::from_ed25519(&self.signing.verifying_key().to_bytes())
    }

    /// The public key in OpenSSH form (`ssh-ed25519 AAAA…`).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `payload` as git does with `gpg.format=ssh`: an armored SSHSIG,
    /// namespace `git`, SHA-512, LF line endings.
    pub fn sign(&self, payload: &[u8]) -> Result<String, FeedError> {
        let sign_err = |e: ssh_key::Error| FeedError::Key {
            path: PathBuf::new(),
            reason: format!("signing failed: {e}"),
        };
        let data =
            SshSig::signed_data(GIT_NAMESPACE, HashAlg::Sha512, payload).map_err(sign_err)?;
        let sig = self.signing.sign(&data);
        let sig = ssh_key::Signature::new(ssh_key::Algorithm::Ed25519, sig.to_bytes().to_vec())
            .map_err(sign_err)?;
        SshSig::new(
            self.public.key_data().clone(),
            GIT_NAMESPACE,
            HashAlg::Sha512,
            sig,
        )
        .and_then(|s| s.to_pem(LineEnding::LF))
        .map_err(sign_err)
    }
}

/// Reads the feed id out of a key file: a private key, or a `.pub` line.
pub fn read_feed_id(path: &Path) -> Result<FeedId, FeedError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FeedError::NotFound(format!("key file {}", path.display()))
        } else {
            FeedError::io(format!("read {}", path.display()), e)
        }
    })?;
    if text.trim_start().starts_with("ssh-") {
        let key = PublicKey::from_openssh(text.trim()).map_err(|e| FeedError::Key {
            path: path.to_path_buf(),
            reason: format!("not an OpenSSH public key ({e})"),
        })?;
        let ed = key.key_data().ed25519().ok_or_else(|| FeedError::Key {
            path: path.to_path_buf(),
            reason: format!("{} key, expected ed25519", key.algorithm()),
        })?;
        return Ok(FeedId::from_ed25519(&ed.0));
    }
    Ok(Identity::load(path)?.feed_id())
}

/// The OpenSSH public key (`ssh-ed25519 AAAA…`, no comment) of an ed25519 feed.
pub fn ssh_public_key(feed: &FeedId) -> Option<String> {
    let key = feed.ed25519_key()?;
    public_key(&key).to_openssh().ok()
}

fn public_key(bytes: &[u8; 32]) -> PublicKey {
    PublicKey::new(
        ssh_key::public::KeyData::Ed25519(ssh_key::public::Ed25519PublicKey(*bytes)),
        "",
    )
}

fn pub_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FeedError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let ctx = || format!("write {}", path.display());
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            FeedError::AlreadyExists(format!("{} (refusing to overwrite a key)", path.display()))
        } else {
            FeedError::io(ctx(), e)
        }
    })?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| FeedError::io(ctx(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/id");
        let id = Identity::generate();
        id.write(&path).unwrap();
        let back = Identity::load(&path).unwrap();
        assert_eq!(back.feed_id(), id.feed_id());
        assert_eq!(
            read_feed_id(&dir.path().join("sub/id.pub")).unwrap(),
            id.feed_id()
        );
        assert!(matches!(id.write(&path), Err(FeedError::AlreadyExists(_))));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn signature_verifies_with_ssh_key() {
        let id = Identity::from_seed(&[7; 32]);
        let pem = id.sign(b"payload").unwrap();
        assert!(pem.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
        let sig = SshSig::from_pem(&pem).unwrap();
        id.public_key()
            .verify(GIT_NAMESPACE, b"payload", &sig)
            .unwrap();
        assert!(
            id.public_key()
                .verify(GIT_NAMESPACE, b"payloaD", &sig)
                .is_err()
        );
    }
}
