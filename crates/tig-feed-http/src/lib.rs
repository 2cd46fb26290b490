//! The feed relay over HTTP: [`HttpTransport`] implements
//! [`tig_feed::sync::relay::Transport`] on a [`tig_client::Client`], and
//! [`RelayUrl`] parses `tig+http(s)://HOST:PORT[/PREFIX]/NAME`.
//!
//! This crate is the only place where feeds meet HTTP: tig-feed keeps the
//! protocol (and has no HTTP), tig-client moves verified bytes (and knows no
//! git). A channel `NAME` is the key-value slot `tig-feed/NAME` holding the
//! head list; bundles are content-addressed objects, chunked (a burst list)
//! when larger than the server's body limit.

use std::io::Read;
use std::path::Path;

use tig_client::Client;
use tig_feed::sync::relay::{self, Line, Stored, Transport, TransportError};

/// Largest burst list read while checking that a chunked bundle is still whole.
const BURST_LIST_MAX: u64 = 16 << 20;

/// A relay URL that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?}: {why} ({USAGE})")]
pub struct BadRelayUrl {
    /// The URL as given.
    pub input: String,
    /// What is wrong with it.
    pub why: String,
}

const USAGE: &str = "expected tig+http://HOST:PORT/NAME with NAME of 1-100 characters [A-Za-z0-9._-], \
                     not starting with '.' or ending in '.' or '.lock', without '..'";

/// A parsed `tig+http(s)://HOST:PORT[/PREFIX]/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrl {
    /// The server's base URL (`http://HOST:PORT[/PREFIX]`).
    pub server: String,
    /// The channel name.
    pub channel: String,
}

impl RelayUrl {
    /// Parses a relay URL as typed on the command line.
    pub fn parse(s: &str) -> Result<RelayUrl, BadRelayUrl> {
        let bad = |why: String| BadRelayUrl {
            input: s.to_string(),
            why,
        };
        let rest = s
            .strip_prefix("tig+")
            .ok_or_else(|| bad("not a relay URL".into()))?;
        let url = url::Url::parse(rest).map_err(|e| bad(format!("not a relay URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("not a relay URL".into()));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("a relay URL has no query or fragment".into()));
        }
        // `url` reads `http:///h/x` as host `h`; a relay URL names its host at once
        let after_scheme = &rest[url.scheme().len()..];
        if url.host_str().is_none_or(str::is_empty) || after_scheme.starts_with(":///") {
            return Err(bad("no server host".into()));
        }
        // the channel is the last path segment, as typed (`url` has already
        // resolved `.`/`..` segments and percent-encoded what needs it)
        let whole = url.as_str();
        let (server, channel) = whole
            .rsplit_once('/')
            .filter(|(server, _)| server.len() > url.scheme().len() + 2)
            .ok_or_else(|| bad("no channel name".into()))?;
        if !relay::valid_channel(channel) || !rest.ends_with(channel) {
            return Err(bad(format!("bad channel name {channel:?}")));
        }
        let server =
            tig_client::normalize_server(server).map_err(|e| bad(format!("bad server: {e}")))?;
        Ok(RelayUrl {
            server,
            channel: channel.to_string(),
        })
    }

    /// The key whose slot holds the channel's head list.
    pub fn key(&self) -> String {
        relay::channel_key(&self.channel)
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tig+{}/{}", self.server, self.channel)
    }
}

/// A relay channel reached through a tig server.
#[derive(Debug)]
pub struct HttpTransport {
    client: Client,
    url: RelayUrl,
}

impl HttpTransport {
    /// The channel `url` through `client` (made for `url.server`).
    pub fn new(client: Client, url: RelayUrl) -> HttpTransport {
        HttpTransport { client, url }
    }
}

fn other(e: tig_client::Error) -> TransportError {
    match e {
        tig_client::Error::NotFound { .. } => TransportError::NotFound,
        e => TransportError::Other(Box::new(e)),
    }
}

impl Transport for HttpTransport {
    fn channel(&self) -> &str {
        &self.url.channel
    }

    fn location(&self) -> String {
        self.url.to_string()
    }

    fn get_list(&self, max: u64) -> Result<Option<Vec<u8>>, TransportError> {
        let slot = tig_client::slot_id(self.url.key().as_bytes());
        let resp = match self.client.get(&slot, true) {
            Ok(r) => r,
            Err(tig_client::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(other(e)),
        };
        let mut bytes = Vec::new();
        resp.take(max.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| TransportError::Other(Box::new(e)))?;
        Ok(Some(bytes))
    }

    fn get_bundle(&self, line: &Line, dest: &Path, max: u64) -> Result<(), TransportError> {
        match self
            .client
            .fetch_to_path_max(&line.id, line.burst, dest, max)
        {
            Ok(_) => Ok(()),
            Err(
                e @ tig_client::Error::TooLarge {
                    limit: tig_client::Limit::Max(_),
                    ..
                },
            ) => Err(TransportError::OverLimit(Box::new(e))),
            Err(e) => Err(other(e)),
        }
    }

    /// Every request refreshes the object's retention timer, so a live chain
    /// stays alive.
    fn has_bundle(&self, line: &Line) -> Result<bool, TransportError> {
        let absent = |r: Result<Option<u64>, tig_client::Error>| r.map(|n| n.is_none());
        if absent(self.client.head(&line.id)).map_err(other)? {
            return Ok(false);
        }
        if !line.burst {
            return Ok(true);
        }
        let list = match self.client.fetch_bytes(&line.id, BURST_LIST_MAX) {
            Ok(l) => l,
            Err(tig_client::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(other(e)),
        };
        let members = tig_client::chunk::decode_burst(&list).map_err(other)?;
        for member in members {
            if absent(self.client.head(&member)).map_err(other)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn put_bundle(&self, file: &Path) -> Result<Stored, TransportError> {
        let put = self.client.put_file(file, false).map_err(other)?;
        Ok(Stored {
            id: put.id,
            burst: put.burst,
            chunks: put.chunks,
        })
    }

    fn append_line(&self, line: &str) -> Result<(), TransportError> {
        self.client
            .kv_append(self.url.key().as_bytes(), line.as_bytes().to_vec().into())
            .map_err(other)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may unwrap
    use super::*;

    #[test]
    fn urls() {
        let u = RelayUrl::parse("tig+http://127.0.0.1:7777/alice").unwrap();
        assert_eq!(u.server, "http://127.0.0.1:7777");
        assert_eq!(u.channel, "alice");
        assert_eq!(u.to_string(), "tig+http://127.0.0.1:7777/alice");
        assert_eq!(u.key(), "tig-feed/alice");
        let u = RelayUrl::parse("tig+https://relay.example/tig/a.b_c-1").unwrap();
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
            assert!(RelayUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(RelayUrl::parse(&format!("tig+http://h/{}", "a".repeat(101))).is_err());
        assert!(RelayUrl::parse("tig+ftp://h/x").is_err());
        assert!(RelayUrl::parse("tig+http:///h/alice").is_err());
        assert!(RelayUrl::parse("tig+http://h/a%2e%2eb").is_err());
        let u = RelayUrl::parse("tig+http://user@h:7777/p/alice").unwrap();
        assert_eq!(u.server, "http://user@h:7777/p");
    }
}
