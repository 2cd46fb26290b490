//! The relay's transport: its flags (clap, with their environment variables),
//! the HTTP client over `tig-client`, the channel URL, reading the head list
//! and checking that a bundle is still whole on the server.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, bail};
use tig_client::{Client, Config};
use tig_feed::sync::relay::{self, Line};

/// Largest head list a pull or push reads.
const LIST_MAX: u64 = 16 << 20;
/// Largest burst list read while checking that a chunked bundle is still whole.
const BURST_LIST_MAX: u64 = 16 << 20;

/// Settings of a relay pull or push (`tig feed pull/push tig+http://…`),
/// through clap like every other command, so `--help` shows them.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Relay channel options (tig+http://HOST:PORT/NAME)")]
pub struct RelayArgs {
    /// A file holding the relay server's API key (trailing newlines trimmed);
    /// else the key in TIG_APIKEY. Publishing needs it when the server has one.
    #[arg(long, value_name = "PATH")]
    apikey_file: Option<PathBuf>,
    /// The relay server's API key (prefer --apikey-file: a flag shows in `ps`).
    #[arg(long, env = "TIG_APIKEY", hide_env_values = true, value_name = "KEY")]
    apikey: Option<String>,
    /// The relay server's body limit (its --max-size): a larger bundle is
    /// uploaded in chunks below it [default: 128MiB].
    #[arg(long, env = "TIG_MAX_SIZE", value_name = "SIZE")]
    max_size: Option<String>,
    /// Give up when the relay sends nothing for this many seconds (0: never).
    #[arg(
        long,
        env = "TIG_IDLE_TIMEOUT",
        value_name = "SECS",
        default_value = "60"
    )]
    idle_timeout: String,
    /// Largest bundle a pull downloads.
    #[arg(
        long,
        env = "TIG_MAX_BUNDLE",
        value_name = "SIZE",
        default_value = "4GiB"
    )]
    max_bundle: String,
}

// Sizes and seconds are read here rather than by clap so that a bad value is
// the usual one `tig: …` line (exit 1) naming both the flag and the variable.
impl RelayArgs {
    fn max_size(&self) -> anyhow::Result<Option<u64>> {
        self.max_size
            .as_deref()
            .map(|s| tig_client::parse_size(s).context("--max-size / TIG_MAX_SIZE"))
            .transpose()
    }

    fn idle_timeout(&self) -> anyhow::Result<u64> {
        let s = &self.idle_timeout;
        s.trim().parse::<u64>().map_err(|_| {
            anyhow::anyhow!(
                "--idle-timeout / TIG_IDLE_TIMEOUT {s:?}: expected whole seconds (0 for none)"
            )
        })
    }

    pub(super) fn max_bundle(&self) -> anyhow::Result<u64> {
        tig_client::parse_size(&self.max_bundle).context("--max-bundle / TIG_MAX_BUNDLE")
    }
}

/// A parsed `tig+http(s)://HOST:PORT[/PREFIX]/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RelayUrl {
    /// The server's base URL (`http://HOST:PORT[/PREFIX]`).
    pub(super) server: String,
    /// The channel name.
    pub(super) channel: String,
}

impl RelayUrl {
    /// The key whose slot holds the channel's head list.
    pub(super) fn key(&self) -> String {
        format!("tig-feed/{}", self.channel)
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tig+{}/{}", self.server, self.channel)
    }
}

/// Whether `name` can be a channel: 1-100 characters `[A-Za-z0-9._-]` that are
/// also a valid git remote name (no leading `.`, no `..`, no trailing `.lock`
/// or `.`), since a pull's default `--as` name is the channel: push and pull
/// must agree on what they accept.
fn valid_channel(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && valid_source_name(name)
}

/// Whether `name` works as a pull's `--as NAME` (`refs/remotes/NAME/<feed>`),
/// by the same rule as the bundle pull, checked before anything is downloaded.
pub(super) fn valid_source_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && !name.ends_with('.')
        && git2::Reference::is_valid_name(&format!("refs/remotes/{name}/x"))
}

pub(super) fn parse_url(s: &str) -> anyhow::Result<RelayUrl> {
    let usage = "expected tig+http://HOST:PORT/NAME with NAME of 1-100 characters [A-Za-z0-9._-], \
                 not starting with '.' or ending in '.' or '.lock', without '..'";
    let rest = s
        .strip_prefix("tig+")
        .filter(|r| r.starts_with("http://") || r.starts_with("https://"))
        .with_context(|| format!("{s:?}: not a relay URL ({usage})"))?;
    if rest.contains(['?', '#']) {
        bail!("{s:?}: a relay URL has no query or fragment ({usage})");
    }
    let (scheme, after) = rest.split_once("://").unwrap_or((rest, ""));
    let Some((host_path, channel)) = after.rsplit_once('/') else {
        bail!("{s:?}: no channel name ({usage})");
    };
    if host_path.is_empty() || host_path.starts_with('/') {
        bail!("{s:?}: no server host ({usage})");
    }
    if !valid_channel(channel) {
        bail!("{s:?}: bad channel name {channel:?} ({usage})");
    }
    let server = tig_client::normalize_server(&format!("{scheme}://{host_path}"))
        .with_context(|| format!("{s:?}: bad server ({usage})"))?;
    Ok(RelayUrl {
        server,
        channel: channel.to_string(),
    })
}

/// A client for the relay, from the relay flags (and their environment variables).
pub(super) fn connect(url: &RelayUrl, args: &RelayArgs) -> anyhow::Result<Client> {
    let mut cfg = Config::new(&url.server)?;
    cfg.apikey = match &args.apikey_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API key from {}", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        }
        None => args.apikey.clone().filter(|k| !k.is_empty()),
    };
    if let Some(max) = args.max_size()? {
        cfg.max_size = Some(max);
    }
    let idle = args.idle_timeout()?;
    cfg.idle_timeout = (idle > 0).then(|| std::time::Duration::from_secs(idle));
    cfg.progress = std::io::stderr().is_terminal();
    Ok(Client::new(cfg)?)
}

/// Reads the channel's head list; `None` when the channel does not exist (no
/// push ever made its slot).
pub(super) fn read_list(client: &Client, url: &RelayUrl) -> anyhow::Result<Option<Vec<Line>>> {
    let slot = tig_client::slot_id(url.key().as_bytes());
    let resp = match client.get(&slot, true) {
        Ok(r) => r,
        Err(tig_client::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading relay channel {url}")),
    };
    let mut bytes = Vec::new();
    resp.take(LIST_MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading relay channel {url}"))?;
    if bytes.len() as u64 > LIST_MAX {
        bail!(
            "relay channel {url}: the head list is over {} MiB; refusing it",
            LIST_MAX >> 20
        );
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| anyhow::anyhow!("relay channel {url}: the head list is not UTF-8 text"))?;
    let lines = relay::parse_list(text).map_err(|e| anyhow::anyhow!("relay channel {url}: {e}"))?;
    Ok(Some(lines))
}

/// Whether the relay still has the whole bundle of `line`. Every request
/// refreshes the object's retention timer, so a live chain stays alive.
pub(super) fn bundle_alive(client: &Client, line: &Line) -> anyhow::Result<bool> {
    if client.head(&line.id)?.is_none() {
        return Ok(false);
    }
    if !line.burst {
        return Ok(true);
    }
    let list = match client.fetch_bytes(&line.id, BURST_LIST_MAX) {
        Ok(l) => l,
        Err(tig_client::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    for member in tig_client::chunk::decode_burst(&list)? {
        if client.head(&member)?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("tig+http://127.0.0.1:7777/alice").unwrap();
        assert_eq!(u.server, "http://127.0.0.1:7777");
        assert_eq!(u.channel, "alice");
        assert_eq!(u.to_string(), "tig+http://127.0.0.1:7777/alice");
        assert_eq!(u.key(), "tig-feed/alice");
        let u = parse_url("tig+https://relay.example/tig/a.b_c-1").unwrap();
        assert_eq!(u.server, "https://relay.example/tig");
        assert_eq!(u.channel, "a.b_c-1");
        for bad in [
            "tig+http://127.0.0.1:7777",
            "tig+http://127.0.0.1:7777/",
            "tig+http:///alice",
            "tig+ftp://h/alice",
            "tig+http://h/al ice",
            "tig+http://h/alice?x=1",
            "tig+http://h/alice#x",
            "tig+http://h/a/",
            "http://h/alice",
            "tig+http://h/.hidden",
            "tig+http://h/a..b",
            "tig+http://h/x.lock",
            "tig+http://h/x.",
            "tig+http://h/.",
            "tig+http://h/..",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert!(parse_url(&format!("tig+http://h/{}", "a".repeat(101))).is_err());
        assert!(parse_url("tig+ftp://h/x").is_err());
    }
}
