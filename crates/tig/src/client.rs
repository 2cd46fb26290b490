//! placeholder for the `client` commands.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Not implemented yet.
    #[command(hide = true)]
    ClientPlaceholder,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::ClientPlaceholder => anyhow::bail!("not implemented"),
    }
}
