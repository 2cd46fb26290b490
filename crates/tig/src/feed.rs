//! `tig id …` and `tig feed …`: identities and signed logs over git.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Signed logs kept as git commits in a git repository.
    Feed {
        #[command(subcommand)]
        command: FeedCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum FeedCommand {
    #[command(flatten)]
    Sync(crate::feed_sync::Command),
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Feed { command } => match command {
            FeedCommand::Sync(c) => crate::feed_sync::run(c),
        },
    }
}
