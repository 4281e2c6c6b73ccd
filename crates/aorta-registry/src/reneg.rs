//! The server's side of `max_key_uses` renegotiation: rate limit, counter
//! persistence, and recording the applied value.

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::keys;
use aorta_crypto::reneg::{
    Applied, DeviceStatus, Offer, Reply, Sealed, ServerAwaitingConfirm, ServerAwaitingReply,
};
use redb::{ReadableTable, TableDefinition};

use crate::{Registry, RegistryError, db_err};

/// Serial → last counter (u64) ‖ timestamps (u64 each, seconds) of the
/// Values sent (each counts against the rate limit from the moment it may
/// reach the device, whether or not its Confirm ever arrives).
pub(crate) const RENEG: TableDefinition<&str, &[u8]> = TableDefinition::new("reneg");

pub use aorta_crypto::reneg::RenegPolicy;

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

/// Serial → the renegotiation whose Value was sent but not yet confirmed:
/// `counter u64 ‖ value u64`, big-endian.
pub(crate) const RENEG_PENDING: TableDefinition<&str, &[u8]> =
    TableDefinition::new("reneg_pending");

/// A Value sent and not yet confirmed (`reneg_pending` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Its renegotiation counter.
    pub counter: u64,
    /// The `max_key_uses` it carries.
    pub value: u64,
}

impl Pending {
    fn to_bytes(self) -> Vec<u8> {
        let mut b = self.counter.to_be_bytes().to_vec();
        b.extend_from_slice(&self.value.to_be_bytes());
        b
    }
    fn from_bytes(b: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(b);
        let counter = r.u64("counter")?;
        let value = r.u64("value")?;
        r.finish()?;
        Ok(Pending { counter, value })
    }
}

/// What the server answers a verified Reply with.
pub enum RenegStep {
    /// Send this Value and wait for the Confirm.
    Value(Box<ServerAwaitingConfirm>, Sealed),
    /// Nothing to change (the Reply only resolved the device's status, or
    /// the value is no longer wanted): the session ends here.
    NoChange,
}

/// The key period the server aims for: with `slice_len` keys meant to last
/// `lifetime_secs`, each key should be retired after
/// `lifetime_secs / slice_len` seconds (the paper: 120 keys, ten years, one
/// a month). Given `frames` accepted over `secs` seconds, returns the lower
/// `max_key_uses` that retires a key within that period, when it is below
/// `current` (consumption too slow); `None` when consumption is fast enough
/// or there is nothing to go on.
pub fn propose_max_key_uses(
    current: u64,
    key_period_secs: u64,
    frames: u64,
    secs: u64,
) -> Option<u64> {
    if secs == 0 || frames == 0 || key_period_secs == 0 {
        return None;
    }
    // frames per key period at the observed rate = frames * period / secs.
    let per_period = u128::from(frames) * u128::from(key_period_secs) / u128::from(secs);
    let want = u64::try_from(per_period).unwrap_or(u64::MAX).max(1);
    (want < current).then_some(want)
}

impl Registry {
    /// The renegotiation left pending for `serial`, if any.
    pub fn reneg_pending(&self, serial: &str) -> Result<Option<Pending>, RegistryError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = match r.open_table(RENEG_PENDING) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let Some(v) = t.get(serial).map_err(db_err)? else {
            return Ok(None);
        };
        Pending::from_bytes(v.value())
            .map(Some)
            .map_err(|e| RegistryError::Corrupt(format!("pending renegotiation of {serial}: {e}")))
    }

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

    /// Writes, in one transaction, the history, the pending record (`None`
    /// clears it) and the device record's `max_key_uses`/`min_key_uses`;
    /// then republishes the directory.
    fn reneg_commit(
        &self,
        serial: &str,
        history: Option<(u64, &[u64])>,
        pending: Option<Option<Pending>>,
        uses: Option<(u64, u64)>,
    ) -> Result<(), RegistryError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            if let Some((counter, times)) = history {
                let mut t = w.open_table(RENEG).map_err(db_err)?;
                let h = RenegHistory {
                    counter,
                    times: times.to_vec(),
                };
                t.insert(serial, h.to_bytes().as_slice()).map_err(db_err)?;
            }
            if let Some(p) = pending {
                let mut t = w.open_table(RENEG_PENDING).map_err(db_err)?;
                match p {
                    Some(p) => {
                        t.insert(serial, p.to_bytes().as_slice()).map_err(db_err)?;
                    }
                    None => {
                        t.remove(serial).map_err(db_err)?;
                    }
                }
            }
            if let Some((max, min)) = uses {
                let mut t = w.open_table(crate::store::DEVICES).map_err(db_err)?;
                let rec = t
                    .get(serial)
                    .map_err(db_err)?
                    .ok_or_else(|| RegistryError::UnknownSerial {
                        serial: serial.to_owned(),
                    })
                    .and_then(|v| {
                        crate::store::DeviceRecord::from_bytes(v.value())
                            .map_err(crate::store::corrupt("device record"))
                    })?;
                let rec = crate::store::DeviceRecord {
                    max_key_uses: max,
                    min_key_uses: min.max(1),
                    ..rec
                };
                t.insert(serial, rec.to_bytes().as_slice())
                    .map_err(db_err)?;
            }
        }
        w.commit().map_err(db_err)?;
        if uses.is_some() {
            self.publish_directory()?;
        }
        Ok(())
    }

    /// Starts renegotiating `serial`'s `max_key_uses` at time `now_secs`
    /// (Unix seconds, from the caller's clock). Refused when `policy.max_changes`
    /// Values were sent to the device inside the window — unless a change is
    /// pending: then this round only resolves it (the Reply reports what
    /// the device runs). The counter is persisted before the Offer leaves,
    /// so it is never reused.
    pub fn reneg_begin(
        &self,
        serial: &str,
        now_secs: u64,
        policy: RenegPolicy,
    ) -> Result<(ServerAwaitingReply, Offer), RegistryError> {
        let info = self.device(serial)?;
        if !info.verified || info.revoked {
            return Err(RegistryError::Config(format!(
                "device {serial} is not verified or is revoked"
            )));
        }
        let (counter, times) = self.reneg_state(serial)?;
        if self.reneg_pending(serial)?.is_none() && !policy.allows(&times, now_secs) {
            return Err(RegistryError::RateLimited {
                serial: serial.to_owned(),
                changes: policy.recent(&times, now_secs),
                window_secs: policy.window_secs,
            });
        }
        let next = counter
            .checked_add(1)
            .ok_or_else(|| RegistryError::Config("counter exhausted".into()))?;
        self.reneg_commit(serial, Some((next, &times)), None, None)?;
        let psk = keys::renegotiation_psk(&self.device_keys(serial)?)?;
        Ok(ServerAwaitingReply::start(psk, serial, next, &self.rng)?)
    }

    /// Brings the server's record in line with the device's authenticated
    /// `status` (from its Reply): a pending change the device applied is
    /// adopted, one it never applied is dropped, and the key-index window
    /// narrows back to the one agreed value (`min_key_uses = max_key_uses`).
    fn reneg_resolve(&self, serial: &str, status: DeviceStatus) -> Result<(), RegistryError> {
        let rec = self.device(serial)?;
        let pending = self.reneg_pending(serial)?;
        // The device's authenticated report decides: it applied the pending
        // change (adopt it), or it did not (drop it: it runs what it reports).
        let agreed = status.max_key_uses.max(1);
        if pending.is_none() && agreed == rec.max_key_uses && rec.min_key_uses == agreed {
            return Ok(());
        }
        self.reneg_commit(serial, None, Some(None), Some((agreed, agreed)))?;
        tracing::info!(
            target: "aorta::audit",
            serial,
            old = rec.max_key_uses,
            new = agreed,
            counter = status.applied_counter,
            pending_counter = pending.map(|p| p.counter),
            event = if pending.is_some_and(|p| p.counter == status.applied_counter) { "adopted" } else if pending.is_some() { "dropped" } else { "resync" },
            "max_key_uses: resolved from the device's authenticated status"
        );
        Ok(())
    }

    /// Verifies the device's Reply, resolves any pending change from the
    /// status it reports, then — if `want` is a value below the (resolved)
    /// current one and the rate limit allows — records it as pending, counts
    /// it against the rate limit and widens the key-index window to it (one
    /// transaction, before it is sent), and returns the Value to send.
    pub fn reneg_reply(
        &self,
        serial: &str,
        state: ServerAwaitingReply,
        reply: &Reply,
        want: Option<u64>,
        now_secs: u64,
        policy: RenegPolicy,
    ) -> Result<RenegStep, RegistryError> {
        let (replied, status) = state.verify_reply(reply)?;
        self.reneg_resolve(serial, status)?;
        let Some(v) = want else {
            return Ok(RenegStep::NoChange);
        };
        let rec = self.device(serial)?;
        if v == 0 || v >= rec.max_key_uses {
            return Ok(RenegStep::NoChange);
        }
        let (counter, mut times) = self.reneg_state(serial)?;
        if !policy.allows(&times, now_secs) {
            return Err(RegistryError::RateLimited {
                serial: serial.to_owned(),
                changes: policy.recent(&times, now_secs),
                window_secs: policy.window_secs,
            });
        }
        times.push(now_secs);
        let keep = times.len().saturating_sub(64);
        times.drain(..keep);
        let pending = Pending {
            counter: replied.counter(),
            value: v,
        };
        self.reneg_commit(
            serial,
            Some((counter, &times)),
            Some(Some(pending)),
            Some((rec.max_key_uses, v.min(rec.max_key_uses))),
        )?;
        tracing::info!(
            target: "aorta::audit",
            serial,
            old = rec.max_key_uses,
            new = v,
            counter = pending.counter,
            event = "sent",
            "max_key_uses: new value sent to the device (pending its confirm)"
        );
        let (st, msg) = replied.send_value(v)?;
        Ok(RenegStep::Value(Box::new(st), msg))
    }

    /// Completes a renegotiation: verifies the device's Confirm, records the
    /// new `max_key_uses` and narrows the key-index window to it.
    pub fn reneg_finish(
        &self,
        serial: &str,
        state: Box<ServerAwaitingConfirm>,
        confirm: &Sealed,
    ) -> Result<Applied, RegistryError> {
        let applied = state.on_confirm(confirm)?;
        let rec = self.device(serial)?;
        match self.reneg_pending(serial)? {
            Some(p) if p.counter == applied.counter => {}
            // Resolved meanwhile (a later round already adopted or dropped it).
            _ => return Ok(applied),
        }
        self.reneg_commit(
            serial,
            None,
            Some(None),
            Some((applied.max_key_uses, applied.max_key_uses)),
        )?;
        tracing::info!(
            target: "aorta::audit",
            serial,
            old = rec.max_key_uses,
            new = applied.max_key_uses,
            counter = applied.counter,
            base_seq = applied.base_seq,
            event = "confirmed",
            "max_key_uses changed"
        );
        Ok(applied)
    }
}
