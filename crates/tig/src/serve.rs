//! placeholder for `tig serve`.

use std::process::ExitCode;

/// Flags of `tig serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented")
}
