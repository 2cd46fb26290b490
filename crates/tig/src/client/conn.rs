//! The connection flags every client command shares, the client they make,
//! and the summary line on stderr.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use tig_client::{Client, Config, human, parse_size};

/// Connection flags shared by every client command.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// The tig server's base URL.
    #[arg(
        long,
        env = "TIG_SERVER",
        default_value = "http://127.0.0.1:7777",
        global = true
    )]
    server: String,
    /// A file holding the API key (trailing newlines trimmed); else env TIG_APIKEY.
    #[arg(long, value_name = "PATH", global = true)]
    apikey_file: Option<PathBuf>,
    /// Override the server's body limit (by default tig asks the server, which
    /// states it in `Tig-Max-Size`): no request body tig sends exceeds it.
    #[arg(long, env = "TIG_MAX_SIZE", value_name = "SIZE", value_parser = size_arg, global = true)]
    max_size: Option<u64>,
    /// Requests in flight at once.
    #[arg(long, short = 'j', default_value_t = 4, global = true)]
    jobs: usize,
}

fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// The upload half of a summary line, shared by `put` and `snapshot`.
pub(super) fn upload_counts(c: &tig_client::Counts) -> String {
    format!(
        "uploaded {} object(s) ({}), skipped {} already present ({})",
        c.uploaded,
        human(c.uploaded_bytes),
        c.skipped,
        human(c.skipped_bytes)
    )
}

/// A client for `target`: the server a full URL names wins over `--server`.
pub(super) fn connect_for(conn: &Conn, target: &tig_client::Target) -> anyhow::Result<Client> {
    let client = connect(conn)?;
    Ok(match &target.server {
        Some(server) => client.with_server(server)?,
        None => client,
    })
}

pub(super) fn connect(conn: &Conn) -> anyhow::Result<Client> {
    let mut cfg = Config::new(&conn.server)?;
    cfg.apikey = match &conn.apikey_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the API key from {}", path.display()))?;
            Some(text.trim_end_matches(['\n', '\r']).to_string())
        }
        None => std::env::var("TIG_APIKEY").ok().filter(|k| !k.is_empty()),
    };
    anyhow::ensure!(conn.jobs >= 1, "--jobs must be at least 1");
    cfg.jobs = conn.jobs;
    cfg.max_size = conn.max_size;
    cfg.progress = std::io::stderr().is_terminal();
    Ok(Client::new(cfg)?)
}

/// One line on stderr about what was transferred.
pub(super) fn summary(line: &str) {
    let _ = writeln!(std::io::stderr(), "tig: {line}");
}
