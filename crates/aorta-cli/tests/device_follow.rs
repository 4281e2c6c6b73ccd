//! `aorta device run --follow`: a record whose signal file is still being
//! written (an acquisition program appends to it in odd-sized pieces) is
//! streamed to a real `aorta server` as the samples arrive; every sample
//! reaches the server's log exactly once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use aorta_stream::log::{FileLog, FrameLog};
use common::{AORTA, Proc, ok, server, term};

const SAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/sample/100");

#[test]
fn a_growing_record_is_streamed_as_it_grows() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("w");
    let (port, _) = common::setup(&work, 1);
    let mut srv = server(&work, "server.toml");

    // 20 s of MIT-BIH 100 (format 212, 2 signals: 3 bytes per frame),
    // written live: the header first, then the samples in pieces.
    let live = t.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let hea = std::fs::read_to_string(format!("{SAMPLE}.hea")).unwrap();
    std::fs::write(live.join("100.hea"), &hea).unwrap();
    let dat = std::fs::read(format!("{SAMPLE}.dat")).unwrap();
    let part = dat[..20 * 360 * 3].to_vec();
    std::fs::write(live.join("100.dat"), &part[..1000]).unwrap();
    let writer = {
        let path = live.join("100.dat");
        let rest = part[1000..].to_vec();
        std::thread::spawn(move || {
            for piece in rest.chunks(2221) {
                std::thread::sleep(Duration::from_millis(30));
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap();
                f.write_all(piece).unwrap();
            }
        })
    };
    let dev = Proc(
        Command::new(AORTA)
            .args([
                "device",
                "run",
                "--device",
                "devices/DEMO-0001",
                "--record",
                live.join("100").to_str().unwrap(),
                "--server",
                &format!("https://127.0.0.1:{port}"),
                "--ca",
                "server/cert.pem",
                "--follow",
                "--idle-timeout",
                "1.5",
                "--json",
            ])
            .current_dir(&work)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    writer.join().unwrap();
    let out = ok(
        std::mem::replace(&mut { dev }.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap(),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["frames"], 20, "{v}");
    assert_eq!(v["acked"], 20, "{v}");
    assert_eq!(v["samples"], 20 * 360, "{v}");
    term(&mut srv);

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
