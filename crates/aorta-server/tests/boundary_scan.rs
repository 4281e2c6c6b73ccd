//! Everything the untrusted host sees — the worker's broker traffic (which
//! the host relays), every message between host and worker, the files the
//! host stores, and all log output — is scanned for the transport and
//! result keys and for runs of the plaintext ECG samples. The worker really
//! opens and analyses the frames (checked), so the absence of plaintext is
//! not because nothing happened. A positive control shows the scanner finds
//! planted plaintext.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod common;
use common::*;

use std::collections::HashSet;
use std::io::{Read, Write};

use aorta_enclave::wire::{self, Message, Role};

/// A stream wrapper that records every byte in both directions (what the
/// host relaying the worker's connection sees).
struct Recorder<S> {
    inner: S,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl<S: Read> Read for Recorder<S> {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(b)?;
        self.seen.lock().unwrap().extend_from_slice(&b[..n]);
        Ok(n)
    }
}

impl<S: Write> Write for Recorder<S> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.seen.lock().unwrap().extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Real ECG (MIT-BIH 100, first 20 s of lead MLII) when the data set is
/// present; otherwise a deterministic synthetic waveform (the scan is about
/// known plaintext, which both are).
fn ecg_samples() -> Vec<i32> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/mitdb/100"
    );
    match aorta_signal::wfdb::Record::read(dir) {
        Ok(rec) => rec.samples[0][..7200].to_vec(),
        Err(e) => {
            eprintln!("SKIP real data ({e}); using a synthetic waveform for the boundary scan");
            (0..7200)
                .map(|i: i32| 1000 + ((i * 7919) % 613) - ((i * 104_729) % 211))
                .collect()
        }
    }
}

/// Needles: every run of 8 consecutive samples in the encodings a leak
/// would most likely take (i16 LE/BE, i32 LE, decimal text).
struct Scanner {
    binary: Vec<Vec<u8>>,
    text: Vec<String>,
}

impl Scanner {
    fn new(samples: &[i32], keys: &[[u8; 32]]) -> Self {
        let mut binary = Vec::new();
        let mut text = Vec::new();
        for w in samples.windows(8).step_by(3) {
            binary.push(w.iter().flat_map(|s| (*s as i16).to_le_bytes()).collect());
            binary.push(w.iter().flat_map(|s| (*s as i16).to_be_bytes()).collect());
            binary.push(w.iter().flat_map(|s| s.to_le_bytes()).collect());
            let strs: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            text.push(strs.join(", "));
            text.push(strs.join(","));
            text.push(strs.join(" "));
        }
        for k in keys {
            binary.push(k.to_vec());
            text.push(aorta_base::hex::encode(k));
            text.push(format!("{k:?}"));
        }
        Self { binary, text }
    }

    /// The needles found in `hay`.
    fn find(&self, hay: &[u8]) -> usize {
        let mut found = 0;
        let mut by_len: std::collections::BTreeMap<usize, HashSet<&[u8]>> = Default::default();
        for n in &self.binary {
            by_len.entry(n.len()).or_default();
        }
        for (&len, set) in by_len.iter_mut() {
            set.extend(hay.windows(len));
        }
        for n in &self.binary {
            if by_len[&n.len()].contains(n.as_slice()) {
                found += 1;
            }
        }
        let text = String::from_utf8_lossy(hay);
        found += self
            .text
            .iter()
            .filter(|t| text.contains(t.as_str()))
            .count();
        found
    }
}

#[test]
fn the_host_sees_no_plaintext_and_no_key_bytes() {
    let (logs, dispatch) = capture_logs(tracing::Level::TRACE);
    let _g = tracing::dispatcher::set_default(&dispatch);

    let s = setup();
    let (addr, server) = serve_broker_tcp(&s, &dispatch, 1);

    // 1. The worker attests and gets its keys through a host-relayed connection.
    let relayed = Arc::new(Mutex::new(Vec::new()));
    let mut conn = Recorder {
        inner: std::net::TcpStream::connect(addr).unwrap(),
        seen: Arc::clone(&relayed),
    };
    let req = KeyRequest {
        assignment: "ward-a".into(),
        devices: vec![],
        subscribers: vec![],
    };
    let ready = attest_to_broker(
        &mut conn,
        Unattested::new(s.measurement).unwrap(),
        &s.platform,
        &req,
    )
    .unwrap();
    drop(conn);
    server.join().unwrap();

    // 2. Devices seal frames; the host stores them and forwards them.
    let samples = ecg_samples();
    let store = tempfile::tempdir().unwrap();
    let mut to_worker = Vec::new();
    wire::write_message(
        &mut to_worker,
        &Message::Hello {
            version: wire::PROTOCOL_VERSION,
            role: Role::Host,
        },
    )
    .unwrap();
    let mut n_frames = 0u64;
    for (i, chunk) in samples.chunks(720).enumerate() {
        let serial = if i % 2 == 0 { "ECG-1" } else { "ECG-2" };
        let k = if i % 2 == 0 { key(1) } else { key(2) };
        let frame = seal_test_frame(&k, serial, i as u64, chunk);
        std::fs::write(store.path().join(format!("{serial}-{i}.frame")), &frame).unwrap();
        wire::write_message(&mut to_worker, &Message::SealedFrame { frame }).unwrap();
        n_frames += 1;
    }
    // A frame from a device outside the assignment, and a tampered one.
    let foreign = seal_test_frame(&key(3), "ECG-3", 99, &samples[..720]);
    wire::write_message(&mut to_worker, &Message::SealedFrame { frame: foreign }).unwrap();
    let mut tampered = seal_test_frame(&key(1), "ECG-1", 100, &samples[..720]);
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    wire::write_message(&mut to_worker, &Message::SealedFrame { frame: tampered }).unwrap();
    wire::write_message(&mut to_worker, &Message::Shutdown).unwrap();

    // 3. The worker serves the host.
    let mut from_worker = Vec::new();
    let mut analysed: Vec<i32> = Vec::new();
    let summary = ready
        .serve(
            &TestFrames,
            &mut std::io::Cursor::new(&to_worker),
            &mut from_worker,
            &mut |f| {
                tracing::debug!(serial = %f.serial, seq = f.sequence, frame = ?f, "analysed");
                analysed.extend_from_slice(&f.samples);
            },
        )
        .unwrap();
    assert_eq!(summary.frames, n_frames);
    assert_eq!(summary.refused, 2);
    assert_eq!(summary.samples, samples.len() as u64);
    assert_eq!(analysed, samples, "the worker did not see the real samples");
    drop(ready);

    // The host's view of the worker's replies: Hello, Status, one reply per frame.
    let mut cur = std::io::Cursor::new(&from_worker);
    let mut replies = Vec::new();
    while let Some(m) = wire::read_message(&mut cur).unwrap() {
        replies.push(m);
    }
    assert!(matches!(
        replies[1],
        Message::Status {
            transport_keys: 2,
            result_keys: 1,
            hardware_protected: false,
            ..
        }
    ));
    assert!(matches!(
        replies[replies.len() - 2],
        Message::FrameRefused { code: 200, .. }
    ));
    assert!(matches!(
        replies[replies.len() - 1],
        Message::FrameRefused { code: 202, .. }
    ));

    // 4. Scan everything the host saw.
    let mut stored = Vec::new();
    for e in std::fs::read_dir(store.path()).unwrap() {
        stored.extend(std::fs::read(e.unwrap().path()).unwrap());
    }
    let log_bytes = logs.bytes();
    assert!(!log_bytes.is_empty());
    let keys: Vec<[u8; 32]> = [1u8, 2, 3, 10].iter().map(|k| [*k; 32]).collect();
    let scanner = Scanner::new(&samples, &keys);
    for (what, hay) in [
        ("relayed broker traffic", relayed.lock().unwrap().clone()),
        ("host -> worker messages", to_worker.clone()),
        ("worker -> host messages", from_worker.clone()),
        ("stored files", stored),
        ("logs", log_bytes.clone()),
    ] {
        assert_eq!(
            scanner.find(&hay),
            0,
            "{what} contain plaintext samples or key bytes"
        );
    }

    // Positive control: the scanner does find planted plaintext and keys.
    let mut planted = log_bytes;
    planted.extend(
        samples[100..120]
            .iter()
            .flat_map(|s| (*s as i16).to_le_bytes()),
    );
    assert!(scanner.find(&planted) > 0);
    let mut planted = from_worker;
    planted.extend_from_slice(&[2u8; 32]);
    assert!(scanner.find(&planted) > 0);
}
