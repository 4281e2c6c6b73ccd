//! `aorta bench se`: selective encryption against the paper's baseline
//! (AES-128-CBC, RustCrypto `aes` + `cbc`) and AES-256-GCM (`ring`), in one
//! run, on the same inputs, with one thread and with all cores.
//!
//! What is timed (the passphrase KDF is excluded everywhere: K is derived
//! once, as a phone would cache it):
//! * `se-faithful`, `se-strong`: the whole protection of a record in the
//!   format new records are written in (v2) — unit transform, AES-256-GCM of
//!   the private fragment, BLAKE3 checksum of the public container, container
//!   assembly; faithful mode's units are Algorithm 1 (one SHA-256 per unit),
//!   strong mode's are masked with AES-256;
//! * `se-faithful-v1`, `se-strong-v1`: the same in format v1 (SHA-256
//!   checksum; strong mode masked with SHA-256 like faithful), for comparison;
//! * `se-units-faithful`, `se-units-strong`: the unit transform alone;
//! * `sha256-block`: only the per-unit SHA-256 compressions of faithful mode's
//!   transform (one pre-padded 64-byte block per 32-byte unit) — its ceiling;
//! * `aes-128-cbc`, `aes-256-gcm`: encryption in place of the same bytes.
//!   With several threads the input is cut into one chunk per thread, each
//!   encrypted independently with its own IV/nonce (CBC itself is serial);
//! * `aes-128-cbc-new`: the same CBC encryption into a newly allocated
//!   buffer, as selective encryption writes its containers: above glibc's
//!   32 MiB mmap ceiling every new buffer is fresh pages, and first touching
//!   them (page faults) costs both about as much as the cipher.
//!
//! MB/s are 10^6 bytes of input per second of elapsed time (`mb_per_s`) and
//! per second of this process's CPU time (`cpu_mb_per_s`: per busy core,
//! which other jobs on a shared machine disturb much less than elapsed time).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aes::cipher::{BlockEncryptMut, KeyIvInit};
use anyhow::Context;
use aorta_crypto::selective::container::protect_with_key_as;
use aorta_crypto::selective::{
    FormatVersion, HeaderRule, KdfParams, MasterKey, Mode, ProtectOptions, Randomness, UnitKeys,
    UnitMask, units,
};
use rayon::prelude::*;
use serde::Serialize;

/// What `aorta bench se` measures (its flags).
#[derive(Debug, Clone)]
pub struct SeConfig {
    /// Size of the random input in bytes.
    pub size: usize,
    /// Real files to measure as well.
    pub inputs: Vec<PathBuf>,
    /// Minimum measuring time per case, in seconds.
    pub min_time: f64,
}

/// What `aorta bench se` measured (its `--json` output).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SeReport {
    /// Size of the random input.
    pub size: usize,
    /// Cores available.
    pub cores: usize,
    /// The CPU has SHA extensions.
    pub sha_ni: bool,
    /// The CPU has AES instructions.
    pub aes_ni: bool,
    /// One row per input, thread count and scheme.
    pub results: Vec<SeRow>,
    /// The inputs' names, in order.
    #[serde(skip)]
    pub inputs: Vec<String>,
    /// The thread counts measured, in order.
    #[serde(skip)]
    pub thread_counts: Vec<usize>,
}

impl SeReport {
    /// Throughput of `scheme` over AES-128-CBC's on the same input and
    /// threads (the paper's comparison); `None` when CBC was not measured.
    pub fn speedup_over_cbc(&self, scheme: &str, threads: usize, input: &str) -> Option<f64> {
        let cbc = self.mb_per_s("aes-128-cbc", threads, input);
        (cbc > 0.0).then(|| self.mb_per_s(scheme, threads, input) / cbc)
    }

    /// [`SeReport::speedup_over_cbc`] in CPU-time throughput.
    pub fn cpu_speedup_over_cbc(&self, scheme: &str, threads: usize, input: &str) -> Option<f64> {
        let cbc = self.cpu_mb_per_s("aes-128-cbc", threads, input);
        (cbc > 0.0).then(|| self.cpu_mb_per_s(scheme, threads, input) / cbc)
    }

    /// MB/s of `scheme` on `input` with `threads` (0 when not measured).
    pub fn mb_per_s(&self, scheme: &str, threads: usize, input: &str) -> f64 {
        self.row(scheme, threads, input).map_or(0.0, |r| r.mb_per_s)
    }

    /// MB per CPU-second of `scheme` on `input` with `threads` (0 when not
    /// measured).
    pub fn cpu_mb_per_s(&self, scheme: &str, threads: usize, input: &str) -> f64 {
        self.row(scheme, threads, input)
            .map_or(0.0, |r| r.cpu_mb_per_s)
    }

    /// The measurement of `scheme` on `input` with `threads`.
    pub fn row(&self, scheme: &str, threads: usize, input: &str) -> Option<&SeRow> {
        self.results
            .iter()
            .find(|r| r.scheme == scheme && r.threads == threads && r.input == input)
    }
}

/// Every scheme measured, in the order they are run and printed.
pub const SCHEMES: [&str; 10] = [
    "se-faithful",
    "se-strong",
    "se-faithful-v1",
    "se-strong-v1",
    "se-units-faithful",
    "se-units-strong",
    "sha256-block",
    "aes-128-cbc",
    "aes-128-cbc-new",
    "aes-256-gcm",
];

/// One measurement.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct SeRow {
    /// Scheme (one of [`SCHEMES`]).
    pub scheme: &'static str,
    /// Threads.
    pub threads: usize,
    /// 10^6 bytes of input per second of elapsed time, one decimal.
    pub mb_per_s: f64,
    /// 10^6 bytes of input per second of this process's CPU time (all its
    /// threads), one decimal: the throughput per busy core.
    pub cpu_mb_per_s: f64,
    /// The input's name.
    pub input: String,
}

/// This process's CPU time (all threads), in seconds.
fn cpu_seconds() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// (MB per elapsed second, MB per CPU second) of `f` over `bytes`.
fn time(
    min: Duration,
    bytes: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, f64)> {
    f()?; // warm-up
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut reps = 0u32;
    while reps < 2 || start.elapsed() < min {
        f()?;
        reps += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = (cpu_seconds() - cpu_start).max(1e-9);
    let mb = bytes as f64 * f64::from(reps) / 1e6;
    Ok((mb / secs, mb / cpu))
}

fn cbc_encrypt(buf: &mut [u8], threads: usize) {
    let key = [7u8; 16];
    let chunk = (buf.len() / threads / 16).max(1) * 16;
    buf.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| {
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let mut enc = cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into());
        let whole = c.len() / 16 * 16;
        let (blocks, _) = c.split_at_mut(whole);
        let (blocks, _) = aes::cipher::inout::InOutBuf::from(blocks).into_chunks();
        enc.encrypt_blocks_inout_mut(blocks);
    });
}

/// [`cbc_encrypt`] from `data` into a newly allocated buffer, as a
/// protection that keeps its input and returns new bytes does (selective
/// encryption's containers are new buffers too).
fn cbc_encrypt_new(data: &[u8], threads: usize) -> anyhow::Result<Vec<u8>> {
    let key = [7u8; 16];
    let mut out = vec![0u8; data.len()];
    let chunk = (data.len() / threads / 16).max(1) * 16;
    out.par_chunks_mut(chunk)
        .zip(data.par_chunks(chunk))
        .enumerate()
        .try_for_each(|(i, (o, c))| {
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let mut enc = cbc::Encryptor::<aes::Aes128>::new(&key.into(), &iv.into());
            let whole = c.len() / 16 * 16;
            let (blocks, _) = aes::cipher::inout::InOutBuf::new(
                c.get(..whole).unwrap_or_default(),
                o.get_mut(..whole).unwrap_or_default(),
            )
            .map_err(|_| anyhow::anyhow!("CBC buffers differ in length"))?
            .into_chunks();
            enc.encrypt_blocks_inout_mut(blocks);
            Ok::<(), anyhow::Error>(())
        })?;
    Ok(out)
}

fn gcm_encrypt(buf: &mut [u8], threads: usize) -> anyhow::Result<()> {
    let key = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &[9u8; 32])
            .map_err(|_| anyhow::anyhow!("AES-256-GCM key rejected"))?,
    );
    let chunk = (buf.len() / threads).max(1);
    buf.par_chunks_mut(chunk)
        .enumerate()
        .try_for_each(|(i, c)| {
            let mut n = [0u8; 12];
            n[4..].copy_from_slice(&(i as u64).to_be_bytes());
            key.seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(n),
                ring::aead::Aad::empty(),
                c,
            )
            .map(|_| ())
            .map_err(|_| anyhow::anyhow!("AES-256-GCM seal failed"))
        })
}
/// Runs the benchmark (meaningless figures in a debug build).
pub fn run(cfg: &SeConfig) -> anyhow::Result<SeReport> {
    let mut inputs: Vec<(String, Vec<u8>)> = Vec::new();
    inputs.push((
        format!("random {} bytes", cfg.size),
        aorta_base::random::vec(cfg.size)?,
    ));
    for p in &cfg.inputs {
        let d = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        inputs.push((p.display().to_string(), d));
    }
    let all = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut thread_counts = vec![1];
    if all > 1 {
        thread_counts.push(all);
    }
    let min = Duration::from_secs_f64(cfg.min_time.max(0.05));
    let mut rows = Vec::new();
    for (name, data) in &inputs {
        for &t in &thread_counts {
            measure_input(name, data, t, min, &mut rows)?;
        }
    }
    #[cfg(target_arch = "x86_64")]
    let (sha_ni, aes_ni) = (
        std::arch::is_x86_feature_detected!("sha"),
        std::arch::is_x86_feature_detected!("aes"),
    );
    #[cfg(not(target_arch = "x86_64"))]
    let (sha_ni, aes_ni) = (false, false);
    Ok(SeReport {
        size: cfg.size,
        cores: all,
        sha_ni,
        aes_ni,
        results: rows,
        inputs: inputs.into_iter().map(|(n, _)| n).collect(),
        thread_counts,
    })
}

/// Every scheme on one input with `t` threads.
fn measure_input(
    name: &str,
    data: &[u8],
    t: usize,
    min: Duration,
    rows: &mut Vec<SeRow>,
) -> anyhow::Result<()> {
    let k = MasterKey::from_bytes([3u8; 32]);
    let rnd = Randomness::fresh()?;
    let pool = rayon::ThreadPoolBuilder::new().num_threads(t).build()?;
    let mut push = |scheme: &'static str, (mbps, cpu): (f64, f64)| {
        rows.push(SeRow {
            scheme,
            threads: t,
            mb_per_s: (mbps * 10.0).round() / 10.0,
            cpu_mb_per_s: (cpu * 10.0).round() / 10.0,
            input: name.to_owned(),
        });
    };
    let measure = |f: &mut (dyn FnMut() -> anyhow::Result<()> + Send)| {
        pool.install(|| time(min, data.len(), f))
    };
    for (scheme, mode, version) in [
        ("se-faithful", Mode::Faithful, FormatVersion::V2),
        ("se-strong", Mode::Strong, FormatVersion::V2),
        ("se-faithful-v1", Mode::Faithful, FormatVersion::V1),
        ("se-strong-v1", Mode::Strong, FormatVersion::V1),
    ] {
        let opts = ProtectOptions {
            mode,
            kdf: KdfParams::DEFAULT,
            header: HeaderRule::None,
        };
        let r = measure(&mut || {
            std::hint::black_box(protect_with_key_as(data, &k, &opts, &rnd, version)?);
            Ok(())
        })?;
        push(scheme, r);
    }
    for (scheme, mode) in [
        ("se-units-faithful", Mode::Faithful),
        ("se-units-strong", Mode::Strong),
    ] {
        let uk = UnitKeys::for_record(FormatVersion::LATEST, mode, &k, Some(&rnd.secret))?;
        let mask = UnitMask::for_record(FormatVersion::LATEST, mode);
        let r = measure(&mut || {
            std::hint::black_box(units::encode(&uk, mask, data));
            Ok(())
        })?;
        push(scheme, r);
    }
    let uk = UnitKeys::faithful(&k)?;
    let n = units::unit_count(data.len());
    let r = measure(&mut || {
        std::hint::black_box(units::hash_only(&uk, n));
        Ok(())
    })?;
    push("sha256-block", r);
    let mut buf = data.to_vec();
    let r = measure(&mut || {
        cbc_encrypt(&mut buf, t);
        Ok(())
    })?;
    push("aes-128-cbc", r);
    let r = measure(&mut || {
        std::hint::black_box(cbc_encrypt_new(data, t)?);
        Ok(())
    })?;
    push("aes-128-cbc-new", r);
    push("aes-256-gcm", measure(&mut || gcm_encrypt(&mut buf, t))?);
    Ok(())
}
