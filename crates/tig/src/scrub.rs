//! `tig scrub [--root DIR] [--json]`: re-hash every content object of a data
//! directory, move those whose bytes no longer match their name to
//! `<root>/.tig-corrupt/`, print `N objects checked, M corrupt` and exit 1 when
//! M > 0. Slots cannot be checked; the output says how many were skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use tig_store::FsStore;
use tig_store::fs::{CORRUPT_DIR, FsOptions};

/// Flags of `tig scrub`.
#[derive(Debug, clap::Args)]
pub struct ScrubArgs {
    /// Data directory [default: /data if it exists, else /tmp].
    #[arg(long, env = "TIG_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs one scrub pass over the data directory.
pub fn run(args: ScrubArgs) -> anyhow::Result<ExitCode> {
    let root = args.root.unwrap_or_else(|| {
        if Path::new("/data").is_dir() {
            PathBuf::from("/data")
        } else {
            PathBuf::from("/tmp")
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let report = rt.block_on(async {
        let store = FsStore::open(&root, FsOptions::default())
            .await
            .with_context(|| format!("cannot use data directory {}", root.display()))?;
        tig_store::scrub::scrub(&store, None)
            .await
            .with_context(|| format!("scrubbing {} failed", root.display()))
    })?;
    let moved_to = root.join(CORRUPT_DIR);
    let mut out = std::io::stdout().lock();
    if args.json {
        let v = serde_json::json!({
            "checked": report.checked,
            "corrupt": report.corrupt.len(),
            "corrupt_objects": report.corrupt.iter().map(|id| id.path()).collect::<Vec<_>>(),
            "moved_to": moved_to.display().to_string(),
            "bytes_checked": report.bytes,
            "slots_not_checked": report.slots,
        });
        writeln!(out, "{v}")?;
    } else {
        for id in &report.corrupt {
            writeln!(
                out,
                "corrupt: {} (moved to {})",
                id.path(),
                moved_to.display()
            )?;
        }
        writeln!(
            out,
            "{} objects checked, {} corrupt",
            report.checked,
            report.corrupt.len()
        )?;
        writeln!(
            out,
            "{} slots not checked (a slot's bytes are not named by their hash)",
            report.slots
        )?;
    }
    out.flush()?;
    Ok(if report.corrupt.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
