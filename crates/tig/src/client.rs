//! The client commands: `tig put/get/kv/snapshot/restore/backup`, thin glue over
//! `tig-client`. Reads the server address and API key from flags or environment,
//! decides whether progress bars are drawn (only when stderr is a terminal), prints
//! results on stdout and a summary of transfers on stderr.
//!
//! - `conn`: the connection flags and the client they make; the summary line.
//! - `kv`: `tig kv …`.
//! - `spread`: one object over several servers (`put --stripe/--split`, `get xor:`).

mod conn;
mod kv;
mod spread;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tig_client::{SnapshotOptions, human, parse_target};

use conn::{Conn, connect, connect_for, summary, upload_counts};
use kv::{KvCommand, run_kv};
use spread::PutTo::{Single, Striped};
use spread::{get_split, put_split, servers};

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
