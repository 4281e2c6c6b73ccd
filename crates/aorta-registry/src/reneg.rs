//! The server's side of `max_key_uses` renegotiation: rate limit, counter
//! persistence, and recording the applied value.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::keys;
use aorta_crypto::reneg::{
    Applied, Offer, Reply, Sealed, ServerAwaitingConfirm, ServerAwaitingReply,
};
use redb::TableDefinition;

use crate::{Registry, RegistryError, db_err};

/// Serial → last counter (u64) ‖ timestamps (u64 each, seconds) of completed changes.
pub(crate) const RENEG: TableDefinition<&str, &[u8]> = TableDefinition::new("reneg");

/// How often `max_key_uses` may change (the paper: one to three times a month).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenegPolicy {
    /// Most completed changes inside one window.
    pub max_changes: usize,
    /// Window length in seconds.
    pub window_secs: u64,
}

impl Default for RenegPolicy {
    fn default() -> Self {
        RenegPolicy {
            max_changes: 3,
            window_secs: 30 * 24 * 3600,
        }
    }
}

/// A device's renegotiation history (`reneg` table): the last offer counter
/// and the times of the changes inside the window, u64 big-endian each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RenegHistory {
    pub(crate) counter: u64,
    pub(crate) times: Vec<u64>,
}

impl Encode for RenegHistory {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.counter.to_be_bytes());
        for t in &self.times {
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
}

impl Decode<'_> for RenegHistory {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let counter = r.u64("counter")?;
        let mut times = Vec::with_capacity(r.remaining() / 8);
        while !r.is_empty() {
            times.push(r.u64("change time")?);
        }
        Ok(RenegHistory { counter, times })
    }
}

impl Registry {
    fn reneg_state(&self, serial: &str) -> Result<(u64, Vec<u64>), RegistryError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(RENEG).map_err(db_err)?;
        let Some(v) = t.get(serial).map_err(db_err)? else {
            return Ok((0, Vec::new()));
        };
        let h = RenegHistory::from_bytes(v.value()).map_err(|e| {
            RegistryError::Corrupt(format!("renegotiation history of {serial}: {e}"))
        })?;
        Ok((h.counter, h.times))
    }

    fn put_reneg(&self, serial: &str, counter: u64, times: &[u64]) -> Result<(), RegistryError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut t = w.open_table(RENEG).map_err(db_err)?;
            let h = RenegHistory {
                counter,
                times: times.to_vec(),
            };
            t.insert(serial, h.to_bytes().as_slice()).map_err(db_err)?;
        }
        w.commit().map_err(db_err)
    }

    /// Starts renegotiating `serial`'s `max_key_uses` at time `now_secs`
    /// (Unix seconds, from the caller's clock). Refused when the device
    /// already changed `policy.max_changes` times inside the window. The
    /// counter is persisted before the offer leaves, so it is never reused.
    pub fn reneg_begin(
        &self,
        serial: &str,
        now_secs: u64,
        policy: RenegPolicy,
    ) -> Result<(ServerAwaitingReply, Offer), RegistryError> {
        let info = self.device(serial)?;
        if !info.verified {
            return Err(RegistryError::Config(format!(
                "device {serial} is not verified"
            )));
        }
        let (counter, times) = self.reneg_state(serial)?;
        let recent = times
            .iter()
            .filter(|&&t| now_secs.saturating_sub(t) < policy.window_secs)
            .count();
        if recent >= policy.max_changes {
            return Err(RegistryError::RateLimited {
                serial: serial.to_owned(),
                changes: recent,
                window_secs: policy.window_secs,
            });
        }
        let next = counter
            .checked_add(1)
            .ok_or_else(|| RegistryError::Config("counter exhausted".into()))?;
        self.put_reneg(serial, next, &times)?;
        let psk = keys::renegotiation_psk(&self.device_keys(serial)?)?;
        Ok(ServerAwaitingReply::start(psk, serial, next, &self.rng)?)
    }

    /// Answers the device's Reply with the new value, encrypted. The value is
    /// recorded as possibly in use (for the key-index window) before it is sent.
    pub fn reneg_reply(
        &self,
        serial: &str,
        state: ServerAwaitingReply,
        reply: &Reply,
        max_key_uses: u64,
    ) -> Result<(ServerAwaitingConfirm, Sealed), RegistryError> {
        if max_key_uses == 0 {
            return Err(RegistryError::Config(
                "max_key_uses must be positive".into(),
            ));
        }
        self.note_offered_key_uses(serial, max_key_uses)?;
        Ok(state.on_reply(reply, max_key_uses)?)
    }

    /// Completes a renegotiation: verifies the device's Confirm, records the
    /// new `max_key_uses` and the time of the change.
    pub fn reneg_finish(
        &self,
        serial: &str,
        state: ServerAwaitingConfirm,
        confirm: &Sealed,
        now_secs: u64,
    ) -> Result<Applied, RegistryError> {
        let applied = state.on_confirm(confirm)?;
        let (counter, mut times) = self.reneg_state(serial)?;
        times.push(now_secs);
        self.put_reneg(serial, counter, &times)?;
        self.set_max_key_uses(serial, applied.max_key_uses)?;
        Ok(applied)
    }
}
