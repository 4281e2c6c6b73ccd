//! Renegotiating max_key_uses end to end: registry (server) ↔ sealer (device),
//! with the rate limit, replayed offers, a MITM, and frames after the change.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_crypto::frame::ChannelCalibration;
use aorta_crypto::keys;
use aorta_crypto::reneg::{Offer, Reply, Sealed};
use aorta_device::DeviceError;
use aorta_device::rotation::Sealer;
use aorta_device::se::FileSecureElement;
use aorta_registry::{PoolConfig, Registry, RegistryError, RenegPolicy};

#[test]
fn renegotiation_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let reg = Registry::init(
        d.path().join("reg"),
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
    let state = dir.state();
    let mut dev = Sealer::new(FileSecureElement::open(dir.se()).unwrap(), &state).unwrap();
    let cal = [ChannelCalibration::new(200.0, 0, 0, 11, "mV", "x")];
    let seal_and_send = |dev: &mut Sealer<FileSecureElement>| {
        let f = dev.seal(0, 360_000, &cal, &[&[1, 2, 3][..]]).unwrap();
        reg.accept_frame(&f.bytes).unwrap();
        f.key_index
    };
    seal_and_send(&mut dev);

    let policy = RenegPolicy {
        max_changes: 3,
        window_secs: 30 * 86_400,
    };
    let day = 86_400;
    let mut now = 1_700_000_000;
    let run = |dev: &mut Sealer<FileSecureElement>,
               value: u64,
               now: u64|
     -> Result<Offer, RegistryError> {
        let (srv, offer) = reg.reneg_begin("SN-NEG", now, policy)?;
        let (st, reply) = dev
            .reneg_on_offer(&Offer::decode(&offer.encode()).unwrap())
            .unwrap();
        let (srv, value_msg) = reg.reneg_reply(
            "SN-NEG",
            srv,
            &Reply::decode(&reply.encode()).unwrap(),
            value,
        )?;
        let confirm = dev
            .reneg_on_value(st, &Sealed::decode_value(&value_msg.encode()).unwrap())
            .unwrap();
        reg.reneg_finish(
            "SN-NEG",
            srv,
            &Sealed::decode_confirm(&confirm.encode()).unwrap(),
            now,
        )?;
        Ok(offer)
    };

    // Change to 2 frames per key; the server learns it; rotation follows.
    let first_offer = run(&mut dev, 2, now).unwrap();
    assert_eq!(reg.device("SN-NEG").unwrap().max_key_uses, 2);
    assert_eq!(dev.state().max_key_uses, 2);
    let idx: Vec<u16> = (0..6).map(|_| seal_and_send(&mut dev)).collect();
    assert_eq!(idx, vec![0, 0, 1, 1, 2, 2]);

    // A replayed (old) offer is refused by the device, even after a reboot.
    drop(dev);
    let mut dev = Sealer::new(FileSecureElement::open(dir.se()).unwrap(), &state).unwrap();
    assert!(matches!(
        dev.reneg_on_offer(&first_offer),
        Err(DeviceError::Reneg(_))
    ));

    // An offer made with another device's keys (a MITM without this PSK) is refused.
    let (_s, foreign) = reg.reneg_begin("SN-OTHER", now, policy).unwrap();
    assert!(dev.reneg_on_offer(&foreign).is_err());

    // Rate limit: three changes inside 30 days, the fourth is refused.
    now += day;
    run(&mut dev, 3, now).unwrap();
    now += day;
    run(&mut dev, 4, now).unwrap();
    now += day;
    assert!(matches!(
        run(&mut dev, 5, now),
        Err(RegistryError::RateLimited { .. })
    ));
    assert_eq!(reg.device("SN-NEG").unwrap().max_key_uses, 4);
    // A month later it is allowed again.
    now += 31 * day;
    run(&mut dev, 6, now).unwrap();
    assert_eq!(dev.state().max_key_uses, 6);
    // Frames keep flowing under the new schedule.
    for _ in 0..13 {
        seal_and_send(&mut dev);
    }
}
