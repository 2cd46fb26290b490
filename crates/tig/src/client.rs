//! The client commands: `tig put/get/kv/snapshot/restore/backup`, thin glue over
//! `tig-client`. Reads the server address and API key from flags or environment,
//! decides whether progress bars are drawn (only when stderr is a terminal), prints
//! results on stdout and a summary of transfers on stderr.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tig_client::{Client, Config, SnapshotOptions, human, parse_size, parse_target};

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

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Store a file (or stdin as `-`) and print its path; large files are chunked.
    Put {
        /// The file, or `-` for standard input.
        file: String,
        /// Chunk even a small file (content-defined chunks + a burst list).
        #[arg(long)]
        chunked: bool,
        /// Print a full URL instead of a path.
        #[arg(long)]
        url: bool,
        /// Print a JSON object (path, burst, size, chunks, upload counts).
        #[arg(long)]
        json: bool,
        /// XOR-split over two servers: a random pad on A, FILE XOR pad on B;
        /// prints `xor:URL_A/<pad>.tig,URL_B/<share>.tig` (each may be a burst).
        #[arg(long, value_name = "URL_A,URL_B", conflicts_with_all = ["stripe", "chunked"])]
        split: Option<String>,
        /// Stripe over servers: chunks placed by hash, the burst list (naming each
        /// member by full URL) on the first; prints `URL_A/<list>.tig?burst=1`.
        #[arg(long, value_name = "URL_A,URL_B[,…]", conflicts_with = "chunked")]
        stripe: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// Download an object, verify every hash, write it to a file or stdout.
    Get {
        /// A hash, `/<h>.tig`, or URL; `?burst=1` (as printed by put) expands a
        /// burst; `xor:URL_A,URL_B` (as printed by put --split) joins a split.
        name: String,
        /// Write here (via FILE.part, renamed only once verified) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Continue an interrupted download from the bytes in FILE.part.
        #[arg(long = "continue", requires = "output")]
        resume: bool,
        /// Treat the object as a burst list and fetch its members.
        #[arg(long)]
        burst: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Key-value slots, addressed by sha256(hex(sha256(KEY))).
    Kv {
        #[command(subcommand)]
        cmd: KvCommand,
        #[command(flatten)]
        conn: Conn,
    },
    /// Store a directory as a content-addressed tree; print the root's path.
    Snapshot {
        /// The directory.
        dir: PathBuf,
        /// Also take files excluded by .gitignore/.ignore rules.
        #[arg(long)]
        no_ignore: bool,
        /// Also take `.git` directories.
        #[arg(long)]
        include_git: bool,
        /// Read and hash every file: neither use nor update the snapshot cache
        /// ($XDG_CACHE_HOME/tig, else ~/.cache/tig).
        #[arg(long)]
        no_cache: bool,
        /// Print a full URL instead of a path.
        #[arg(long)]
        url: bool,
        /// Print a JSON object (root, files, bytes, upload counts).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Rebuild a snapshot into an empty or new directory, verifying every object.
    Restore {
        /// The root tree as printed by `tig snapshot` (hash, path or URL).
        root: String,
        /// The directory to create (or an empty one).
        dir: PathBuf,
        /// Print a JSON object (files, dirs, symlinks, bytes).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Mirror every object of the server into DEST_DIR, fetching only missing ones.
    Backup {
        /// The directory (servable by `tig serve --root DEST_DIR`).
        dest: PathBuf,
        /// Print a JSON object of the counts.
        #[arg(long)]
        json: bool,
        /// Fetch key-value slots again even if present (they change; content never does).
        #[arg(long)]
        refresh_slots: bool,
        #[command(flatten)]
        conn: Conn,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum KvCommand {
    /// Set KEY to VALUE (`-` reads stdin).
    Set { key: String, value: String },
    /// Print KEY's value (slots cannot be hash-verified).
    Get { key: String },
    /// Append VALUE (`-` reads stdin) to KEY's value.
    Append { key: String, value: String },
    /// Set KEY only if unset; exit 3 if it already had a value.
    Setifnot { key: String, value: String },
    /// Delete KEY's slot.
    Del { key: String },
    /// Print KEY's value and delete it in one step (a queue's pop: of many
    /// concurrent takers exactly one gets the value); exit 3 if it had none.
    Take { key: String },
    /// Create a write-only channel to KEY's slot and print its path: anyone may
    /// write (`PUT`, `?append=1`) to that path, the writes land in KEY's slot,
    /// and reading the channel shows nothing.
    Channel { key: String },
    /// Print KEY's slot path (no request).
    Path { key: String },
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Put {
            file,
            chunked,
            url,
            json,
            split,
            stripe,
            conn,
        } => {
            let client = connect(&conn)?;
            if let Some(list) = split {
                return put_split(&client, &list, &file);
            }
            let client = match &stripe {
                Some(list) => {
                    let servers = servers(&client, list)?;
                    anyhow::ensure!(!servers.is_empty(), "--stripe needs server URLs");
                    Striped(servers)
                }
                None => Single(client),
            };
            let (res, _spool);
            if file == "-" {
                let mut tmp =
                    tempfile::NamedTempFile::new().context("creating a temp file for stdin")?;
                std::io::copy(&mut std::io::stdin().lock(), tmp.as_file_mut())
                    .context("reading stdin")?;
                res = client.put(tmp.path(), chunked)?;
                _spool = Some(tmp);
            } else {
                res = client.put(std::path::Path::new(&file), chunked)?;
                _spool = None;
            }
            let mut name = if url || stripe.is_some() {
                format!("{}{}", client.first().config().server, res.id.path())
            } else {
                res.id.path()
            };
            if res.burst {
                name.push_str("?burst=1");
            }
            if json {
                let mut v = serde_json::to_value(res)?;
                v["path"] = serde_json::Value::String(name);
                outln!("{v}")?;
            } else {
                outln!("{name}")?;
            }
            let shape = if res.burst {
                format!("{} chunk(s) + a burst list", res.chunks)
            } else {
                "one object".into()
            };
            summary(&format!(
                "put {}: {shape}; {}",
                human(res.size),
                upload_counts(&res.counts)
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Get {
            name,
            output,
            resume,
            burst,
            conn,
        } => {
            if name.trim().starts_with("xor:") {
                return get_split(&conn, &name, output.as_deref());
            }
            let target = parse_target(&name)?;
            let client = connect_for(&conn, &target)?;
            let burst = burst || target.burst;
            match output {
                Some(path) => {
                    client
                        .fetch_to_path_resuming(&target.id, burst, &path, resume)
                        .map_err(|e| match e {
                            e @ (tig_client::Error::Transport { .. }
                            | tig_client::Error::Unreachable { .. }) => anyhow::anyhow!(
                                "{e} (the bytes so far are in {}: add --continue to resume)",
                                tig_client::fetch::part_path(&path).display()
                            ),
                            e => e.into(),
                        })
                        .with_context(|| format!("get {}", target.id.path()))?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    client
                        .fetch_to_writer(&target.id, burst, &mut lock)
                        .with_context(|| format!("get {}", target.id.path()))?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Kv { cmd, conn } => run_kv(cmd, &conn),
        Command::Snapshot {
            dir,
            no_ignore,
            include_git,
            no_cache,
            url,
            json,
            conn,
        } => {
            let client = connect(&conn)?;
            // A 413 (the limit was lowered, or --max-size is above it) runs the
            // snapshot again cut below the stated limit; uploaded objects are skipped.
            let res = client.adapting(|| {
                client.snapshot(
                    &dir,
                    SnapshotOptions {
                        no_ignore,
                        include_git,
                        no_cache,
                    },
                )
            })?;
            let name = if url {
                format!("{}{}", client.config().server, res.root.path())
            } else {
                res.root.path()
            };
            if json {
                outln!("{}", serde_json::to_value(res)?)?;
            } else {
                outln!("{name}")?;
            }
            summary(&format!(
                "snapshot: {} file(s) ({} read, {} unchanged per the cache), {} dir(s), {} link(s), {}; {}",
                res.files,
                res.hashed,
                res.cached,
                res.dirs,
                res.symlinks,
                human(res.bytes),
                upload_counts(&res.counts)
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            root,
            dir,
            json,
            conn,
        } => {
            let target = parse_target(&root)?;
            let client = connect_for(&conn, &target)?;
            let created = std::fs::symlink_metadata(&dir).is_err();
            let res = client.restore(&target.id, &dir).map_err(|e| {
                // A directory this run made holds nothing of the user's: leave none.
                if created {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                anyhow::Error::from(e).context(format!(
                    "restore {} into {}",
                    target.id.path(),
                    dir.display()
                ))
            })?;
            if json {
                outln!("{}", serde_json::to_value(res)?)?;
            }
            summary(&format!(
                "restored {} file(s), {} dir(s), {} link(s), {} into {} (every object verified)",
                res.files,
                res.dirs,
                res.symlinks,
                human(res.bytes),
                dir.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup {
            dest,
            json,
            refresh_slots,
            conn,
        } => {
            let client = connect(&conn)?;
            let res = client
                .backup(&dest, refresh_slots)
                .with_context(|| format!("backup into {}", dest.display()))?;
            if json {
                outln!("{}", serde_json::to_value(res)?)?;
            }
            summary(&format!(
                "backup: {} listed, {} already present, fetched {} ({}): {} verified, {} unverifiable (key-value slots: their name is not the hash of their bytes), {} expired before fetch",
                res.listed,
                res.present,
                res.fetched,
                human(res.fetched_bytes),
                res.verified,
                res.unverifiable,
                res.vanished
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_kv(cmd: KvCommand, conn: &Conn) -> anyhow::Result<ExitCode> {
    let client = || connect(conn);
    let value = |v: &str| -> anyhow::Result<bytes_value::Value> {
        if v == "-" {
            bytes_value::read(v, connect(conn)?.max_size()?)
        } else {
            bytes_value::read(v, u64::MAX)
        }
    };
    match cmd {
        KvCommand::Set { key, value: v } => {
            let slot = client()?.kv_set(key.as_bytes(), value(&v)?.into())?;
            outln!("{}", slot.path())?;
        }
        KvCommand::Append { key, value: v } => {
            let slot = client()?.kv_append(key.as_bytes(), value(&v)?.into())?;
            outln!("{}", slot.path())?;
        }
        KvCommand::Setifnot { key, value: v } => {
            if client()?.kv_setifnot(key.as_bytes(), value(&v)?.into())? {
                outln!("{}", tig_client::slot_id(key.as_bytes()).path())?;
            } else {
                eprintln!("tig: kv setifnot: {key:?} already has a value");
                return Ok(ExitCode::from(3));
            }
        }
        KvCommand::Get { key } => {
            let stdout = std::io::stdout();
            client()?
                .kv_get(key.as_bytes(), &mut stdout.lock())
                .map_err(|e| no_such_key(e, "get", &key))?;
        }
        KvCommand::Del { key } => {
            let slot = client()?
                .kv_del(key.as_bytes())
                .map_err(|e| no_such_key(e, "del", &key))?;
            outln!("{}", slot.path())?;
        }
        KvCommand::Take { key } => {
            let stdout = std::io::stdout();
            if client()?
                .kv_take(key.as_bytes(), &mut stdout.lock())?
                .is_none()
            {
                eprintln!("tig: kv take: {key:?} has no value");
                return Ok(ExitCode::from(3));
            }
        }
        KvCommand::Channel { key } => {
            let channel = client()?.kv_channel(key.as_bytes())?;
            outln!("{}", channel.path())?;
        }
        KvCommand::Path { key } => outln!("{}", tig_client::slot_id(key.as_bytes()).path())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A 404 on a key's slot, said with the key.
fn no_such_key(e: tig_client::Error, op: &str, key: &str) -> anyhow::Error {
    match e {
        tig_client::Error::NotFound { .. } => anyhow::anyhow!(
            "kv {op}: no value for key {key:?} (404: slot {} not on the server)",
            tig_client::slot_id(key.as_bytes()).path()
        ),
        e => e.into(),
    }
}

/// A kv value from the command line, or stdin for `-` (at most the size limit).
mod bytes_value {
    use super::*;

    pub type Value = Vec<u8>;

    pub fn read(v: &str, limit: u64) -> anyhow::Result<Value> {
        if v != "-" {
            return Ok(v.as_bytes().to_vec());
        }
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        anyhow::ensure!(
            buf.len() as u64 <= limit,
            "the value on stdin is over the server's size limit ({})",
            human(limit)
        );
        Ok(buf)
    }
}

/// Where `put` stores: one server, or a stripe over several.
enum PutTo {
    Single(Client),
    Striped(Vec<Client>),
}
use PutTo::{Single, Striped};

impl PutTo {
    fn put(
        &self,
        path: &std::path::Path,
        chunked: bool,
    ) -> tig_client::Result<tig_client::PutResult> {
        match self {
            Single(c) => c.put_file(path, chunked),
            Striped(servers) => Client::put_stripe(path, servers),
        }
    }
    fn first(&self) -> &Client {
        match self {
            Single(c) => c,
            Striped(servers) => &servers[0],
        }
    }
}

/// Clients for a comma-separated list of server URLs.
fn servers(client: &Client, list: &str) -> anyhow::Result<Vec<Client>> {
    list.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Ok(client.with_server(s.trim())?))
        .collect()
}

/// `put --split URL_A,URL_B FILE`.
fn put_split(client: &Client, list: &str, file: &str) -> anyhow::Result<ExitCode> {
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
fn get_split(
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

/// The upload half of a summary line, shared by `put` and `snapshot`.
fn upload_counts(c: &tig_client::Counts) -> String {
    format!(
        "uploaded {} object(s) ({}), skipped {} already present ({})",
        c.uploaded,
        human(c.uploaded_bytes),
        c.skipped,
        human(c.skipped_bytes)
    )
}

/// A client for `target`: the server a full URL names wins over `--server`.
fn connect_for(conn: &Conn, target: &tig_client::Target) -> anyhow::Result<Client> {
    let client = connect(conn)?;
    Ok(match &target.server {
        Some(server) => client.with_server(server)?,
        None => client,
    })
}

fn connect(conn: &Conn) -> anyhow::Result<Client> {
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
fn summary(line: &str) {
    let _ = writeln!(std::io::stderr(), "tig: {line}");
}
