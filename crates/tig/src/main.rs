//! The `tig` binary: command-line glue over the library crates.
//!
//! Each command family lives in its own module and owns its clap types:
//! `serve` (the HTTP store), `feed` (`tig id …`, `tig feed …`), and `client`
//! (`tig put/get/kv/snapshot/restore/backup`). This file only parses the command
//! line, sets up logging, and maps errors to one line on stderr and an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod client;
mod feed;
mod feed_relay;
mod feed_sync;
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
    #[command(flatten)]
    Feed(feed::Command),
    #[command(flatten)]
    Client(client::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Feed(cmd) => quiet_on_closed_stdout(|| feed::run(cmd)),
        Command::Client(cmd) => quiet_on_closed_stdout(|| client::run(cmd)),
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

/// Logs go to stderr; `RUST_LOG` (or `TIG_LOG`) picks the level, `info` by default.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("TIG_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Set by the panic hook when `print!`/`println!` found stdout closed.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Runs a command so that `tig … | head` ends quietly (exit 0, like a write
/// error `BrokenPipe` below) when the reader goes away.
///
/// Rust ignores SIGPIPE, so `println!` to a closed pipe panics ("failed
/// printing to stdout: Broken pipe") with a backtrace. Restoring SIGPIPE's
/// default action would need `unsafe` (the workspace denies it) and would
/// also kill tig without a word when a child it feeds (`gpg`) exits early.
/// Instead that one panic is recognised: the hook stays silent, the stack
/// unwinds (temp files are still removed by their destructors) and the panic
/// is turned into success here. Any other panic is reported as before.
/// `serve` is left alone: it prints nothing to stdout that matters.
fn quiet_on_closed_stdout(
    run: impl FnOnce() -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    use std::sync::atomic::Ordering;
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            STDOUT_CLOSED.store(true, Ordering::SeqCst);
        } else {
            report(info);
        }
    }));
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(_) if STDOUT_CLOSED.load(Ordering::SeqCst) => Ok(ExitCode::SUCCESS),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
