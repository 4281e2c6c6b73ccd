//! Key rotation and the no-(key, nonce)-reuse guarantee, under wrap-around,
//! reboot, a crash between sealing and the next state write, and the restore
//! of an old state file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::collections::HashSet;
use std::path::Path;

use aorta_crypto::frame::{self, ChannelCalibration};
use aorta_crypto::keys::{self, KeySlice};
use aorta_device::rotation::{RESERVE, RotationState, Sealer};
use aorta_device::se::FileSecureElement;

fn cal() -> Vec<ChannelCalibration> {
    vec![ChannelCalibration::new(200.0, 0, 0, 11, "mV", "MLII")]
}

fn make_se(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("se.key");
    let mat: Vec<u8> = (0..120 * 32).map(|i| (i * 13 + 5) as u8).collect();
    FileSecureElement::create(&p, KeySlice::new("SN-ROT", mat).unwrap()).unwrap();
    p
}

/// Records (raw transport key, nonce) for every frame sealed and asserts none repeats.
struct NonceLedger {
    se: FileSecureElement,
    seen: HashSet<([u8; 32], u64)>,
    seqs: Vec<u64>,
}

impl NonceLedger {
    fn record(&mut self, bytes: &[u8]) {
        let h = frame::parse(bytes).unwrap().header;
        let k = keys::transport_key_bytes(&self.se, h.key_index, &h.epoch).unwrap();
        assert!(
            self.seen.insert((*k, h.sequence)),
            "(key, nonce) reused at sequence {} key index {}",
            h.sequence,
            h.key_index
        );
        self.seqs.push(h.sequence);
    }
}

fn seal_n(
    s: &mut Sealer<FileSecureElement>,
    n: usize,
    ledger: &mut NonceLedger,
) -> Vec<(u64, u16)> {
    (0..n)
        .map(|i| {
            let x = [i as i32, 2, 3];
            let f = s.seal(0, 360_000, &cal(), &[&x[..]]).unwrap();
            ledger.record(&f.bytes);
            (f.sequence, f.key_index)
        })
        .collect()
}

#[test]
fn index_advances_after_max_uses_and_wraps_around_the_slice() {
    let d = tempfile::tempdir().unwrap();
    let se_path = make_se(d.path());
    let state = d.path().join("state");
    let mut ledger = NonceLedger {
        se: FileSecureElement::open(&se_path).unwrap(),
        seen: HashSet::new(),
        seqs: vec![],
    };
    let mut s = Sealer::new(FileSecureElement::open(&se_path).unwrap(), &state).unwrap();
    s.set_max_key_uses(2, 1).unwrap();
    let got = seal_n(&mut s, 2 * 120 * 2 + 5, &mut ledger);
    for (seq, idx) in &got {
        assert_eq!(*idx as u64, (seq / 2) % 120, "seq {seq}");
    }
    // The slice was walked twice: every index used, wrapped back to 0.
    assert_eq!(got[240].1, 0);
    assert_eq!(got[480].1, 0);
    // Renegotiating mid-way starts a new segment at the current index.
    let before = s.state().key_index(s.next_sequence(), 120);
    s.set_max_key_uses(3, 2).unwrap();
    let more = seal_n(&mut s, 7, &mut ledger);
    assert_eq!(more[0].1, before);
    assert_eq!(more[3].1, (before + 1) % 120);
    assert_eq!(more[6].1, (before + 2) % 120);
}

#[test]
fn no_key_nonce_pair_repeats_across_reboot_crash_and_restore() {
    let d = tempfile::tempdir().unwrap();
    let se_path = make_se(d.path());
    let state = d.path().join("state");
    let mut ledger = NonceLedger {
        se: FileSecureElement::open(&se_path).unwrap(),
        seen: HashSet::new(),
        seqs: vec![],
    };
    let open = || Sealer::new(FileSecureElement::open(&se_path).unwrap(), &state).unwrap();

    // Run 1, with a tiny max_key_uses so keys wrap around the slice inside the run.
    let mut s = open();
    s.set_max_key_uses(1, 1).unwrap();
    seal_n(&mut s, 60, &mut ledger);
    let snapshot = std::fs::read(&state).unwrap(); // an "old state file" to restore later
    seal_n(&mut s, 80, &mut ledger);
    let used_max = *ledger.seqs.iter().max().unwrap();
    // Crash: between sealing frame `used_max` and any later state write. The
    // state on disk already reserved past every number used.
    drop(s);
    let on_disk = RotationState::load(&state).unwrap();
    assert!(on_disk.reserved_until > used_max);
    assert!(on_disk.reserved_until <= used_max + RESERVE + 1);

    // Reboot: the sequence continues past the reservation; nothing reused.
    let mut s = open();
    assert_eq!(s.next_sequence(), on_disk.reserved_until);
    seal_n(&mut s, 20, &mut ledger);
    drop(s);

    // Restore of the old state file: sequence numbers DO repeat, but the
    // new run's random epoch gives new keys, so no (key, nonce) pair repeats.
    std::fs::write(&state, &snapshot).unwrap();
    let mut s = open();
    let restarted = s.next_sequence();
    assert!(
        restarted <= used_max,
        "the restore must actually rewind the sequence"
    );
    let again = seal_n(&mut s, 30, &mut ledger);
    assert!(
        again
            .iter()
            .any(|(seq, _)| ledger.seqs.iter().filter(|x| *x == seq).count() > 1)
    );
    // Once the server reports its highest accepted sequence, the device skips past it.
    s.sync_with_server(used_max + 20 + RESERVE).unwrap();
    let after = seal_n(&mut s, 3, &mut ledger);
    assert!(after[0].0 > used_max + 20 + RESERVE);
    drop(s);

    // Loss of the state file entirely (factory reset without the SE): same argument.
    std::fs::remove_file(&state).unwrap();
    let mut s = open();
    assert_eq!(s.next_sequence(), 0);
    seal_n(&mut s, 5, &mut ledger);

    // A damaged state file is refused, not silently reset.
    std::fs::write(&state, b"AOST\x01garbage").unwrap();
    assert!(Sealer::new(FileSecureElement::open(&se_path).unwrap(), &state).is_err());
    assert_eq!(ledger.seqs.len(), 198);
    assert_eq!(ledger.seen.len(), ledger.seqs.len());
}
