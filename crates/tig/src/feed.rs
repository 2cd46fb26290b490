//! placeholder for the `feed` commands.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Not implemented yet.
    #[command(hide = true)]
    FeedPlaceholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::FeedPlaceholder => anyhow::bail!("not implemented"),
    }
}
