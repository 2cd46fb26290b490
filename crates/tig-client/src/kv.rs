//! Key-value slots addressed by the hash of the hash of the key (the seed's advice),
//! so a slot can never be mistaken for stored content.
//!
//! Precisely: `slot = sha256(hex(sha256(KEY)))`, where `hex` is the 64 lowercase hex
//! digits with no newline. From a shell:
//! `printf %s "$KEY" | sha256sum | head -c 64 | sha256sum | head -c 64`.
//!
//! Queues and write-only channels: [`Client::kv_take`] reads a value and deletes it
//! in one step on the server (`?take=1`: of many takers exactly one gets it);
//! [`Client::kv_channel`] creates a new random slot holding
//! `Write only channel to tig /<slot>.tig`, whose path anyone may write to (the
//! writes land in KEY's slot) but nobody can read the value through.

use std::io::Write;

use bytes::Bytes;
use tig_core::ObjectId;

use rand_core::RngCore;
use reqwest::StatusCode;

use crate::error::{Error, Result};
use crate::http::{Client, SlotWrite};

/// What a write-only channel's value starts with (the target's path follows).
pub const CHANNEL_PREFIX: &str = "Write only channel to tig ";

/// The slot of `key`: `sha256(hex(sha256(key)))`.
pub fn slot_id(key: &[u8]) -> ObjectId {
    ObjectId::digest(ObjectId::digest(key).to_hex().as_bytes())
}

impl Client {
    /// Sets `key` to `value` (replacing any value). Returns the slot.
    pub fn kv_set(&self, key: &[u8], value: Bytes) -> Result<ObjectId> {
        let slot = slot_id(key);
        self.put_slot(&slot, value, SlotWrite::Set)?;
        Ok(slot)
    }

    /// Appends `value` to `key`'s value (creating it if absent).
    pub fn kv_append(&self, key: &[u8], value: Bytes) -> Result<ObjectId> {
        let slot = slot_id(key);
        self.put_slot(&slot, value, SlotWrite::Append)?;
        Ok(slot)
    }

    /// Sets `key` only if it has no value; `true` if this call created it.
    pub fn kv_setifnot(&self, key: &[u8], value: Bytes) -> Result<bool> {
        self.put_slot(&slot_id(key), value, SlotWrite::SetIfNot)
    }

    /// Writes `key`'s value to `w`. A slot's bytes cannot be hash-verified: its name
    /// is the hash of the key, not of the value.
    pub fn kv_get(&self, key: &[u8], w: &mut dyn Write) -> Result<u64> {
        let slot = slot_id(key);
        let mut resp = self.get(&slot, true)?;
        let n = crate::http::read_body(&mut resp, &format!("GET {}", slot.path()), |bytes| {
            w.write_all(bytes)
                .map_err(|e| Error::io("writing output", e))
        })?;
        w.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(n)
    }

    /// Takes `key`'s value: the server returns it and deletes the slot in one
    /// atomic step, and it is written to `w`. `None` when the key had no value
    /// (or another taker got it first). Never retried once the request may have
    /// reached the server: a second take could consume the next value.
    pub fn kv_take(&self, key: &[u8], w: &mut dyn Write) -> Result<Option<u64>> {
        let slot = slot_id(key);
        let what = format!("GET {}?take=1", slot.path());
        let url = self.url(&slot.path(), &[("take", "1")], true)?;
        let resp = self.send(&what, false, || Ok(self.http.get(url.clone())))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let mut resp = self.check(&what, resp)?;
        let n = crate::http::read_body(&mut resp, &what, |bytes| {
            w.write_all(bytes)
                .map_err(|e| Error::io("writing output", e))
        })?;
        w.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(Some(n))
    }

    /// Creates a new write-only channel to `key`'s slot: a fresh random name
    /// (from the OS's CSPRNG) set, only if unused, to the channel line. Returns
    /// the channel's id; hand out its path.
    pub fn kv_channel(&self, key: &[u8]) -> Result<ObjectId> {
        let target = slot_id(key);
        let line = format!("{CHANNEL_PREFIX}{}", target.path());
        for _ in 0..3 {
            let mut raw = [0u8; 32];
            rand_core::OsRng
                .try_fill_bytes(&mut raw)
                .map_err(|e| Error::Usage(format!("no randomness from the OS: {e}")))?;
            let channel = ObjectId::from_bytes(raw);
            if self.put_slot(&channel, Bytes::from(line.clone()), SlotWrite::SetIfNot)? {
                return Ok(channel);
            }
        }
        Err(Error::Usage(
            "could not create a channel: three random names were all taken".into(),
        ))
    }

    /// Deletes `key`'s slot.
    pub fn kv_del(&self, key: &[u8]) -> Result<ObjectId> {
        let slot = slot_id(key);
        self.delete(&slot)?;
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_is_the_hash_of_the_hex_hash() {
        // printf key | sha256sum → 2c70e12b7a0646f92279f427c7b38e7334d8e5389cff167a1dc30e73f826b683
        let inner = ObjectId::digest(b"key");
        assert_eq!(
            inner.to_hex(),
            "2c70e12b7a0646f92279f427c7b38e7334d8e5389cff167a1dc30e73f826b683"
        );
        assert_eq!(slot_id(b"key"), ObjectId::digest(inner.to_hex().as_bytes()));
        assert_ne!(slot_id(b"key"), inner);
        assert_ne!(slot_id(b"key"), slot_id(b"key\n"));
    }
}
