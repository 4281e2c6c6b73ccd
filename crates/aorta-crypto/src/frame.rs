//! Upload frames: compress, then encrypt with AES-256-GCM; the header is the
//! AEAD associated data. The byte layout and the rules a reader MUST follow
//! are specified in `docs/frame-format.md`.
//!
//! ```
//! use aorta_crypto::frame::{self, ChannelCalibration, FrameHeader, TransportKey};
//! use aorta_crypto::keys::KeySlice;
//! let keys = KeySlice::new("SN-1", vec![7u8; 120 * 32])?;
//! let epoch = [1u8; 16];
//! let key = TransportKey::derive(&keys, 0, &epoch)?;
//! let header = FrameHeader::new("SN-1", 0, 1, 0, 360_000, 1, 3, epoch)?;
//! let cal = vec![ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII")];
//! let bytes = frame::seal(&key, &header, &cal, &[&[1, 2, 3][..]])?;
//! let opened = frame::parse(&bytes)?.open(&key)?;
//! assert_eq!(opened.samples, vec![vec![1, 2, 3]]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use aorta_base::codec::{self as wire, Decode, DecodeError, Encode, Reader};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use crate::codec::{self, CODEC_LPC_ZSTD, CODEC_RR, CodecError};
use crate::keys::{self, EPOCH_LEN, KeyError, KeyPrf, MAX_SERIAL_LEN};

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"AOFR";
/// The only frame version this build reads and writes.
pub const VERSION: u8 = 1;
/// Bytes of the fixed part of the header (before the serial).
pub const FIXED_HEADER_LEN: usize = 51;
/// AEAD tag length.
pub const TAG_LEN: usize = 16;
/// Largest frame accepted (8 MiB).
pub const MAX_FRAME_LEN: usize = 8 << 20;
/// Most channels per frame.
pub const MAX_CHANNELS: u16 = 32;
/// Most samples (all channels together) per frame.
pub const MAX_SAMPLES_PER_FRAME: u64 = 4 << 20;
/// The `sample_rate_mhz` every RR frame (codec 2) carries: 1 MHz, i.e. one
/// tick per microsecond, the unit of its values. Any other value is refused.
pub const RR_SAMPLE_RATE_MHZ: u32 = 1_000_000_000;
/// Shortest RR interval accepted, µs (300 beats/min).
pub const MIN_RR_US: i32 = 200_000;
/// Longest RR interval accepted, µs. A longer pause is sent as a gap: the
/// next frame starts at the beat that ends it.
pub const MAX_RR_US: i32 = 5_000_000;

/// WFDB's default ADC gain (digital units per physical unit).
pub const DEFAULT_GAIN: f64 = 200.0;

/// The one gain rule of aorta, for the device that writes a calibration and
/// the worker that applies one: a gain that is not a finite number above 0
/// is replaced by [`DEFAULT_GAIN`].
pub fn usable_gain(gain: f64) -> f64 {
    if gain.is_finite() && gain > 0.0 {
        gain
    } else {
        DEFAULT_GAIN
    }
}
/// Most RR intervals per frame.
pub const MAX_RR_PER_FRAME: u32 = 65_536;
/// Units of the single calibration entry of an RR frame.
pub const RR_UNITS: &str = "us";
/// ADC resolution field of an RR frame's calibration (the values are i32).
pub const RR_RESOLUTION: u16 = 32;

/// Why a frame is refused by the pure frame layer (malformed or forged input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes than the header or the declared ciphertext needs.
    #[error("truncated frame: needs {needed} bytes, has {available}")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// Bytes after the declared ciphertext.
    #[error("{extra} trailing bytes after the frame")]
    TrailingBytes {
        /// Extra bytes.
        extra: u64,
    },
    /// The frame (or its declared ciphertext) is larger than allowed.
    #[error("oversize frame: {len} bytes, at most {max}")]
    Oversize {
        /// Declared or actual size.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// Not an aorta frame.
    #[error("not an aorta frame (bad magic)")]
    BadMagic,
    /// A frame version this build does not know.
    #[error(
        "unknown frame version {found} (this build reads version {VERSION}); upgrade aorta to read it"
    )]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
    },
    /// Unknown codec identifier.
    #[error("unknown codec {codec}")]
    UnknownCodec {
        /// Codec byte found.
        codec: u8,
    },
    /// A header field is out of range.
    #[error("bad header field {field}")]
    BadField {
        /// Which field.
        field: &'static str,
    },
    /// Authentication failed: wrong key, or any bit of header or ciphertext changed.
    #[error("authentication failed (tampered frame or wrong key)")]
    AuthenticationFailed,
    /// The compressed payload would expand beyond the declared samples.
    #[error("decompression bomb: payload declares {declared} bytes, at most {limit}")]
    DecompressionBomb {
        /// Declared size.
        declared: u64,
        /// Limit.
        limit: u64,
    },
    /// The authenticated payload does not parse.
    #[error("malformed payload: {0}")]
    MalformedPayload(&'static str),
    /// An RR frame (codec 2) holds an interval outside
    /// [`MIN_RR_US`]`..=`[`MAX_RR_US`].
    #[error("RR interval {index} is {value_us} µs, outside {MIN_RR_US}..={MAX_RR_US} µs")]
    RrOutOfRange {
        /// Index of the interval in the frame.
        index: u32,
        /// The value, µs.
        value_us: i32,
    },
    /// An RR frame's calibration is not the fixed RR calibration
    /// ([`ChannelCalibration::rr`]).
    #[error("RR frame calibration field {field} is not the RR calibration")]
    RrCalibration {
        /// Which field.
        field: &'static str,
    },
}

/// Why a frame cannot be sealed (caller's input or our bug).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Samples do not match the header's channels and count.
    #[error("samples do not match the header: {0}")]
    Shape(&'static str),
    /// A header or calibration field is out of range.
    #[error("bad field {0}")]
    BadField(&'static str),
    /// Key derivation failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Compression failed.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The AEAD refused (our bug).
    #[error("AEAD seal failed")]
    Aead,
}

/// The authenticated frame header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// Format version ([`VERSION`]).
    pub version: u8,
    /// Codec ([`CODEC_LPC_ZSTD`]).
    pub codec: u8,
    /// Device serial number.
    pub serial: String,
    /// Index of the active factory key group.
    pub key_index: u16,
    /// Frame sequence number, strictly increasing per device.
    pub sequence: u64,
    /// Time of the first sample, microseconds since the Unix epoch (device clock).
    pub first_sample_us: i64,
    /// Sampling rate in millihertz.
    pub sample_rate_mhz: u32,
    /// Number of channels.
    pub channels: u16,
    /// Samples per channel in this frame.
    pub samples_per_channel: u32,
    /// Random per-run epoch bound into the transport key.
    pub epoch: [u8; EPOCH_LEN],
}

impl FrameHeader {
    /// A version-1 header with the aorta codec; validates every field.
    #[allow(
        clippy::too_many_arguments,
        reason = "a frame header has eight independent fields; a builder would only rename them"
    )]
    pub fn new(
        serial: &str,
        key_index: u16,
        sequence: u64,
        first_sample_us: i64,
        sample_rate_mhz: u32,
        channels: u16,
        samples_per_channel: u32,
        epoch: [u8; EPOCH_LEN],
    ) -> Result<Self, SealError> {
        FrameHeader {
            version: VERSION,
            codec: CODEC_LPC_ZSTD,
            serial: serial.to_owned(),
            key_index,
            sequence,
            first_sample_us,
            sample_rate_mhz,
            channels,
            samples_per_channel,
            epoch,
        }
        .validated()
    }

    /// `self` once [`FrameHeader::validate`] accepts it, as a sealing error.
    fn validated(self) -> Result<Self, SealError> {
        self.validate().map_err(|e| match e {
            FrameError::BadField { field } => SealError::BadField(field),
            _ => SealError::BadField("header"),
        })?;
        Ok(self)
    }

    fn validate(&self) -> Result<(), FrameError> {
        if self.version != VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: self.version,
            });
        }
        if self.codec != CODEC_LPC_ZSTD && self.codec != CODEC_RR {
            return Err(FrameError::UnknownCodec { codec: self.codec });
        }
        if keys::check_serial(&self.serial).is_err() {
            return Err(FrameError::BadField { field: "serial" });
        }
        if self.sample_rate_mhz == 0 {
            return Err(FrameError::BadField {
                field: "sample_rate",
            });
        }
        if self.channels == 0 || self.channels > MAX_CHANNELS {
            return Err(FrameError::BadField { field: "channels" });
        }
        if self.samples_per_channel == 0
            || u64::from(self.channels) * u64::from(self.samples_per_channel)
                > MAX_SAMPLES_PER_FRAME
        {
            return Err(FrameError::BadField {
                field: "samples_per_channel",
            });
        }
        if self.codec == CODEC_RR {
            if self.sample_rate_mhz != RR_SAMPLE_RATE_MHZ {
                return Err(FrameError::BadField {
                    field: "sample_rate",
                });
            }
            if self.channels != 1 {
                return Err(FrameError::BadField { field: "channels" });
            }
            if self.samples_per_channel > MAX_RR_PER_FRAME {
                return Err(FrameError::BadField {
                    field: "samples_per_channel",
                });
            }
            // The last beat's time must be representable.
            let span = i64::from(self.samples_per_channel) * i64::from(MAX_RR_US);
            if self.first_sample_us.checked_add(span).is_none() {
                return Err(FrameError::BadField {
                    field: "first_sample_us",
                });
            }
        }
        Ok(())
    }

    /// A version-1 header of an RR frame (codec 2) holding `intervals` RR
    /// intervals whose first beat is at `first_beat_us`; validates every field.
    pub fn new_rr(
        serial: &str,
        key_index: u16,
        sequence: u64,
        first_beat_us: i64,
        intervals: u32,
        epoch: [u8; EPOCH_LEN],
    ) -> Result<Self, SealError> {
        let h = Self::new(
            serial,
            key_index,
            sequence,
            first_beat_us,
            RR_SAMPLE_RATE_MHZ,
            1,
            intervals,
            epoch,
        )?;
        FrameHeader {
            codec: CODEC_RR,
            ..h
        }
        .validated()
    }

    /// True for an RR-interval frame (codec 2).
    pub fn is_rr(&self) -> bool {
        self.codec == CODEC_RR
    }

    /// Sampling rate in Hz.
    pub fn sample_rate_hz(&self) -> f64 {
        f64::from(self.sample_rate_mhz) / 1000.0
    }

    /// The header's bytes as a frame carries them (the AEAD's associated
    /// data), declaring a ciphertext of `ct_len` bytes.
    pub fn encode_with_len(&self, ct_len: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(FIXED_HEADER_LEN + self.serial.len() + 4);
        b.extend_from_slice(&MAGIC);
        b.push(self.version);
        b.push(self.codec);
        b.extend_from_slice(&self.key_index.to_be_bytes());
        b.extend_from_slice(&self.sequence.to_be_bytes());
        b.extend_from_slice(&self.first_sample_us.to_be_bytes());
        b.extend_from_slice(&self.sample_rate_mhz.to_be_bytes());
        b.extend_from_slice(&self.channels.to_be_bytes());
        b.extend_from_slice(&self.samples_per_channel.to_be_bytes());
        b.extend_from_slice(&self.epoch);
        b.push(self.serial.len() as u8); // ≤ 64, validated
        b.extend_from_slice(self.serial.as_bytes());
        b.extend_from_slice(&ct_len.to_be_bytes());
        b
    }
}

/// A channel's calibration, carried inside the encrypted payload so the
/// server can write the samples back with their physical meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelCalibration {
    /// ADC units per physical unit.
    pub gain: f64,
    /// Digital value of physical zero.
    pub baseline: i32,
    /// ADC zero.
    pub adc_zero: i32,
    /// ADC resolution in bits.
    pub adc_resolution: u16,
    /// Physical units (e.g. `mV`), at most 255 bytes.
    pub units: String,
    /// Lead or signal description, at most 255 bytes.
    pub description: String,
}

impl ChannelCalibration {
    /// Convenience constructor.
    pub fn new(
        gain: f64,
        baseline: i32,
        adc_zero: i32,
        adc_resolution: u16,
        units: &str,
        description: &str,
    ) -> Self {
        ChannelCalibration {
            gain,
            baseline,
            adc_zero,
            adc_resolution,
            units: units.to_owned(),
            description: description.to_owned(),
        }
    }
}

impl ChannelCalibration {
    /// The one calibration an RR frame carries: gain 1, baseline 0,
    /// adc_zero 0, resolution 32, units `us`; `description` is free text
    /// (e.g. the sensor, `RR chest strap`).
    pub fn rr(description: &str) -> Self {
        ChannelCalibration::new(1.0, 0, 0, RR_RESOLUTION, RR_UNITS, description)
    }

    fn check_rr(&self) -> Result<(), FrameError> {
        let field = if self.gain.to_bits() != 1f64.to_bits() {
            "gain"
        } else if self.baseline != 0 {
            "baseline"
        } else if self.adc_zero != 0 {
            "adc_zero"
        } else if self.adc_resolution != RR_RESOLUTION {
            "adc_resolution"
        } else if self.units != RR_UNITS {
            "units"
        } else {
            return Ok(());
        };
        Err(FrameError::RrCalibration { field })
    }
}

/// One calibration entry: `gain f64 (IEEE bits) ‖ baseline i32 ‖ adc_zero
/// i32 ‖ adc_resolution u16 ‖ len u8 ‖ units ‖ len u8 ‖ description`. The
/// strings must be at most 255 bytes ([`seal`] refuses longer ones; every
/// decoded entry fits).
impl Encode for ChannelCalibration {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.gain.to_bits().to_be_bytes());
        out.extend_from_slice(&self.baseline.to_be_bytes());
        out.extend_from_slice(&self.adc_zero.to_be_bytes());
        out.extend_from_slice(&self.adc_resolution.to_be_bytes());
        let _ = wire::put_bytes_u8(out, "units", self.units.as_bytes());
        let _ = wire::put_bytes_u8(out, "description", self.description.as_bytes());
    }
}

impl Decode<'_> for ChannelCalibration {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let gain = f64::from_bits(r.u64("gain")?);
        let baseline = i32::from_be_bytes(r.array("baseline")?);
        let adc_zero = i32::from_be_bytes(r.array("adc_zero")?);
        let adc_resolution = r.u16("adc_resolution")?;
        let mut text = |field| -> Result<String, DecodeError> {
            let b = r.bytes_u8(field)?;
            String::from_utf8(b.to_vec())
                .map_err(|_| r.invalid(field, b.len(), "calibration not UTF-8"))
        };
        let units = text("units")?;
        let description = text("description")?;
        if !gain.is_finite() {
            return Err(DecodeError::Invalid {
                field: "gain",
                offset: at,
                reason: "gain not finite",
            });
        }
        Ok(ChannelCalibration {
            gain,
            baseline,
            adc_zero,
            adc_resolution,
            units,
            description,
        })
    }
}

/// Checks every RR interval is inside [`MIN_RR_US`]`..=`[`MAX_RR_US`].
pub fn check_rr(rr_us: &[i32]) -> Result<(), FrameError> {
    match rr_us
        .iter()
        .position(|v| !(MIN_RR_US..=MAX_RR_US).contains(v))
    {
        None => Ok(()),
        Some(i) => Err(FrameError::RrOutOfRange {
            index: u32::try_from(i).unwrap_or(u32::MAX),
            value_us: rr_us.get(i).copied().unwrap_or_default(),
        }),
    }
}

/// An opened, authenticated frame.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenedFrame {
    /// The authenticated header.
    pub header: FrameHeader,
    /// Per-channel calibration.
    pub calibration: Vec<ChannelCalibration>,
    /// Digital samples per channel.
    pub samples: Vec<Vec<i32>>,
}

/// A transport key ready for AES-256-GCM. No `Debug` of key bytes.
pub struct TransportKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for TransportKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportKey(AES-256-GCM)")
    }
}

impl TransportKey {
    /// Derives the transport key of `index` and `epoch` (see [`keys`]).
    pub fn derive(prf: &dyn KeyPrf, index: u16, epoch: &[u8; EPOCH_LEN]) -> Result<Self, KeyError> {
        let raw = keys::transport_key_bytes(prf, index, epoch)?;
        Self::from_bytes(&raw)
    }

    /// The transport key of `index` and `epoch` from the device's group key
    /// of `index` ([`keys::transport_group_key`]) — what an attested worker
    /// holding the broker's released group keys uses.
    pub fn from_group(
        group: &[u8; 32],
        serial: &str,
        index: u16,
        epoch: &[u8; EPOCH_LEN],
    ) -> Result<Self, KeyError> {
        let raw = keys::transport_key_from_group(group, serial, index, epoch)?;
        Self::from_bytes(&raw)
    }

    /// Wraps 32 raw key bytes (the caller zeroizes its copy).
    pub fn from_bytes(raw: &[u8; 32]) -> Result<Self, KeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, raw).map_err(|_| KeyError::Hkdf)?;
        Ok(TransportKey {
            key: LessSafeKey::new(unbound),
        })
    }
}

fn nonce(sequence: u64) -> Nonce {
    let mut n = [0u8; 12];
    for (d, s) in n.iter_mut().skip(4).zip(sequence.to_be_bytes()) {
        *d = s;
    }
    Nonce::assume_unique_for_key(n)
}

/// Seals one RR frame: `rr_us` are consecutive RR intervals in µs, the first
/// starting at the beat `header.first_sample_us` (a header from
/// [`FrameHeader::new_rr`]); the calibration is [`ChannelCalibration::rr`].
pub fn seal_rr(
    key: &TransportKey,
    header: &FrameHeader,
    description: &str,
    rr_us: &[i32],
) -> Result<Vec<u8>, SealError> {
    if !header.is_rr() {
        return Err(SealError::BadField("codec"));
    }
    seal(
        key,
        header,
        &[ChannelCalibration::rr(description)],
        &[rr_us],
    )
}

/// Compresses and seals `samples` (one slice per channel) under `key`. For an
/// RR header (codec 2) the calibration and values must follow the RR rules.
pub fn seal(
    key: &TransportKey,
    header: &FrameHeader,
    calibration: &[ChannelCalibration],
    samples: &[&[i32]],
) -> Result<Vec<u8>, SealError> {
    header
        .validate()
        .map_err(|_| SealError::BadField("header"))?;
    if samples.len() != usize::from(header.channels) || calibration.len() != samples.len() {
        return Err(SealError::Shape("channel count"));
    }
    if samples
        .iter()
        .any(|s| s.len() as u64 != u64::from(header.samples_per_channel))
    {
        return Err(SealError::Shape("samples per channel"));
    }
    if header.is_rr() {
        for c in calibration {
            c.check_rr().map_err(|e| match e {
                FrameError::RrCalibration { field } => SealError::BadField(field),
                _ => SealError::BadField("calibration"),
            })?;
        }
        for s in samples {
            check_rr(s).map_err(|_| SealError::BadField("rr interval out of range"))?;
        }
    }
    let mut cal = Vec::new();
    for c in calibration {
        if !c.gain.is_finite() {
            return Err(SealError::BadField("gain"));
        }
        for (field, text) in [("units", &c.units), ("description", &c.description)] {
            if text.len() > usize::from(u8::MAX) {
                return Err(SealError::BadField(field));
            }
        }
        c.encode(&mut cal);
    }
    let cal_len = u16::try_from(cal.len()).map_err(|_| SealError::BadField("calibration"))?;
    let block = codec::encode(samples)?;
    let mut body = Vec::with_capacity(2 + cal.len() + block.len() + TAG_LEN);
    body.extend_from_slice(&cal_len.to_be_bytes());
    body.extend_from_slice(&cal);
    body.extend_from_slice(&block);
    let ct_len = u32::try_from(body.len() + TAG_LEN).map_err(|_| SealError::Shape("too big"))?;
    let mut out = header.encode_with_len(ct_len);
    if out.len() + ct_len as usize > MAX_FRAME_LEN {
        return Err(SealError::Shape("frame larger than MAX_FRAME_LEN"));
    }
    let tag = key
        .key
        .seal_in_place_separate_tag(nonce(header.sequence), Aad::from(out.as_slice()), &mut body)
        .map_err(|_| SealError::Aead)?;
    out.extend_from_slice(&body);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// A frame whose header parsed and whose length is consistent, not yet authenticated.
#[derive(Debug)]
pub struct ParsedFrame<'a> {
    /// The header (NOT yet authenticated: use only to find the key and to refuse early).
    pub header: FrameHeader,
    aad: &'a [u8],
    ciphertext: &'a [u8],
}

/// A short read of the header: `needed` and `available` are absolute, as
/// [`FrameError::Truncated`] reports them.
fn truncated(e: DecodeError) -> FrameError {
    match e {
        DecodeError::Short {
            offset,
            needed,
            available,
            ..
        } => FrameError::Truncated {
            needed: offset.saturating_add(needed) as u64,
            available: offset.saturating_add(available) as u64,
        },
        DecodeError::Trailing { extra, .. } => FrameError::TrailingBytes {
            extra: extra as u64,
        },
        DecodeError::Invalid { field, .. } => FrameError::BadField { field },
        _ => FrameError::BadField { field: "frame" },
    }
}

/// Parses the header and checks sizes. Refuses oversize input before
/// looking at it, and any frame whose declared length disagrees with the bytes.
pub fn parse(bytes: &[u8]) -> Result<ParsedFrame<'_>, FrameError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(FrameError::Oversize {
            len: bytes.len() as u64,
            max: MAX_FRAME_LEN as u64,
        });
    }
    let mut r = Reader::new(bytes);
    let (header, ct_len) = read_header(&mut r)?;
    let header_len = r.position();
    let ciphertext = r.take(ct_len, "ciphertext").map_err(truncated)?;
    r.finish().map_err(truncated)?;
    let aad = bytes.get(..header_len).ok_or(FrameError::Truncated {
        needed: header_len as u64,
        available: bytes.len() as u64,
    })?;
    Ok(ParsedFrame {
        header,
        aad,
        ciphertext,
    })
}

/// What the first bytes of a frame tell before the rest arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePrefix {
    /// The header (validated as [`parse`] validates it).
    pub header: FrameHeader,
    /// The whole frame's length: header and ciphertext.
    pub len: usize,
}

/// Parses a frame's header from its first bytes: `Ok(None)` while more
/// bytes are needed, the [`FrameError`] [`parse`] would give as soon as the
/// header shows it (bad magic, version, field, oversize), else the header
/// and the frame's whole length. For a receiver that refuses a body that
/// cannot be a frame before reading it all.
pub fn parse_prefix(bytes: &[u8]) -> Result<Option<FramePrefix>, FrameError> {
    let mut r = Reader::new(bytes);
    match read_header(&mut r) {
        Ok((header, ct_len)) => Ok(Some(FramePrefix {
            header,
            len: r.position() + ct_len,
        })),
        Err(FrameError::Truncated { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads and checks the header (everything before the ciphertext); returns
/// it and the ciphertext's length.
fn read_header(r: &mut Reader<'_>) -> Result<(FrameHeader, usize), FrameError> {
    if r.array::<4>("magic").map_err(truncated)? != MAGIC {
        return Err(FrameError::BadMagic);
    }
    let version = r.u8("version").map_err(truncated)?;
    if version != VERSION {
        return Err(FrameError::UnsupportedVersion { found: version });
    }
    let codec = r.u8("codec").map_err(truncated)?;
    let key_index = r.u16("key_index").map_err(truncated)?;
    let sequence = r.u64("sequence").map_err(truncated)?;
    let first_sample_us = r.i64("first_sample_us").map_err(truncated)?;
    let sample_rate_mhz = r.u32("sample_rate_mhz").map_err(truncated)?;
    let channels = r.u16("channels").map_err(truncated)?;
    let samples_per_channel = r.u32("samples_per_channel").map_err(truncated)?;
    let epoch: [u8; EPOCH_LEN] = r.array("epoch").map_err(truncated)?;
    let serial_len = r.u8("serial_len").map_err(truncated)?;
    if serial_len == 0 || usize::from(serial_len) > MAX_SERIAL_LEN {
        return Err(FrameError::BadField { field: "serial" });
    }
    let serial = std::str::from_utf8(
        r.take(usize::from(serial_len), "serial")
            .map_err(truncated)?,
    )
    .map_err(|_| FrameError::BadField { field: "serial" })?
    .to_owned();
    let ct_len = r.u32("ciphertext_len").map_err(truncated)? as usize;
    let header_len = r.position();
    if header_len + ct_len > MAX_FRAME_LEN {
        return Err(FrameError::Oversize {
            len: (header_len + ct_len) as u64,
            max: MAX_FRAME_LEN as u64,
        });
    }
    if ct_len < TAG_LEN + 2 {
        return Err(FrameError::BadField {
            field: "ciphertext_len",
        });
    }
    let header = FrameHeader {
        version,
        codec,
        serial,
        key_index,
        sequence,
        first_sample_us,
        sample_rate_mhz,
        channels,
        samples_per_channel,
        epoch,
    };
    header.validate()?;
    Ok((header, ct_len))
}

/// The whole frame, exactly as parsed.
impl Encode for ParsedFrame<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.aad);
        out.extend_from_slice(self.ciphertext);
    }
}

/// All the remaining bytes as one frame ([`parse`]); its [`FrameError`]
/// becomes [`DecodeError::Invalid`] (use [`parse`] for the typed error).
impl<'a> Decode<'a> for ParsedFrame<'a> {
    fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let at = r.position();
        parse(r.rest()).map_err(|e| DecodeError::Invalid {
            field: "frame",
            offset: at,
            reason: match e {
                FrameError::Truncated { .. } => "truncated",
                FrameError::TrailingBytes { .. } => "trailing bytes",
                FrameError::Oversize { .. } => "oversize",
                FrameError::BadMagic => "bad magic",
                FrameError::UnsupportedVersion { .. } => "unsupported version",
                FrameError::UnknownCodec { .. } => "unknown codec",
                FrameError::BadField { field } => field,
                _ => "invalid",
            },
        })
    }
}

impl ParsedFrame<'_> {
    /// Length of the whole frame in bytes.
    pub fn len(&self) -> usize {
        self.aad.len() + self.ciphertext.len()
    }

    /// Always false: a parsed frame has a header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Authenticates and decrypts under `key`, then decompresses.
    pub fn open(self, key: &TransportKey) -> Result<OpenedFrame, FrameError> {
        // The decrypted payload is wiped on drop (the caller owns the samples).
        let mut body = zeroize::Zeroizing::new(self.ciphertext.to_vec());
        let plain = key
            .key
            .open_in_place(nonce(self.header.sequence), Aad::from(self.aad), &mut body)
            .map_err(|_| FrameError::AuthenticationFailed)?;
        let mut r = Reader::new(plain);
        let payload = |e: DecodeError| match e {
            DecodeError::Invalid { reason, .. } => FrameError::MalformedPayload(reason),
            DecodeError::Trailing { .. } => {
                FrameError::MalformedPayload("calibration has trailing bytes")
            }
            _ => FrameError::MalformedPayload("calibration truncated"),
        };
        let cal_bytes = r.bytes_u16("calibration").map_err(payload)?;
        let block = r.rest();
        let mut cr = Reader::new(cal_bytes);
        let mut calibration = Vec::with_capacity(usize::from(self.header.channels));
        for _ in 0..self.header.channels {
            calibration.push(ChannelCalibration::decode(&mut cr).map_err(payload)?);
        }
        cr.finish().map_err(payload)?;
        let samples = codec::decode(
            block,
            usize::from(self.header.channels),
            self.header.samples_per_channel as usize,
        )
        .map_err(|e| match e {
            CodecError::DecompressionBomb { declared, limit } => {
                FrameError::DecompressionBomb { declared, limit }
            }
            CodecError::Malformed(m) => FrameError::MalformedPayload(m),
            _ => FrameError::MalformedPayload("codec"),
        })?;
        if self.header.is_rr() {
            for c in &calibration {
                c.check_rr()?;
            }
            for s in &samples {
                check_rr(s)?;
            }
        }
        Ok(OpenedFrame {
            header: self.header,
            calibration,
            samples,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn one_gain_rule() {
        assert_eq!(usable_gain(100.0), 100.0);
        for g in [0.0, -200.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(usable_gain(g), DEFAULT_GAIN, "{g}");
        }
    }
    #[test]
    fn a_prefix_tells_the_header_and_length_as_soon_as_it_is_there() {
        let (_, f, _) = sample_frame(7);
        let header_len = parse(&f).unwrap().aad.len();
        for n in 0..f.len() {
            let got = parse_prefix(&f[..n]).unwrap();
            if n < header_len {
                assert_eq!(got, None, "{n}");
            } else {
                let p = got.unwrap();
                assert_eq!((p.len, p.header.sequence), (f.len(), 7));
                assert_eq!(p.header.serial, "SN-TEST");
            }
        }
        // Whatever the header refuses is refused from the prefix alone.
        let mut bad = f.clone();
        bad[0] ^= 1;
        assert_eq!(parse_prefix(&bad[..4]), Err(FrameError::BadMagic));
        let mut bad = f.clone();
        bad[4] = 9;
        assert!(matches!(
            parse_prefix(&bad[..5]),
            Err(FrameError::UnsupportedVersion { found: 9 })
        ));
        let mut huge = f[..header_len].to_vec();
        let at = header_len - 4;
        huge[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            parse_prefix(&huge),
            Err(FrameError::Oversize { .. })
        ));
    }

    use crate::keys::KeySlice;

    pub(crate) fn sample_frame(seq: u64) -> (TransportKey, Vec<u8>, Vec<Vec<i32>>) {
        let keys = KeySlice::new("SN-TEST", (0..120 * 32).map(|i| i as u8).collect()).unwrap();
        let epoch = [9u8; 16];
        let key = TransportKey::derive(&keys, 3, &epoch).unwrap();
        let x: Vec<i32> = (0..40).map(|i| 1000 + (i * 7) % 23).collect();
        let y: Vec<i32> = (0..40).map(|i| 990 - (i * 5) % 17).collect();
        let h = FrameHeader::new(
            "SN-TEST",
            3,
            seq,
            1_700_000_000_000_000,
            360_000,
            2,
            40,
            epoch,
        )
        .unwrap();
        let cal = vec![
            ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "MLII"),
            ChannelCalibration::new(200.0, 1024, 1024, 11, "mV", "V5"),
        ];
        let bytes = seal(&key, &h, &cal, &[&x, &y]).unwrap();
        (key, bytes, vec![x, y])
    }

    #[test]
    fn seal_open_round_trip() {
        let (key, bytes, samples) = sample_frame(42);
        let p = parse(&bytes).unwrap();
        assert_eq!(p.header.sequence, 42);
        let o = p.open(&key).unwrap();
        assert_eq!(o.samples, samples);
        assert_eq!(o.calibration[1].description, "V5");
    }

    #[test]
    fn each_refusal_has_its_kind() {
        let (key, bytes, _) = sample_frame(1);
        // flipped ciphertext bit
        let mut b = bytes.clone();
        *b.last_mut().unwrap() ^= 1;
        assert_eq!(
            parse(&b).unwrap().open(&key).unwrap_err(),
            FrameError::AuthenticationFailed
        );
        // flipped header bit (sequence)
        let mut b = bytes.clone();
        b[15] ^= 1;
        assert_eq!(
            parse(&b).unwrap().open(&key).unwrap_err(),
            FrameError::AuthenticationFailed
        );
        // truncation
        assert!(matches!(
            parse(&bytes[..bytes.len() - 1]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            parse(&bytes[..10]),
            Err(FrameError::Truncated { .. })
        ));
        // trailing
        let mut b = bytes.clone();
        b.push(0);
        assert!(matches!(
            parse(&b),
            Err(FrameError::TrailingBytes { extra: 1 })
        ));
        // oversize
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        assert!(matches!(parse(&big), Err(FrameError::Oversize { .. })));
        // version
        let mut b = bytes.clone();
        b[4] = 2;
        assert_eq!(
            parse(&b).unwrap_err(),
            FrameError::UnsupportedVersion { found: 2 }
        );
        assert!(parse(&b).unwrap_err().to_string().contains("upgrade"));
        let mut b = bytes.clone();
        b[0] = b'X';
        assert_eq!(parse(&b).unwrap_err(), FrameError::BadMagic);
        let mut b = bytes.clone();
        b[5] = 9;
        assert_eq!(
            parse(&b).unwrap_err(),
            FrameError::UnknownCodec { codec: 9 }
        );
    }

    #[test]
    fn decompression_bomb_from_a_key_holder_is_refused() {
        // A compromised device (it has the key) seals a payload whose zstd
        // frame declares far more bytes than its header's samples.
        let keys = KeySlice::new("SN-B", vec![3u8; 120 * 32]).unwrap();
        let epoch = [0u8; 16];
        let key = TransportKey::derive(&keys, 0, &epoch).unwrap();
        let h = FrameHeader::new("SN-B", 0, 5, 0, 360_000, 1, 10, epoch).unwrap();
        let mut body = Vec::new();
        let cal = {
            let mut c = Vec::new();
            c.extend_from_slice(&200f64.to_bits().to_be_bytes());
            c.extend_from_slice(&[0; 10]);
            c.extend_from_slice(&[0, 0]);
            c
        };
        body.extend_from_slice(&(cal.len() as u16).to_be_bytes());
        body.extend_from_slice(&cal);
        body.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 50 << 20], 3).unwrap());
        let ct_len = (body.len() + TAG_LEN) as u32;
        let mut out = h.encode_with_len(ct_len);
        let tag = key
            .key
            .seal_in_place_separate_tag(nonce(5), Aad::from(out.as_slice()), &mut body)
            .unwrap();
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        assert!(out.len() < 10_000);
        assert!(matches!(
            parse(&out).unwrap().open(&key),
            Err(FrameError::DecompressionBomb { .. })
        ));
    }

    #[test]
    fn seal_refuses_bad_input() {
        let keys = KeySlice::new("SN", vec![3u8; 120 * 32]).unwrap();
        let key = TransportKey::derive(&keys, 0, &[0; 16]).unwrap();
        let h = FrameHeader::new("SN", 0, 0, 0, 360_000, 1, 3, [0; 16]).unwrap();
        let cal = vec![ChannelCalibration::new(1.0, 0, 0, 16, "mV", "x")];
        assert!(seal(&key, &h, &cal, &[&[1, 2][..]]).is_err());
        assert!(seal(&key, &h, &[], &[&[1, 2, 3][..]]).is_err());
        assert!(FrameHeader::new("SN", 0, 0, 0, 0, 1, 3, [0; 16]).is_err());
        assert!(FrameHeader::new("SN", 0, 0, 0, 1, 0, 3, [0; 16]).is_err());
        assert!(FrameHeader::new("", 0, 0, 0, 1, 1, 3, [0; 16]).is_err());
    }

    fn rr_key() -> TransportKey {
        let keys = KeySlice::new("SN-RR", (0..120 * 32).map(|i| (i * 3) as u8).collect()).unwrap();
        TransportKey::derive(&keys, 2, &[4; 16]).unwrap()
    }

    fn rr_frame(seq: u64, rr: &[i32]) -> Vec<u8> {
        let h = FrameHeader::new_rr(
            "SN-RR",
            2,
            seq,
            1_700_000_000_000_000,
            rr.len() as u32,
            [4; 16],
        )
        .unwrap();
        seal_rr(&rr_key(), &h, "RR test", rr).unwrap()
    }

    /// Seals `rr` under an RR header with `cal`, bypassing `seal`'s checks
    /// (what a compromised key holder could send).
    fn forged_rr(h: &FrameHeader, cal: &ChannelCalibration, rr: &[i32]) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&cal.gain.to_bits().to_be_bytes());
        c.extend_from_slice(&cal.baseline.to_be_bytes());
        c.extend_from_slice(&cal.adc_zero.to_be_bytes());
        c.extend_from_slice(&cal.adc_resolution.to_be_bytes());
        wire::put_bytes_u8(&mut c, "u", cal.units.as_bytes()).unwrap();
        wire::put_bytes_u8(&mut c, "d", cal.description.as_bytes()).unwrap();
        let mut body = (c.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(&c);
        body.extend_from_slice(&codec::encode(&[rr]).unwrap());
        let mut out = h.encode_with_len((body.len() + TAG_LEN) as u32);
        let tag = rr_key()
            .key
            .seal_in_place_separate_tag(nonce(h.sequence), Aad::from(out.as_slice()), &mut body)
            .unwrap();
        out.extend_from_slice(&body);
        out.extend_from_slice(tag.as_ref());
        out
    }

    #[test]
    fn rr_frame_round_trips_and_keeps_its_rules() {
        let rr = [812_000, 798_500, 1_020_000, 200_000, 5_000_000];
        let b = rr_frame(7, &rr);
        let p = parse(&b).unwrap();
        assert!(p.header.is_rr());
        assert_eq!(p.header.sample_rate_mhz, RR_SAMPLE_RATE_MHZ);
        let o = p.open(&rr_key()).unwrap();
        assert_eq!(o.samples, vec![rr.to_vec()]);
        assert_eq!(o.calibration, vec![ChannelCalibration::rr("RR test")]);
        // Sealing refuses what opening refuses.
        let h = FrameHeader::new_rr("SN-RR", 2, 8, 0, 2, [4; 16]).unwrap();
        assert!(seal_rr(&rr_key(), &h, "x", &[199_999, 800_000]).is_err());
        assert!(seal_rr(&rr_key(), &h, "x", &[800_000, 5_000_001]).is_err());
        assert!(seal_rr(&rr_key(), &h, "x", &[800_000]).is_err());
        let cal = ChannelCalibration::new(200.0, 0, 0, 32, "us", "x");
        assert!(seal(&rr_key(), &h, &[cal], &[&[800_000, 800_000][..]]).is_err());
        let ecg = FrameHeader::new("SN-RR", 2, 8, 0, 360_000, 1, 2, [4; 16]).unwrap();
        assert!(seal_rr(&rr_key(), &ecg, "x", &[800_000, 800_000]).is_err());
        assert!(FrameHeader::new_rr("SN-RR", 2, 8, 0, 0, [4; 16]).is_err());
        assert!(FrameHeader::new_rr("SN-RR", 2, 8, 0, MAX_RR_PER_FRAME + 1, [4; 16]).is_err());
        assert!(FrameHeader::new_rr("SN-RR", 2, 8, i64::MAX - 10, 3, [4; 16]).is_err());
    }

    #[test]
    fn rr_header_rules_are_enforced_by_the_reader() {
        let b = rr_frame(9, &[800_000, 810_000]);
        // Offsets: 24..28 sample_rate_mhz, 28..30 channels.
        let mut t = b.clone();
        t[27] ^= 1;
        assert_eq!(
            parse(&t).unwrap_err(),
            FrameError::BadField {
                field: "sample_rate"
            }
        );
        let mut t = b.clone();
        t[29] = 2;
        assert_eq!(
            parse(&t).unwrap_err(),
            FrameError::BadField { field: "channels" }
        );
        // A codec-1 frame relabelled as codec 2 fails its RR header rules
        // (360 Hz, two channels) before any key is used.
        let (_, ecg, _) = sample_frame(3);
        let mut t = ecg.clone();
        t[5] = CODEC_RR;
        assert!(matches!(parse(&t), Err(FrameError::BadField { .. })));
        // An RR frame relabelled as codec 1 parses but does not authenticate.
        let mut t = b;
        t[5] = CODEC_LPC_ZSTD;
        assert_eq!(
            parse(&t).unwrap().open(&rr_key()).unwrap_err(),
            FrameError::AuthenticationFailed
        );
    }

    #[test]
    fn rr_values_and_calibration_from_a_key_holder_are_refused() {
        let h = FrameHeader::new_rr("SN-RR", 2, 1, 0, 3, [4; 16]).unwrap();
        let good = ChannelCalibration::rr("x");
        let open = |b: Vec<u8>| parse(&b).unwrap().open(&rr_key());
        assert!(open(forged_rr(&h, &good, &[800_000; 3])).is_ok());
        assert_eq!(
            open(forged_rr(&h, &good, &[800_000, -5, 800_000])).unwrap_err(),
            FrameError::RrOutOfRange {
                index: 1,
                value_us: -5
            }
        );
        assert_eq!(
            open(forged_rr(&h, &good, &[800_000, 800_000, i32::MAX])).unwrap_err(),
            FrameError::RrOutOfRange {
                index: 2,
                value_us: i32::MAX
            }
        );
        for (cal, field) in [
            (ChannelCalibration::new(2.0, 0, 0, 32, "us", "x"), "gain"),
            (
                ChannelCalibration::new(f64::NAN, 0, 0, 32, "us", "x"),
                "gain",
            ),
            (
                ChannelCalibration::new(1.0, 1, 0, 32, "us", "x"),
                "baseline",
            ),
            (
                ChannelCalibration::new(1.0, 0, 7, 32, "us", "x"),
                "adc_zero",
            ),
            (
                ChannelCalibration::new(1.0, 0, 0, 16, "us", "x"),
                "adc_resolution",
            ),
            (ChannelCalibration::new(1.0, 0, 0, 32, "ms", "x"), "units"),
        ] {
            let e = open(forged_rr(&h, &cal, &[800_000; 3])).unwrap_err();
            if cal.gain.is_nan() {
                assert_eq!(e, FrameError::MalformedPayload("gain not finite"));
            } else {
                assert_eq!(e, FrameError::RrCalibration { field });
            }
        }
        // Fewer or more intervals than the header declares.
        assert!(matches!(
            open(forged_rr(&h, &good, &[800_000; 2])),
            Err(FrameError::MalformedPayload(_))
        ));
        assert!(matches!(
            open(forged_rr(&h, &good, &[800_000; 4])),
            Err(FrameError::DecompressionBomb { .. } | FrameError::MalformedPayload(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn rr_frames_round_trip(rr in proptest::collection::vec(MIN_RR_US..=MAX_RR_US, 1..300)) {
            let b = rr_frame(11, &rr);
            let o = parse(&b).unwrap().open(&rr_key()).unwrap();
            proptest::prop_assert_eq!(o.samples, vec![rr]);
        }

        #[test]
        fn hostile_rr_values_are_refused_never_panic(
            rr in proptest::collection::vec(proptest::prelude::any::<i32>(), 1..50)
        ) {
            let h = FrameHeader::new_rr("SN-RR", 2, 1, 0, rr.len() as u32, [4; 16]).unwrap();
            let r = parse(&forged_rr(&h, &ChannelCalibration::rr("x"), &rr))
                .unwrap()
                .open(&rr_key());
            let in_range = rr.iter().all(|v| (MIN_RR_US..=MAX_RR_US).contains(v));
            proptest::prop_assert_eq!(r.is_ok(), in_range);
            if !in_range {
                let is_range_error = matches!(r, Err(FrameError::RrOutOfRange { .. }));
                proptest::prop_assert!(is_range_error);
            }
        }

        #[test]
        fn mutated_or_truncated_rr_frames_are_refused(pos in 0usize..10_000, bit in 0u8..8, cut in 0usize..10_000) {
            let b = rr_frame(12, &[800_000, 790_000, 805_000, 1_200_000]);
            let mut t = b.clone();
            let i = pos % t.len();
            t[i] ^= 1 << bit;
            proptest::prop_assert!(parse(&t).and_then(|p| p.open(&rr_key())).is_err());
            let c = cut % b.len();
            proptest::prop_assert!(parse(&b[..c]).and_then(|p| p.open(&rr_key())).is_err());
        }
    }
}
