//! Issue 5's done-when, end to end through the real binary on loopback:
//! `aorta factory init` / `provision` (three devices), `aorta device seal`
//! on a 20 s excerpt of MIT-BIH 100 (a synthetic record when the data set is
//! absent), `aorta broker serve --registry`, then `aorta worker run --backend
//! sim --serve-stdio` fed the sealed frames over the host protocol.
//!
//! Proves: the worker gets its keys from the device key registry (group keys
//! `SERIAL/INDEX` of exactly the assignment's devices) and opens every frame
//! the device code sealed (`FrameDone` with the frame's sequence and sample
//! count); a frame of a registered device outside the assignment is refused
//! (no key released, code 200); a tampered frame is refused (code 208); and
//! nothing the host saw — the frames it stored, every byte between host and
//! worker, the worker's and the broker's logs — contains a factory key, a
//! released group key, a derived transport key or the result key (raw or
//! hex), nor a run of the plaintext samples. A positive control shows the
//! scanner finds planted bytes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aorta_crypto::frame;
use aorta_crypto::keys;
use aorta_enclave::wire::Message;
use aorta_registry::Registry;
use aorta_signal::wfdb::{Record, SignalSpec, write_record_16};
use common::{
    Broker, SimTrust, after_greeting, aorta_in, factory_init, files_in, host_session, ok,
    provision, read_messages, shared_data, spec,
};

const RESULT_KEY: &str = "abababababababababababababababababababababababababababababababab";
const EXCERPT: usize = 20 * 360;

/// Two 20 s excerpts (seconds 0–20 and 20–40) of MIT-BIH 100, both leads, as
/// format-16 records; a synthetic two-lead waveform when the data set is absent.
fn write_excerpts(dir: &Path) -> Vec<(PathBuf, Vec<Vec<i32>>)> {
    let real = shared_data(
        "mitdb/100",
        "real data: sealing a synthetic two-lead record instead of MIT-BIH 100",
    );
    let (specs, samples): (Vec<SignalSpec>, Vec<Vec<i32>>) = match real {
        Some(src) => {
            let rec = Record::read(src).unwrap();
            (rec.header.signals.clone(), rec.samples)
        }
        None => {
            let wave = |k: i32| -> Vec<i32> {
                (0..2 * EXCERPT as i32)
                    .map(|i| 1000 + ((i * 7919 * k) % 613) - ((i * 104_729) % 211))
                    .collect()
            };
            (
                vec![spec("MLII", 11, 1024), spec("V5", 11, 1024)],
                vec![wave(1), wave(3)],
            )
        }
    };
    let mut out = Vec::new();
    for (name, from) in [("ex-a", 0), ("ex-b", EXCERPT)] {
        let cut: Vec<Vec<i32>> = samples
            .iter()
            .map(|s| s[from..from + EXCERPT].to_vec())
            .collect();
        write_record_16(dir, name, 360.0, &specs, &cut).unwrap();
        out.push((dir.join(name), cut));
    }
    out
}

/// Sealed frames in a device's output directory, by sequence.
fn frames_in(dir: &Path) -> Vec<Vec<u8>> {
    files_in(dir)
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "aof"))
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// Finds any needle (all of one length) in a haystack, by hashing every window.
struct Scanner {
    raw: HashSet<Vec<u8>>,
    hex: HashSet<Vec<u8>>,
    runs: HashSet<Vec<u8>>,
}

impl Scanner {
    fn add_key(&mut self, k: &[u8]) {
        assert_eq!(k.len(), 32);
        self.raw.insert(k.to_vec());
        self.hex.insert(
            k.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
                .into_bytes(),
        );
    }

    /// Every run of 8 consecutive samples of a channel, as i16 LE, i32 LE
    /// and i32 BE (the encodings a leaked sample buffer would have).
    fn add_samples(&mut self, ch: &[i32]) {
        for w in ch.windows(8) {
            // Skip flat runs: a constant run is not distinctive plaintext.
            if w.iter().all(|x| *x == w[0]) {
                continue;
            }
            let le16: Vec<u8> = w.iter().flat_map(|x| (*x as i16).to_le_bytes()).collect();
            let le32: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
            let be32: Vec<u8> = w.iter().flat_map(|x| x.to_be_bytes()).collect();
            self.runs.insert(le16);
            self.runs.insert(le32);
            self.runs.insert(be32);
        }
    }

    /// What it found in `hay`, named.
    fn find(&self, hay: &[u8]) -> Option<&'static str> {
        let lower = hay.to_ascii_lowercase();
        if hay.windows(32).any(|w| self.raw.contains(w)) {
            return Some("raw key bytes");
        }
        if lower.windows(64).any(|w| self.hex.contains(w)) {
            return Some("hex key");
        }
        for len in [16, 32] {
            if hay.windows(len).any(|w| self.runs.contains(w)) {
                return Some("plaintext sample run");
            }
        }
        None
    }
}

#[test]
fn worker_opens_registry_keyed_device_frames_end_to_end() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();

    // Factory: a registry and three devices (file-backed key stores).
    factory_init(d, 360);
    for serial in ["ECG-A", "ECG-B", "ECG-OUT"] {
        ok(provision(d, serial, &format!("dev-{serial}")));
    }

    // Devices seal 5 s frames through the live uploader's code.
    std::fs::create_dir(d.join("rec")).unwrap();
    let excerpts = write_excerpts(&d.join("rec"));
    for (serial, (rec, _)) in [
        ("ECG-A", &excerpts[0]),
        ("ECG-B", &excerpts[1]),
        ("ECG-OUT", &excerpts[0]),
    ] {
        ok(aorta_in(
            d,
            &[
                "device",
                "seal",
                "--device",
                &format!("dev-{serial}"),
                "--record",
                rec.to_str().unwrap(),
                "--frame-seconds",
                "5",
                "--out",
                &format!("frames-{serial}"),
            ],
        ));
    }
    let frames_a = frames_in(&d.join("frames-ECG-A"));
    let frames_b = frames_in(&d.join("frames-ECG-B"));
    let frames_out = frames_in(&d.join("frames-ECG-OUT"));
    assert_eq!(frames_a.len(), 4);
    assert_eq!(frames_b.len(), 4);

    // What must never reach the host: every factory key of the three
    // devices, every group key, every transport key the frames use, the
    // result key; and the plaintext samples.
    let mut scan = Scanner {
        raw: HashSet::new(),
        hex: HashSet::new(),
        runs: HashSet::new(),
    };
    {
        let reg = Registry::open(d.join("reg")).unwrap();
        for serial in ["ECG-A", "ECG-B", "ECG-OUT"] {
            let slice = reg.device_keys(serial).unwrap();
            for k in slice.material().chunks(32) {
                scan.add_key(k);
            }
            let groups = reg.transport_group_keys(serial).unwrap();
            assert_eq!(groups.len(), 120);
            for g in &groups {
                scan.add_key(g.as_ref());
            }
        }
        for f in frames_a.iter().chain(&frames_b).chain(&frames_out) {
            let h = frame::parse(f).unwrap().header;
            let g = &reg.transport_group_keys(&h.serial).unwrap()[usize::from(h.key_index)];
            let tk = keys::transport_key_from_group(g, &h.serial, h.key_index, &h.epoch).unwrap();
            scan.add_key(tk.as_ref());
        }
        // The broker opens the registry itself: the store is locked while open.
    }
    scan.add_key(&aorta_base::hex::decode(RESULT_KEY, aorta_base::hex::Case::Any).unwrap());
    for (_, samples) in &excerpts {
        for ch in samples {
            scan.add_samples(ch);
        }
    }
    // Positive control: the scanner finds planted key bytes, hex and samples.
    let all_frames = frames_a
        .iter()
        .chain(&frames_b)
        .fold(Vec::new(), |mut v, f| {
            v.extend_from_slice(f);
            v
        });
    assert_eq!(scan.find(&all_frames), None);
    let mut planted = all_frames.clone();
    planted.extend_from_slice(scan.raw.iter().next().unwrap());
    assert_eq!(scan.find(&planted), Some("raw key bytes"));
    let mut planted = b"log: ".to_vec();
    planted.extend_from_slice(RESULT_KEY.to_uppercase().as_bytes());
    assert_eq!(scan.find(&planted), Some("hex key"));
    let mut planted = b"xx".to_vec();
    let lead = &excerpts[1].1[1];
    let at = (0..lead.len() - 8)
        .find(|&i| lead[i..i + 8].iter().any(|x| *x != lead[i]))
        .unwrap();
    planted.extend(lead[at..at + 8].iter().flat_map(|x| x.to_le_bytes()));
    assert_eq!(scan.find(&planted), Some("plaintext sample run"));

    // The data owner's side: policy (sim allowed, for this test only) and
    // the subscribers' result keys.
    let trust = SimTrust::new(d, "window_secs = 300\n", &["ECG-A", "ECG-B"]);
    std::fs::write(
        d.join("results.toml"),
        format!("[results]\n\"dr-a\" = \"{RESULT_KEY}\"\n"),
    )
    .unwrap();

    let broker_log = d.join("broker.log");
    let broker = Broker::start(
        d,
        &[
            "--policy",
            "policy.toml",
            "--registry",
            "reg",
            "--keys",
            "results.toml",
        ],
        &broker_log,
    );

    // The host: start the worker, relay the sealed frames, collect replies.
    let mut tampered = frames_a[2].clone();
    let mid = tampered.len() - 40;
    tampered[mid] ^= 0x20;
    let mut sent: Vec<Vec<u8>> = frames_a.iter().chain(&frames_b).cloned().collect();
    sent.push(frames_out[0].clone());
    sent.push(tampered);
    let host_to_worker = host_session(&sent);
    let out = trust
        .serve_stdio(&broker.addr)
        .cwd(d)
        .stdin(host_to_worker.clone())
        .output();
    drop(broker);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "worker failed: {stderr}");
    assert!(stderr.contains("NOT hardware-protected"), "{stderr}");

    // The worker's status (stderr) names exactly the assignment's devices.
    let status: serde_json::Value = stderr
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no status line in {stderr}"));
    assert_eq!(status["devices"], serde_json::json!(["ECG-A", "ECG-B"]));
    assert_eq!(status["transport_keys"], 240);
    assert_eq!(status["result_keys"], 1);

    let msgs = read_messages(&out.stdout);
    let replies = after_greeting(&msgs, 240, 1);
    assert_eq!(replies.len(), frames_a.len() + frames_b.len() + 2);
    // Every frame of the assignment's devices is opened, with its sequence
    // and its full sample count (channels × samples per channel).
    let mut opened_samples = 0u64;
    for (f, reply) in frames_a.iter().chain(&frames_b).zip(replies) {
        let h = frame::parse(f).unwrap().header;
        let want = u64::from(h.channels) * u64::from(h.samples_per_channel);
        match reply {
            Message::FrameDone {
                serial,
                sequence,
                samples,
            } => {
                assert_eq!(serial, &h.serial);
                assert_eq!(*sequence, h.sequence);
                assert_eq!(*samples, want);
                opened_samples += samples;
            }
            other => panic!("frame {} {} not opened: {other:?}", h.serial, h.sequence),
        }
    }
    assert_eq!(opened_samples, 2 * 2 * EXCERPT as u64);
    // A registered device outside the assignment: no key was released.
    match &replies[frames_a.len() + frames_b.len()] {
        Message::FrameRefused { code, .. } => assert_eq!(*code, 200),
        other => panic!("frame of ECG-OUT: {other:?}"),
    }
    // A tampered frame of an assigned device: authentication fails.
    match &replies[frames_a.len() + frames_b.len() + 1] {
        Message::FrameRefused { code, .. } => assert_eq!(*code, 208),
        other => panic!("tampered frame: {other:?}"),
    }

    // Nothing the host saw holds key bytes or plaintext.
    let mut seen: Vec<(String, Vec<u8>)> = vec![
        ("host→worker stream".into(), host_to_worker),
        ("worker→host stream".into(), out.stdout.clone()),
        ("worker log".into(), out.stderr.clone()),
        ("broker log".into(), std::fs::read(&broker_log).unwrap()),
    ];
    for dir in ["frames-ECG-A", "frames-ECG-B", "frames-ECG-OUT"] {
        for (i, f) in frames_in(&d.join(dir)).into_iter().enumerate() {
            seen.push((format!("{dir} frame {i}"), f));
        }
    }
    for (what, bytes) in &seen {
        assert_eq!(scan.find(bytes), None, "{what} leaks");
    }
}
