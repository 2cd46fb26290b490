//! The `tig` binary: command-line glue over the library crates.
//!
//! Each command family lives in its own module and owns its clap types:
//! `serve` (the HTTP store), `feed` (`tig id …`, `tig feed …`), and `client`
//! (`tig put/get/kv/snapshot/restore/backup`). This file only parses the command
//! line, sets up logging, and maps errors to one line on stderr and an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` that returns the write's `io::Result` instead of panicking, so a
/// closed stdout (`tig … | head`) reaches [`main`] as a `BrokenPipe` error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` that returns the write's `io::Result` (see [`outln`]).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod client;
mod feed;
mod feed_relay;
mod feed_report;
mod feed_show;
mod feed_sync;
mod scrub;
mod serve;

/// Keep code and data by its hash.
#[derive(Debug, Parser)]
#[command(name = "tig", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the content-addressed HTTP store.
    Serve(serve::ServeArgs),
    /// Re-hash every content object of a data directory; move corrupt ones aside.
    Scrub(scrub::ScrubArgs),
    #[command(flatten)]
    Feed(feed::Command),
    #[command(flatten)]
    Client(client::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = matches!(&cli.command, Command::Serve(a) if a.log_format == serve::LogFormat::Json);
    init_logging(json);
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Scrub(args) => scrub::run(args),
        Command::Feed(cmd) => feed::run(cmd),
        Command::Client(cmd) => client::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("tig: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` (or `TIG_LOG`) picks the level, `info` by default;
/// `json` writes one JSON object a line (`tig serve --log-format json`).
fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("TIG_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// A write to a closed stdout (`tig … | head`): Rust ignores SIGPIPE, so the
/// write fails with `BrokenPipe`, which travels up as an ordinary error (from
/// `outln!`, a writer, or inside a [`tig_client::Error::Io`]) and is recognised
/// here by its kind. Like `cat`, tig then exits 0 without a word; temp files
/// were already removed by their destructors on the way up.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    use std::io::ErrorKind::BrokenPipe;
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == BrokenPipe)
            || cause
                .downcast_ref::<tig_client::Error>()
                .is_some_and(|e| e.io_kind() == Some(BrokenPipe))
    })
}
