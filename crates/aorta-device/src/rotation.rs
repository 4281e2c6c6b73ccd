//! Key rotation state and the sealer that uses it.
//!
//! **A use is one sealed frame.** Every frame takes the next sequence number;
//! the active key index is a pure function of the sequence number and the
//! current schedule segment:
//! `index(seq) = (base_index + (seq − base_seq) / max_key_uses) mod N`, so the
//! index advances after `max_key_uses` frames and loops over the slice.
//! A renegotiation of `max_key_uses` starts a new segment at the next
//! sequence number.
//!
//! **No (key, nonce) pair ever repeats.** The AES-GCM nonce is the sequence
//! number and the transport key is derived from the key group *and a 16-byte
//! epoch drawn from the OS CSPRNG each time a [`Sealer`] is created*
//! (`aorta_crypto::keys`). Within one sealer the sequence strictly increases
//! (checked arithmetic, never wraps), so nonces under each of its keys are
//! distinct, also after the key index wraps around the slice. Two sealers
//! (a reboot, a crash, a restored old state file) have independent random
//! epochs and therefore independent keys. Sequence reservation (below) is for
//! the server's replay window, not for nonce safety.
//!
//! **Reservation.** Before a sequence number is used, the state file records
//! a high-water mark `reserved_until` above it (atomic write-rename + fsync),
//! [`RESERVE`] numbers at a time. A new sealer starts at `reserved_until`, so
//! after a crash the sequence never goes back (numbers reserved but unused are
//! skipped; the server allows gaps). If an old state file is restored, the
//! server's acknowledgement tells the device its highest accepted sequence
//! and [`Sealer::sync_with_server`] jumps past it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aorta_base::codec::{Decode, DecodeError, Encode, Reader};
use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
use aorta_crypto::keys::{self, EPOCH_LEN};
use aorta_crypto::reneg::{DeviceAwaitingValue, DeviceStatus, Offer, RenegPolicy, Reply, Sealed};
use ring::rand::SystemRandom;

use crate::DeviceError;
use crate::fsutil::{io_err, write_atomic};
use crate::se::SecureElement;

/// Sequence numbers reserved per state write.
pub const RESERVE: u64 = 64;
/// Default `max_key_uses` (frames per key), shared with the registry.
pub use aorta_crypto::keys::DEFAULT_MAX_KEY_USES;

/// The persisted rotation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationState {
    /// Every sequence number below this may have been used.
    pub reserved_until: u64,
    /// First sequence of the current schedule segment.
    pub base_seq: u64,
    /// Key index at `base_seq`.
    pub base_index: u16,
    /// Frames per key in this segment.
    pub max_key_uses: u64,
    /// Counter of the last renegotiation Offer answered (replay
    /// protection: an Offer must be above it). Persisted before the Reply
    /// leaves.
    pub reneg_counter: u64,
    /// Counter of the last renegotiation applied (reported in the Reply, so
    /// the server can resolve a change a crash left unconfirmed).
    pub applied_counter: u64,
    /// Device-clock times (Unix seconds) of the last changes applied, at
    /// most [`MAX_CHANGE_HISTORY`], oldest first: the device's own rate limit.
    pub change_times: Vec<u64>,
}

/// Change times kept in the state file.
pub const MAX_CHANGE_HISTORY: usize = 16;

impl Default for RotationState {
    fn default() -> Self {
        RotationState {
            reserved_until: 0,
            base_seq: 0,
            base_index: 0,
            max_key_uses: DEFAULT_MAX_KEY_USES,
            reneg_counter: 0,
            applied_counter: 0,
            change_times: Vec::new(),
        }
    }
}

const STATE_MAGIC: &[u8; 4] = b"AOST";

/// Layout: `"AOST"`, version 2, then `reserved_until`, `base_seq` (u64),
/// `base_index` (u16), `max_key_uses`, `reneg_counter`, `applied_counter`
/// (u64), `n` (u8, at most [`MAX_CHANGE_HISTORY`]) and `n` change times
/// (u64), big-endian. Version 1 (without the last three fields) is still
/// read: its `applied_counter` is its `reneg_counter`, with no history.
impl Encode for RotationState {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(STATE_MAGIC);
        out.push(2);
        out.extend_from_slice(&self.reserved_until.to_be_bytes());
        out.extend_from_slice(&self.base_seq.to_be_bytes());
        out.extend_from_slice(&self.base_index.to_be_bytes());
        out.extend_from_slice(&self.max_key_uses.to_be_bytes());
        out.extend_from_slice(&self.reneg_counter.to_be_bytes());
        out.extend_from_slice(&self.applied_counter.to_be_bytes());
        let times = self
            .change_times
            .get(self.change_times.len().saturating_sub(MAX_CHANGE_HISTORY)..)
            .unwrap_or_default();
        out.push(times.len() as u8);
        for t in times {
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
}

impl Decode<'_> for RotationState {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if r.array::<4>("magic")? != *STATE_MAGIC {
            return Err(r.invalid("magic", 4, "not an aorta rotation state file"));
        }
        let version = r.u8("version")?;
        if version != 1 && version != 2 {
            return Err(r.invalid("version", 1, "unknown state version; upgrade aorta"));
        }
        let mut st = RotationState {
            reserved_until: r.u64("reserved_until")?,
            base_seq: r.u64("base_seq")?,
            base_index: r.u16("base_index")?,
            max_key_uses: r.u64("max_key_uses")?,
            reneg_counter: r.u64("reneg_counter")?,
            applied_counter: 0,
            change_times: Vec::new(),
        };
        st.applied_counter = st.reneg_counter;
        if version == 2 {
            st.applied_counter = r.u64("applied_counter")?;
            let n = usize::from(r.u8("change count")?);
            if n > MAX_CHANGE_HISTORY {
                return Err(r.invalid("change count", 43, "too many change times"));
            }
            for _ in 0..n {
                st.change_times.push(r.u64("change time")?);
            }
            if st.applied_counter > st.reneg_counter {
                return Err(r.invalid("state", 34, "inconsistent state"));
            }
        }
        if st.max_key_uses == 0 || st.base_seq > st.reserved_until {
            return Err(r.invalid("state", 34, "inconsistent state"));
        }
        Ok(st)
    }
}

impl RotationState {
    /// Key index for `seq` under a slice of `n` keys.
    pub fn key_index(&self, seq: u64, n: u16) -> u16 {
        let steps = seq.saturating_sub(self.base_seq) / self.max_key_uses.max(1);
        let n = u64::from(n.max(1));
        ((u64::from(self.base_index) + steps % n) % n) as u16
    }

    /// Loads the state file, or the default state if it does not exist.
    pub fn load(path: &Path) -> Result<Self, DeviceError> {
        match std::fs::read(path) {
            Ok(b) => Self::from_bytes(&b).map_err(|e| DeviceError::BadState {
                path: path.to_path_buf(),
                why: crate::se::why(&e),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io_err(path)(e)),
        }
    }

    /// Writes the state file atomically and durably.
    pub fn store(&self, path: &Path) -> Result<(), DeviceError> {
        write_atomic(path, &self.to_bytes())
    }
}

/// A sealed frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedFrame {
    /// Its sequence number.
    pub sequence: u64,
    /// Its key index.
    pub key_index: u16,
    /// The frame bytes.
    pub bytes: Vec<u8>,
}

/// Seals frames for one device run: owns the secure element, the state file
/// and this run's random epoch. The same code serves `aorta device seal` and
/// the live uploader.
pub struct Sealer<S: SecureElement> {
    se: S,
    state: RotationState,
    state_path: PathBuf,
    next_seq: u64,
    epoch: [u8; EPOCH_LEN],
    keys: HashMap<u16, TransportKey>,
}

impl<S: SecureElement> std::fmt::Debug for Sealer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("serial", &self.se.serial())
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl<S: SecureElement> Sealer<S> {
    /// Starts a run: loads (or creates) the state and draws a fresh epoch.
    pub fn new(se: S, state_path: impl AsRef<Path>) -> Result<Self, DeviceError> {
        let state_path = state_path.as_ref().to_path_buf();
        let state = RotationState::load(&state_path)?;
        let epoch = aorta_base::random::array::<EPOCH_LEN>().map_err(|_| DeviceError::Rng)?;
        Ok(Sealer {
            se,
            next_seq: state.reserved_until,
            state,
            state_path,
            epoch,
            keys: HashMap::new(),
        })
    }

    /// The secure element.
    pub fn secure_element(&self) -> &S {
        &self.se
    }

    /// This run's epoch (public: it travels in every frame header).
    pub fn epoch(&self) -> [u8; EPOCH_LEN] {
        self.epoch
    }

    /// The persisted state as last written.
    pub fn state(&self) -> &RotationState {
        &self.state
    }

    /// The next sequence number this sealer will use.
    pub fn next_sequence(&self) -> u64 {
        self.next_seq
    }

    /// After the server reports its highest accepted sequence (e.g. following
    /// the restore of an old state file), skip past it.
    pub fn sync_with_server(&mut self, highest_accepted: u64) -> Result<(), DeviceError> {
        let want = highest_accepted
            .checked_add(1)
            .ok_or(DeviceError::SequenceExhausted)?;
        if want > self.next_seq {
            self.next_seq = want;
            if self.state.reserved_until < want {
                let mut st = self.state.clone();
                st.reserved_until = want;
                st.store(&self.state_path)?;
                self.state = st;
            }
        }
        Ok(())
    }

    /// Applies a renegotiated `max_key_uses` from the next frame on
    /// (without touching the change history; for tests and tools).
    pub fn set_max_key_uses(
        &mut self,
        max_key_uses: u64,
        reneg_counter: u64,
    ) -> Result<(), DeviceError> {
        self.apply(max_key_uses, reneg_counter, None)
    }

    fn apply(
        &mut self,
        max_key_uses: u64,
        counter: u64,
        at: Option<u64>,
    ) -> Result<(), DeviceError> {
        if max_key_uses == 0 {
            return Err(DeviceError::Config("max_key_uses must be positive".into()));
        }
        let mut st = self.state.clone();
        st.base_index = st.key_index(self.next_seq, self.se.slice_len());
        st.base_seq = self.next_seq;
        st.max_key_uses = max_key_uses;
        st.reneg_counter = st.reneg_counter.max(counter);
        st.applied_counter = counter;
        st.reserved_until = st.reserved_until.max(self.next_seq);
        if let Some(t) = at {
            st.change_times.push(t);
            let extra = st.change_times.len().saturating_sub(MAX_CHANGE_HISTORY);
            st.change_times.drain(..extra);
        }
        st.store(&self.state_path)?;
        self.state = st;
        Ok(())
    }

    /// The schedule this device runs, as reported in a renegotiation Reply.
    pub fn reneg_status(&self) -> DeviceStatus {
        DeviceStatus {
            max_key_uses: self.state.max_key_uses,
            applied_counter: self.state.applied_counter,
            base_seq: self.state.base_seq,
        }
    }

    /// Renegotiation, device side, step 1: checks the server's Offer (MAC
    /// under the PSK from the secure element, serial, counter above the last
    /// one answered), records its counter durably (so the Offer can never be
    /// answered again, even after a reboot) and returns the Reply to send,
    /// which reports the device's schedule ([`Sealer::reneg_status`]).
    pub fn reneg_on_offer(
        &mut self,
        offer: &Offer,
    ) -> Result<(DeviceAwaitingValue, Reply), DeviceError> {
        let psk = keys::renegotiation_psk(&self.se)?;
        let rng = SystemRandom::new();
        let (st, reply) = DeviceAwaitingValue::on_offer(
            psk,
            self.se.serial(),
            self.state.reneg_counter,
            self.reneg_status(),
            offer,
            &rng,
        )?;
        let mut next = self.state.clone();
        next.reneg_counter = offer.counter;
        next.store(&self.state_path)?; // durable BEFORE the Reply leaves
        self.state = next;
        Ok((st, reply))
    }

    /// Renegotiation, device side, step 2: opens the Value and checks it
    /// against the device's own rules — the value must be below the current
    /// `max_key_uses` (renegotiation only lowers it, paper 003), and fewer
    /// than `policy.max_changes` changes may have been applied in the last
    /// `policy.window_secs` by the device's clock `now_secs`. Then applies it
    /// from the next frame on (durably, with its time in the change history)
    /// and returns the Confirm to send. A refused Value changes nothing.
    pub fn reneg_on_value(
        &mut self,
        st: DeviceAwaitingValue,
        msg: &Sealed,
        now_secs: u64,
        policy: RenegPolicy,
    ) -> Result<Sealed, DeviceError> {
        let (v, _) = st.peek_value(msg)?;
        if v >= self.state.max_key_uses {
            return Err(DeviceError::RenegRefused {
                reason: format!(
                    "max_key_uses {v} is not below the current {} (renegotiation only lowers it)",
                    self.state.max_key_uses
                ),
            });
        }
        if !policy.allows(&self.state.change_times, now_secs) {
            return Err(DeviceError::RenegRefused {
                reason: format!(
                    "{} changes in the last {} s already (device rate limit)",
                    policy.recent(&self.state.change_times, now_secs),
                    policy.window_secs
                ),
            });
        }
        let base = self.next_seq;
        let (v, counter, confirm) = st.on_value(msg, base)?;
        self.apply(v, counter, Some(now_secs))?;
        Ok(confirm)
    }

    /// Reserves the next sequence number (persisting a new high-water mark
    /// first when needed) and returns it with its key index.
    fn reserve(&mut self) -> Result<(u64, u16), DeviceError> {
        let seq = self.next_seq;
        if seq >= self.state.reserved_until {
            let mut st = self.state.clone();
            st.reserved_until = seq
                .checked_add(RESERVE)
                .ok_or(DeviceError::SequenceExhausted)?;
            st.store(&self.state_path)?; // durable BEFORE the number is used
            self.state = st;
        }
        self.next_seq = seq.checked_add(1).ok_or(DeviceError::SequenceExhausted)?;
        Ok((seq, self.state.key_index(seq, self.se.slice_len())))
    }

    /// Seals one RR-interval frame (codec 2, `docs/frame-format.md`):
    /// `rr_us` are consecutive intervals in µs (200 ms..5 s each), the first
    /// starting at the beat at `first_beat_us`. Same sequence numbers, key
    /// rotation and nonces as [`Sealer::seal`]; `description` names the
    /// sensor. Out-of-range intervals are refused before a sequence number is
    /// used.
    pub fn seal_rr(
        &mut self,
        first_beat_us: i64,
        description: &str,
        rr_us: &[i32],
    ) -> Result<SealedFrame, DeviceError> {
        frame::check_rr(rr_us).map_err(|e| DeviceError::Config(e.to_string()))?;
        let n = u32::try_from(rr_us.len())
            .map_err(|_| DeviceError::Config("RR frame too long".into()))?;
        // Validate the header before reserving a sequence number.
        FrameHeader::new_rr(self.se.serial(), 0, 0, first_beat_us, n, self.epoch)?;
        let (seq, index) = self.reserve()?;
        let header =
            FrameHeader::new_rr(self.se.serial(), index, seq, first_beat_us, n, self.epoch)?;
        let key = self.key(index)?;
        let bytes = frame::seal_rr(key, &header, description, rr_us)?;
        Ok(SealedFrame {
            sequence: seq,
            key_index: index,
            bytes,
        })
    }

    fn key(&mut self, index: u16) -> Result<&TransportKey, DeviceError> {
        if !self.keys.contains_key(&index) {
            // Keep only the active key of this run.
            self.keys.clear();
            let k = TransportKey::derive(&self.se, index, &self.epoch)?;
            self.keys.insert(index, k);
        }
        self.keys.get(&index).ok_or(DeviceError::Rng)
    }

    /// Seals one frame of samples (one slice per channel).
    pub fn seal(
        &mut self,
        first_sample_us: i64,
        sample_rate_mhz: u32,
        calibration: &[ChannelCalibration],
        samples: &[&[i32]],
    ) -> Result<SealedFrame, DeviceError> {
        let channels = u16::try_from(samples.len())
            .map_err(|_| DeviceError::Config("too many channels".into()))?;
        let n = samples.first().map_or(0, |s| s.len());
        let n = u32::try_from(n).map_err(|_| DeviceError::Config("frame too long".into()))?;
        let (seq, index) = self.reserve()?;
        let header = FrameHeader::new(
            self.se.serial(),
            index,
            seq,
            first_sample_us,
            sample_rate_mhz,
            channels,
            n,
            self.epoch,
        )?;
        if !self.keys.contains_key(&index) {
            // Keep only the active key of this run.
            self.keys.clear();
            let k = TransportKey::derive(&self.se, index, &self.epoch)?;
            self.keys.insert(index, k);
        }
        let key = self.keys.get(&index).ok_or(DeviceError::Rng)?;
        let bytes = frame::seal(key, &header, calibration, samples)?;
        Ok(SealedFrame {
            sequence: seq,
            key_index: index,
            bytes,
        })
    }
}
