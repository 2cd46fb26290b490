//! `tig feed pull/push/bundle/forks/graph/delete/verify-proof`: replication and forks.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Not implemented yet.
    #[command(hide = true)]
    SyncPlaceholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::SyncPlaceholder => anyhow::bail!("not implemented"),
    }
}
