//! Renegotiating max_key_uses end to end: registry (server) ↔ sealer (device),
//! with the rate limit on both sides, replayed offers, a MITM, frames after
//! the change, and a kill at every protocol step.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::path::PathBuf;

use aorta_crypto::frame::ChannelCalibration;
use aorta_crypto::keys;
use aorta_crypto::reneg::{Offer, RenegError, Reply, Sealed};
use aorta_device::DeviceError;
use aorta_device::rotation::Sealer;
use aorta_device::se::FileSecureElement;
use aorta_registry::{PoolConfig, Registry, RegistryError, RenegPolicy, RenegStep};

const DAY: u64 = 86_400;
const T0: u64 = 1_700_000_000;
const POLICY: RenegPolicy = RenegPolicy {
    max_changes: 3,
    window_secs: 30 * DAY,
};

struct Rig {
    _d: tempfile::TempDir,
    reg_dir: PathBuf,
    se: PathBuf,
    state: PathBuf,
}

impl Rig {
    fn new() -> (Rig, Registry, Sealer<FileSecureElement>) {
        let d = tempfile::tempdir().unwrap();
        let reg_dir = d.path().join("reg");
        let reg = Registry::init(
            &reg_dir,
            PoolConfig {
                pool_keys: 240,
                slice_len: 120,
            },
        )
        .unwrap();
        let ks = reg.provision("SN-NEG").unwrap();
        reg.verify("SN-NEG", &keys::commitment(&ks).unwrap())
            .unwrap();
        let other = reg.provision("SN-OTHER").unwrap();
        reg.verify("SN-OTHER", &keys::commitment(&other).unwrap())
            .unwrap();
        let dir = aorta_device::DeviceDir::new(d.path());
        FileSecureElement::create(dir.se(), ks).unwrap();
        let rig = Rig {
            reg_dir,
            se: dir.se(),
            state: dir.state(),
            _d: d,
        };
        let dev = rig.device();
        (rig, reg, dev)
    }
    /// The device after a kill: everything re-read from its files.
    fn device(&self) -> Sealer<FileSecureElement> {
        Sealer::new(FileSecureElement::open(&self.se).unwrap(), &self.state).unwrap()
    }
    /// The server after a kill: the registry re-opened from disk.
    fn registry(&self) -> Registry {
        Registry::open(&self.reg_dir).unwrap()
    }
    fn directory_min(&self) -> u64 {
        let text = std::fs::read_to_string(self.reg_dir.join("directory.txt")).unwrap();
        aorta_crypto::directory::Directory::parse(&text)
            .unwrap()
            .devices["SN-NEG"]
            .min_key_uses
    }
}

fn seal_and_send(reg: &Registry, dev: &mut Sealer<FileSecureElement>) -> u16 {
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "x")];
    let f = dev.seal(0, 360_000, &cal, &[&[1, 2, 3][..]]).unwrap();
    reg.accept_frame(&f.bytes).unwrap();
    f.key_index
}

fn wire_offer(o: &Offer) -> Offer {
    Offer::decode(&o.encode()).unwrap()
}

/// One full renegotiation to `value` at `now`.
fn run(
    reg: &Registry,
    dev: &mut Sealer<FileSecureElement>,
    value: u64,
    now: u64,
) -> Result<Offer, RegistryError> {
    let (srv, offer) = reg.reneg_begin("SN-NEG", now, POLICY)?;
    let (st, reply) = dev.reneg_on_offer(&wire_offer(&offer)).unwrap();
    let reply = Reply::decode(&reply.encode()).unwrap();
    let RenegStep::Value(srv, value_msg) =
        reg.reneg_reply("SN-NEG", srv, &reply, Some(value), now, POLICY)?
    else {
        panic!("no value sent");
    };
    let confirm = dev
        .reneg_on_value(
            st,
            &Sealed::decode_value(&value_msg.encode()).unwrap(),
            now,
            POLICY,
        )
        .unwrap();
    reg.reneg_finish(
        "SN-NEG",
        srv,
        &Sealed::decode_confirm(&confirm.encode()).unwrap(),
    )?;
    Ok(offer)
}

/// A resolution round: Offer → Reply, no new value.
fn resolve(reg: &Registry, dev: &mut Sealer<FileSecureElement>, now: u64) {
    let (srv, offer) = reg.reneg_begin("SN-NEG", now, POLICY).unwrap();
    let (_st, reply) = dev.reneg_on_offer(&wire_offer(&offer)).unwrap();
    assert!(matches!(
        reg.reneg_reply("SN-NEG", srv, &reply, None, now, POLICY)
            .unwrap(),
        RenegStep::NoChange
    ));
}

fn agreed(rig: &Rig, reg: &Registry, dev: &Sealer<FileSecureElement>) -> u64 {
    let info = reg.device("SN-NEG").unwrap();
    assert_eq!(
        info.max_key_uses,
        dev.state().max_key_uses,
        "server and device disagree"
    );
    assert_eq!(
        info.min_key_uses, info.max_key_uses,
        "the window stayed wide"
    );
    assert_eq!(
        rig.directory_min(),
        info.max_key_uses,
        "directory not republished"
    );
    info.max_key_uses
}

#[test]
fn renegotiation_end_to_end() {
    let (rig, reg, mut dev) = Rig::new();
    seal_and_send(&reg, &mut dev);
    let mut now = T0;

    let first_offer = run(&reg, &mut dev, 900, now).unwrap();
    assert_eq!(agreed(&rig, &reg, &dev), 900);
    // A replayed (old) offer is refused by the device, even after a reboot.
    drop(dev);
    let mut dev = rig.device();
    assert!(matches!(
        dev.reneg_on_offer(&first_offer),
        Err(DeviceError::Reneg(RenegError::Replayed { .. }))
    ));
    // An offer made with another device's keys (a MITM without this PSK) is refused.
    let (_s, foreign) = reg.reneg_begin("SN-OTHER", now, POLICY).unwrap();
    assert!(dev.reneg_on_offer(&foreign).is_err());

    now += DAY;
    run(&reg, &mut dev, 800, now).unwrap();
    // Change to 2 frames per key; rotation follows on both sides.
    now += DAY;
    run(&reg, &mut dev, 2, now).unwrap();
    assert_eq!(agreed(&rig, &reg, &dev), 2);
    let idx: Vec<u16> = (0..6).map(|_| seal_and_send(&reg, &mut dev)).collect();
    assert_eq!(idx, vec![0, 0, 1, 1, 2, 2]);
    // Rate limit: three changes inside 30 days, the fourth is refused.
    now += DAY;
    assert!(matches!(
        run(&reg, &mut dev, 1, now),
        Err(RegistryError::RateLimited { .. })
    ));
    assert_eq!(agreed(&rig, &reg, &dev), 2);
    // A month later it is allowed again.
    now += 31 * DAY;
    run(&reg, &mut dev, 1, now).unwrap();
    assert_eq!(agreed(&rig, &reg, &dev), 1);
    for _ in 0..13 {
        seal_and_send(&reg, &mut dev);
    }
}

/// Where the kill happens.
#[derive(Debug, Clone, Copy)]
/// Named by the last step completed before the kill.
enum Kill {
    /// Server persisted its counter and sent the Offer; nothing else.
    Offer,
    /// The device answered (counter persisted); the server never saw the Reply.
    Reply,
    /// The server recorded the pending value; the Value never reached the device.
    ValueSent,
    /// The device applied the value; its Confirm never reached the server.
    Applied,
    /// Everything completed.
    Confirm,
}

/// Kill both sides at `kill` (drop all in-memory state, re-open from disk),
/// then one resolution round: device and server agree on one value and the
/// key-index window is narrow again; frames flow under it.
#[test]
fn a_kill_at_any_step_converges_to_one_agreed_value() {
    for kill in [
        Kill::Offer,
        Kill::Reply,
        Kill::ValueSent,
        Kill::Applied,
        Kill::Confirm,
    ] {
        let (rig, reg, mut dev) = Rig::new();
        seal_and_send(&reg, &mut dev);
        let old = reg.device("SN-NEG").unwrap().max_key_uses;
        let now = T0;
        let (srv, offer) = reg.reneg_begin("SN-NEG", now, POLICY).unwrap();
        let mut expect = old;
        'steps: {
            if let Kill::Offer = kill {
                break 'steps;
            }
            let (st, reply) = dev.reneg_on_offer(&wire_offer(&offer)).unwrap();
            if let Kill::Reply = kill {
                break 'steps;
            }
            let RenegStep::Value(srv, value) = reg
                .reneg_reply("SN-NEG", srv, &reply, Some(2), now, POLICY)
                .unwrap()
            else {
                panic!("{kill:?}: no value");
            };
            // While pending, the window admits both schedules.
            assert_eq!(rig.directory_min(), 2, "{kill:?}");
            if let Kill::ValueSent = kill {
                break 'steps;
            }
            let confirm = dev.reneg_on_value(st, &value, now, POLICY).unwrap();
            expect = 2;
            // Frames under the new schedule are accepted while pending.
            for _ in 0..5 {
                seal_and_send(&reg, &mut dev);
            }
            if let Kill::Applied = kill {
                break 'steps;
            }
            reg.reneg_finish("SN-NEG", srv, &confirm).unwrap();
        }
        drop(reg);
        drop(dev);
        let reg = rig.registry();
        let mut dev = rig.device();
        resolve(&reg, &mut dev, now + 60);
        assert_eq!(agreed(&rig, &reg, &dev), expect, "{kill:?}");
        assert!(reg.reneg_pending("SN-NEG").unwrap().is_none(), "{kill:?}");
        for _ in 0..7 {
            seal_and_send(&reg, &mut dev);
        }
    }
}

/// The server counts a change when it sends the Value, not when the Confirm
/// arrives: lost Confirms (crash, hostile host dropping them) cannot get
/// around the rate limit.
#[test]
fn lost_confirms_still_count_against_the_rate_limit() {
    let (rig, reg, mut dev) = Rig::new();
    let mut now = T0;
    let mut reg = reg;
    for v in [900, 800, 700] {
        let (srv, offer) = reg.reneg_begin("SN-NEG", now, POLICY).unwrap();
        let (st, reply) = dev.reneg_on_offer(&offer).unwrap();
        let RenegStep::Value(_srv, value) = reg
            .reneg_reply("SN-NEG", srv, &reply, Some(v), now, POLICY)
            .unwrap()
        else {
            panic!("no value");
        };
        dev.reneg_on_value(st, &value, now, POLICY).unwrap();
        // Confirm lost; the server restarts.
        drop(reg);
        reg = rig.registry();
        now += 3600;
    }
    // The fourth change is refused: the round only resolves the pending one.
    let (srv, offer) = reg.reneg_begin("SN-NEG", now, POLICY).unwrap();
    let (_st, reply) = dev.reneg_on_offer(&offer).unwrap();
    assert!(matches!(
        reg.reneg_reply("SN-NEG", srv, &reply, Some(600), now, POLICY),
        Err(RegistryError::RateLimited { .. })
    ));
    assert_eq!(agreed(&rig, &reg, &dev), 700);
    assert!(matches!(
        reg.reneg_begin("SN-NEG", now, POLICY),
        Err(RegistryError::RateLimited { .. })
    ));
}

/// A server that holds the PSK but ignores the rate limit (or a host
/// replaying its messages) cannot change the device more often than the
/// device's own limit, nor raise max_key_uses; a refused Value changes
/// nothing on the device.
#[test]
fn the_device_enforces_its_own_rate_limit_and_refuses_raises() {
    let (rig, reg, mut dev) = Rig::new();
    let hostile = RenegPolicy {
        max_changes: 100,
        window_secs: 30 * DAY,
    };
    let now = T0;
    let attempt = |reg: &Registry, dev: &mut Sealer<FileSecureElement>, v: u64| {
        let (srv, offer) = reg.reneg_begin("SN-NEG", now, hostile).unwrap();
        let (st, reply) = dev.reneg_on_offer(&offer).unwrap();
        let RenegStep::Value(srv, value) = reg
            .reneg_reply("SN-NEG", srv, &reply, Some(v), now, hostile)
            .unwrap()
        else {
            panic!("no value");
        };
        let confirm = dev.reneg_on_value(st, &value, now, POLICY)?;
        reg.reneg_finish("SN-NEG", srv, &confirm).unwrap();
        Ok::<(), DeviceError>(())
    };
    attempt(&reg, &mut dev, 900).unwrap();
    attempt(&reg, &mut dev, 800).unwrap();
    attempt(&reg, &mut dev, 700).unwrap();
    let before = std::fs::read(&rig.state).unwrap();
    let e = attempt(&reg, &mut dev, 600).unwrap_err();
    assert!(matches!(e, DeviceError::RenegRefused { .. }), "{e}");
    // Also across a reboot: the history is in the state file.
    drop(dev);
    let mut dev = rig.device();
    let e = attempt(&reg, &mut dev, 600).unwrap_err();
    assert!(matches!(e, DeviceError::RenegRefused { .. }), "{e}");
    assert_eq!(dev.state().max_key_uses, 700);
    // Only the offer counter moved, never the schedule.
    let after = rig.device().state().clone();
    let mut b =
        <aorta_device::rotation::RotationState as aorta_base::codec::Decode>::from_bytes(&before)
            .unwrap();
    b.reneg_counter = after.reneg_counter;
    assert_eq!(b, after);
    // The server resolves to what the device runs.
    resolve(&reg, &mut dev, now + 1);
    assert_eq!(agreed(&rig, &reg, &dev), 700);
    // Raising is refused by the device whatever the server's policy.
    let later = now + 40 * DAY;
    let (srv, offer) = reg.reneg_begin("SN-NEG", later, hostile).unwrap();
    let (st, reply) = dev.reneg_on_offer(&offer).unwrap();
    // The registry itself only lowers; a hostile server seals a raise directly.
    let (srv2, _) = srv.verify_reply(&reply).unwrap();
    let (_c, value) = srv2.send_value(5000).unwrap();
    let e = dev.reneg_on_value(st, &value, later, POLICY).unwrap_err();
    assert!(matches!(e, DeviceError::RenegRefused { .. }), "{e}");
    assert_eq!(dev.state().max_key_uses, 700);
}

/// An Offer the device answered can never be answered again — even when the
/// Value never came and the device rebooted (the counter is persisted
/// before the Reply leaves).
#[test]
fn an_answered_offer_replayed_after_a_reboot_is_refused() {
    let (rig, reg, mut dev) = Rig::new();
    let (_srv, offer) = reg.reneg_begin("SN-NEG", T0, POLICY).unwrap();
    dev.reneg_on_offer(&offer).unwrap();
    drop(dev);
    let mut dev = rig.device();
    assert!(matches!(
        dev.reneg_on_offer(&offer),
        Err(DeviceError::Reneg(RenegError::Replayed { .. }))
    ));
}
