//! Key-value slots addressed by the hash of the hash of the key (the seed's advice),
//! so a slot can never be mistaken for stored content.
//!
//! Precisely: `slot = sha256(hex(sha256(KEY)))`, where `hex` is the 64 lowercase hex
//! digits with no newline. From a shell:
//! `printf %s "$KEY" | sha256sum | head -c 64 | sha256sum | head -c 64`.

use std::io::Write;

use bytes::Bytes;
use tig_core::ObjectId;

use crate::error::{Error, Result};
use crate::http::{Client, SlotWrite};

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
