//! Spreading one object over several servers: `put --stripe` (chunks placed
//! by hash), `put --split` and `get xor:` (XOR shares on two servers).

use std::process::ExitCode;

use anyhow::Context;
use tig_client::{Client, human};

use super::conn::{Conn, connect, summary, upload_counts};

/// Where `put` stores: one server, or a stripe over several.
pub(super) enum PutTo {
    Single(Client),
    Striped(Vec<Client>),
}
use PutTo::{Single, Striped};

impl PutTo {
    pub(super) fn put(
        &self,
        path: &std::path::Path,
        chunked: bool,
    ) -> tig_client::Result<tig_client::PutResult> {
        match self {
            Single(c) => c.put_file(path, chunked),
            Striped(servers) => Client::put_stripe(path, servers),
        }
    }
    pub(super) fn first(&self) -> &Client {
        match self {
            Single(c) => c,
            Striped(servers) => &servers[0],
        }
    }
}

/// Clients for a comma-separated list of server URLs.
pub(super) fn servers(client: &Client, list: &str) -> anyhow::Result<Vec<Client>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Ok(client.with_server(s.trim())?))
        .collect()
}

/// `put --split URL_A,URL_B FILE`.
pub(super) fn put_split(client: &Client, list: &str, file: &str) -> anyhow::Result<ExitCode> {
    let servers = servers(client, list)?;
    let [a, b] = servers.as_slice() else {
        anyhow::bail!("--split needs exactly two server URLs (URL_A,URL_B)");
    };
    let (res, _spool);
    if file == "-" {
        let mut tmp = tempfile::NamedTempFile::new().context("creating a temp file for stdin")?;
        std::io::copy(&mut std::io::stdin().lock(), tmp.as_file_mut()).context("reading stdin")?;
        res = Client::put_split(tmp.path(), a, b)?;
        _spool = Some(tmp);
    } else {
        res = Client::put_split(std::path::Path::new(file), a, b)?;
        _spool = None;
    }
    outln!("{}", res.reference(&a.config().server, &b.config().server))?;
    summary(&format!(
        "put --split {}: pad on {}, share on {}; {}; {}",
        human(res.pad.size),
        a.config().server,
        b.config().server,
        upload_counts(&res.pad.counts),
        upload_counts(&res.share.counts)
    ));
    Ok(ExitCode::SUCCESS)
}

/// `get xor:URL_A,URL_B [-o OUT]`: the output appears only once both shares
/// were verified.
pub(super) fn get_split(
    conn: &Conn,
    name: &str,
    output: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let (a, b) = tig_client::parse_split(name)?;
    let client = connect(conn)?;
    match output {
        Some(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => std::path::Path::new("."),
            };
            let mut tmp = tempfile::Builder::new()
                .prefix(".tig-get-")
                .tempfile_in(dir)
                .with_context(|| format!("creating a temp file in {}", dir.display()))?;
            client
                .get_split(&a, &b, &mut std::io::BufWriter::new(tmp.as_file_mut()))
                .context("get xor")?;
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("writing {}", path.display()))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                tmp.as_file()
                    .set_permissions(std::fs::Permissions::from_mode(0o644))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            tmp.persist(path)
                .map_err(|e| e.error)
                .with_context(|| format!("renaming into {}", path.display()))?;
        }
        None => {
            client
                .get_split(&a, &b, &mut std::io::stdout().lock())
                .context("get xor")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
