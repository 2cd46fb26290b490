//! `tig kv …`: key-value slots.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use tig_client::human;

use super::conn::{Conn, connect};

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

/// Runs one `tig kv` command.
pub(super) fn run_kv(cmd: KvCommand, conn: &Conn) -> anyhow::Result<ExitCode> {
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
