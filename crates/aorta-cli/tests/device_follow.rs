//! `aorta device run --follow`: a record whose signal file is still being
//! written (an acquisition program appends to it in odd-sized pieces) is
//! streamed to a real `aorta server` as the samples arrive; every sample
//! reaches the server's log exactly once.
//!
//! Deterministic: the writer appends its next piece only once the server has
//! accepted every whole frame already on disk (so the device was following a
//! file that grew under it), and the follower's idle timeout only has to
//! outlast the test's reaction to that observation, never a fixed sleep.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a failure panics with its context"
)]

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use aorta_stream::log::{FileLog, FrameLog};
use common::{Run, SAMPLE, Server, ok, stats, wait_until};

/// Bytes of one second of MIT-BIH 100 (format 212, 2 signals, 360 Hz).
const SECOND: usize = 360 * 3;

#[test]
fn a_growing_record_is_streamed_as_it_grows() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    common::setup(&work, 1);
    let mut srv = Server::start(&work, "server.toml");
    let ca = work.join("server/cert.pem");

    // 20 s of MIT-BIH 100 (format 212, 2 signals: 3 bytes per frame),
    // written live: the header first, then the samples in pieces.
    let live = t.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let hea = std::fs::read_to_string(format!("{SAMPLE}.hea")).unwrap();
    std::fs::write(live.join("100.hea"), &hea).unwrap();
    let dat = std::fs::read(format!("{SAMPLE}.dat")).unwrap();
    let part = dat[..20 * SECOND].to_vec();
    std::fs::write(live.join("100.dat"), &part[..1000]).unwrap();
    let dev = Run::new(["device", "run", "--device", "devices/DEMO-0001", "--record"])
        .arg(live.join("100"))
        .args(["--server", &srv.url(), "--ca", "server/cert.pem"])
        .args(["--follow", "--idle-timeout", "5", "--json"])
        .cwd(&work)
        .spawn(Stdio::null());
    let mut written = 1000;
    for piece in part[1000..].chunks(2221) {
        // The device has sent every whole second on disk: it is following.
        let whole = (written / SECOND) as u64;
        wait_until(
            "the device streams what is on disk",
            Duration::from_secs(60),
            || stats(&srv.url(), &ca).is_some_and(|s| s["frames_accepted"].as_u64() >= Some(whole)),
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(live.join("100.dat"))
            .unwrap();
        f.write_all(piece).unwrap();
        written += piece.len();
    }
    // The writer is done; the follower ends after its idle timeout.
    let out = ok(dev.wait_output());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["frames"], 20, "{v}");
    assert_eq!(v["acked"], 20, "{v}");
    assert_eq!(v["samples"], 20 * 360, "{v}");
    srv.proc.term();

    // The log holds the 20 frames, in order, one second apart.
    let log = FileLog::open(work.join("server/frames.log")).unwrap();
    let (recs, _) = log.read_from(0, usize::MAX).unwrap();
    let headers: Vec<_> = recs
        .iter()
        .map(|r| {
            let (_, f) = aorta_stream::job::decode_record(r).unwrap();
            aorta_crypto::frame::parse(f).unwrap().header
        })
        .collect();
    assert_eq!(headers.len(), 20);
    for w in headers.windows(2) {
        assert_eq!(w[1].first_sample_us - w[0].first_sample_us, 1_000_000);
        assert!(w[1].sequence > w[0].sequence);
    }
    assert!(
        headers
            .iter()
            .all(|h| h.samples_per_channel == 360 && h.channels == 2)
    );
}
