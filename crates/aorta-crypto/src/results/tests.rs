//! Tests of the results containers (moved with the split of `results.rs`).

use super::*;
use aorta_base::hex::encode as to_hex;
use proptest::prelude::*;

fn alice() -> ClinicianIdentity {
    ClinicianIdentity::from_secret_bytes(&[0x11; 32]).unwrap()
}
fn bob() -> ClinicianIdentity {
    ClinicianIdentity::from_secret_bytes(&[0x22; 32]).unwrap()
}

#[test]
fn round_trip_and_bindings() {
    let a = alice();
    let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
    let sealed = s.seal("ECG-1/hr/1", b"{\"hr\":70}").unwrap();
    assert_eq!(sealed.len(), RESULT_HEADER_LEN + 9 + TAG_LEN);
    assert_eq!(sealed_result_session_id(&sealed).unwrap(), s.session_id());
    let info = envelope_info(&env).unwrap();
    assert_eq!(info.subscriber_id, "dr-alice");
    assert_eq!(info.session_id, s.session_id());
    let o = open_envelope(&a, &env).unwrap();
    assert_eq!(o.subscriber_id(), "dr-alice");
    assert_eq!(&o.open("ECG-1/hr/1", &sealed).unwrap()[..], b"{\"hr\":70}");
    // Moved to another result id: refused.
    assert_eq!(
        o.open("ECG-1/hr/2", &sealed),
        Err(ResultsError::AuthenticationFailed {
            what: Container::SealedResult
        })
    );
    // Empty plaintext is allowed.
    let e = s.seal("r", b"").unwrap();
    assert!(o.open("r", &e).unwrap().is_empty());
    // Two seals of the same result differ (random nonce).
    assert_ne!(s.seal("r", b"x").unwrap(), s.seal("r", b"x").unwrap());
}

#[test]
fn wrong_identity_subscriber_and_session_are_refused() {
    let a = alice();
    let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
    assert_eq!(
        open_envelope(&bob(), &env).unwrap_err(),
        ResultsError::AuthenticationFailed {
            what: Container::SessionEnvelope
        }
    );
    assert!(matches!(
        open_envelope_as(&a, "dr-bob", &env),
        Err(ResultsError::WrongSubscriber { .. })
    ));
    assert!(open_envelope_as(&a, "dr-alice", &env).is_ok());
    // A result of another session (same clinician): WrongSession.
    let (s2, env2) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
    let o2 = open_envelope(&a, &env2).unwrap();
    let sealed = s.seal("r1", b"data").unwrap();
    assert!(matches!(
        o2.open("r1", &sealed),
        Err(ResultsError::WrongSession { .. })
    ));
    // The host rewrites the session id of a result to the other session:
    // the AAD binds it, so the other session's key refuses it.
    let mut moved = sealed.clone();
    moved[5..21].copy_from_slice(&s2.session_id());
    assert_eq!(
        o2.open("r1", &moved),
        Err(ResultsError::AuthenticationFailed {
            what: Container::SealedResult
        })
    );
    // Rewriting the subscriber id in the envelope header breaks HPKE.
    let mut env_b = env.clone();
    env_b[6..14].copy_from_slice(b"dr-alicf");
    assert!(matches!(
        open_envelope(&a, &env_b),
        Err(ResultsError::AuthenticationFailed { .. })
    ));
}

#[test]
fn a_result_cannot_move_to_another_subscriber_with_the_same_session_key() {
    // Even if two subscribers' sessions shared a session key and id (a
    // worker bug the API prevents), the subscriber id in the AAD keeps
    // results apart.
    let a = alice();
    let key = [7u8; 32];
    let sid = [9u8; 16];
    let (sa, _) =
        ResultSession::open_new_with_randomness("dr-alice", &a.public(), &key, sid, &[1; 32])
            .unwrap();
    let (_, env_b) =
        ResultSession::open_new_with_randomness("dr-bob", &a.public(), &key, sid, &[2; 32])
            .unwrap();
    let ob = open_envelope(&a, &env_b).unwrap();
    let sealed = sa.seal("r", b"secret").unwrap();
    assert!(matches!(
        ob.open("r", &sealed),
        Err(ResultsError::AuthenticationFailed { .. })
    ));
}

#[test]
fn id_limits() {
    let a = alice();
    let long = "x".repeat(256);
    assert!(matches!(
        ResultSession::open_new(&long, &a.public()),
        Err(ResultsError::Oversize { .. })
    ));
    assert!(matches!(
        ResultSession::open_new("", &a.public()),
        Err(ResultsError::BadField { .. })
    ));
    let max = "y".repeat(255);
    let (s, env) = ResultSession::open_new(&max, &a.public()).unwrap();
    let o = open_envelope(&a, &env).unwrap();
    let sealed = s.seal(&max, b"1").unwrap();
    assert_eq!(&o.open(&max, &sealed).unwrap()[..], b"1");
    assert!(matches!(
        s.seal(&long, b"1"),
        Err(ResultsError::Oversize { .. })
    ));
    assert!(matches!(
        s.seal("", b"1"),
        Err(ResultsError::BadField { .. })
    ));
    let big = vec![0u8; MAX_RESULT_LEN + 1];
    assert!(matches!(
        s.seal("r", &big),
        Err(ResultsError::Oversize { .. })
    ));
}

#[test]
fn public_key_is_standard_x25519() {
    // RFC 7748 section 6.1, Alice's key pair.
    let sk: [u8; 32] = *aorta_base::hex::decode_array::<32>(
        "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        aorta_base::hex::Case::Lower,
    )
    .unwrap();
    let id = ClinicianIdentity::from_secret_bytes(&sk).unwrap();
    assert_eq!(
        to_hex(id.public().as_bytes()),
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    );
}

#[test]
fn low_order_recipient_is_refused() {
    // The all-zero point and 1 are low-order: DH gives all zeros.
    for pk in [[0u8; 32], {
        let mut b = [0u8; 32];
        b[0] = 1;
        b
    }] {
        assert_eq!(
            ResultSession::open_new("s", &ClinicianPublic::from_bytes(pk)).unwrap_err(),
            ResultsError::BadRecipient
        );
    }
}

#[test]
fn text_forms() {
    let a = alice();
    let t = a.to_text();
    assert!(t.starts_with(SECRET_TEXT_PREFIX));
    assert_eq!(t.len(), SECRET_TEXT_PREFIX.len() + 64);
    let back = ClinicianIdentity::from_text(&t).unwrap();
    assert_eq!(back.public(), a.public());
    let p = a.public().to_text();
    assert!(p.starts_with(PUBLIC_TEXT_PREFIX));
    assert_eq!(ClinicianPublic::from_text(&p).unwrap(), a.public());
    assert_eq!(p.parse::<ClinicianPublic>().unwrap(), a.public());
    // Strict: wrong case, whitespace, length, prefix.
    for bad in [
        t.to_lowercase(),
        format!("{}\n", &*t),
        format!(" {}", &*t),
        t[..t.len() - 1].to_string(),
        format!("{}0", &*t),
        t.replacen("SECRET-1", "SECRET-2", 1),
        p.clone(),
    ] {
        assert!(ClinicianIdentity::from_text(&bad).is_err(), "{bad}");
    }
    for bad in [
        p.to_uppercase(),
        format!("{p}\n"),
        p[..p.len() - 2].to_string(),
        p.replacen("-1", "-2", 1),
        t.to_string(),
    ] {
        assert!(ClinicianPublic::from_text(&bad).is_err(), "{bad}");
    }
    // Identity file round trip; tampered public comment refused.
    let f = a.to_file_text();
    assert_eq!(
        ClinicianIdentity::from_file_text(&f).unwrap().public(),
        a.public()
    );
    assert_eq!(
        ClinicianIdentity::from_file_text(&f.replace('\n', "\r\n"))
            .unwrap()
            .public(),
        a.public()
    );
    let other = bob().public().to_text();
    assert!(ClinicianIdentity::from_file_text(&f.replace(&p, &other)).is_err());
    let twice = format!("{}{}\n", &*f, &*t);
    assert!(ClinicianIdentity::from_file_text(&twice).is_err());
    assert!(ClinicianIdentity::from_file_text("# nothing\n").is_err());
}

#[test]
fn debug_prints_no_secret() {
    let a = alice();
    let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
    let o = open_envelope(&a, &env).unwrap();
    let secret_hex = to_hex(&[0x11; 32]);
    for d in [format!("{a:?}"), format!("{s:?}"), format!("{o:?}")] {
        assert!(!d.contains(&secret_hex), "{d}");
        assert!(!d.contains("17, 17"), "{d}");
        assert!(!d.to_lowercase().contains(&to_hex(&*s.session_key)), "{d}");
    }
}

#[test]
fn session_checkpoint_round_trip() {
    let a = alice();
    let (s, env) = ResultSession::open_new("dr-alice", &a.public()).unwrap();
    let cp = s.to_checkpoint();
    let s2 = ResultSession::from_checkpoint(&cp).unwrap();
    assert_eq!(s2.session_id(), s.session_id());
    assert_eq!(s2.subscriber_id(), "dr-alice");
    let o = open_envelope(&a, &env).unwrap();
    let sealed = s2.seal("after-restart", b"42").unwrap();
    assert_eq!(&o.open("after-restart", &sealed).unwrap()[..], b"42");
    for n in 0..cp.len() {
        assert!(ResultSession::from_checkpoint(&cp[..n]).is_err(), "{n}");
    }
    let mut long = cp.to_vec();
    long.push(b'x');
    assert!(ResultSession::from_checkpoint(&long).is_err());
    let mut v = cp.to_vec();
    v[0] = 2;
    assert!(matches!(
        ResultSession::from_checkpoint(&v),
        Err(ResultsError::UnsupportedVersion { version: 2, .. })
    ));
}

#[test]
fn state_round_trip_and_context_binding() {
    let k = [0x42; 32];
    let sealed = seal_state(&k, b"ward-a", b"operator state").unwrap();
    assert_eq!(
        &open_state(&k, b"ward-a", &sealed).unwrap()[..],
        b"operator state"
    );
    assert_eq!(
        open_state(&k, b"ward-b", &sealed),
        Err(ResultsError::AuthenticationFailed {
            what: Container::SealedState
        })
    );
    assert!(open_state(&[0x43; 32], b"ward-a", &sealed).is_err());
    let empty = seal_state(&k, b"", b"").unwrap();
    assert!(open_state(&k, b"", &empty).unwrap().is_empty());
    let big_ctx = vec![0u8; MAX_CONTEXT_LEN + 1];
    assert!(matches!(
        seal_state(&k, &big_ctx, b"x"),
        Err(ResultsError::Oversize { .. })
    ));
}

#[test]
fn versions_and_magics_are_typed() {
    let a = alice();
    let (s, mut env) = ResultSession::open_new("d", &a.public()).unwrap();
    let mut r = s.seal("r", b"x").unwrap();
    let mut st = seal_state(&[1; 32], b"c", b"x").unwrap();
    for (buf, what) in [
        (&mut env, Container::SessionEnvelope),
        (&mut r, Container::SealedResult),
        (&mut st, Container::SealedState),
    ] {
        buf[4] = 2;
        let e = match what {
            Container::SessionEnvelope => envelope_info(buf).unwrap_err(),
            Container::SealedResult => sealed_result_session_id(buf).unwrap_err(),
            _ => open_state(&[1; 32], b"c", buf).unwrap_err(),
        };
        assert_eq!(
            e,
            ResultsError::UnsupportedVersion {
                what,
                version: 2,
                supported: 1
            }
        );
        assert!(e.to_string().contains("upgrade aorta"));
        buf[0] = b'X';
        let e = match what {
            Container::SessionEnvelope => envelope_info(buf).unwrap_err(),
            Container::SealedResult => sealed_result_session_id(buf).unwrap_err(),
            _ => open_state(&[1; 32], b"c", buf).unwrap_err(),
        };
        assert!(matches!(e, ResultsError::BadMagic { .. }), "{e:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..400)) {
        let a = alice();
        let (s, env) = ResultSession::open_new_with_randomness(
            "dr-alice", &a.public(), &[3; 32], [4; 16], &[5; 32]).unwrap();
        let o = open_envelope(&a, &env).unwrap();
        let _ = envelope_info(&b);
        let _ = open_envelope(&a, &b);
        let _ = sealed_result_session_id(&b);
        prop_assert!(o.open("r", &b).is_err());
        prop_assert!(open_state(&[1; 32], b"c", &b).is_err());
        let _ = ResultSession::from_checkpoint(&b);
        let _ = s.seal("r", &b);
        if let Ok(t) = std::str::from_utf8(&b) {
            let _ = ClinicianIdentity::from_text(t);
            let _ = ClinicianIdentity::from_file_text(t);
            let _ = ClinicianPublic::from_text(t);
        }
    }

    #[test]
    fn arbitrary_headers_with_valid_magic_never_panic(
        which in 0u8..3,
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let a = alice();
        let (_, env) = ResultSession::open_new_with_randomness(
            "dr-alice", &a.public(), &[3; 32], [4; 16], &[5; 32]).unwrap();
        let o = open_envelope(&a, &env).unwrap();
        let magic: &[u8] = match which { 0 => b"AORS\x01", 1 => b"AORR\x01", _ => b"AOST\x01" };
        let mut b = magic.to_vec();
        b.extend_from_slice(&tail);
        prop_assert!(open_envelope(&a, &b).is_err());
        prop_assert!(o.open("r", &b).is_err());
        prop_assert!(open_state(&[1; 32], b"c", &b).is_err());
    }

    #[test]
    fn text_strings_never_panic(s in "\\PC{0,120}") {
        let _ = ClinicianIdentity::from_text(&s);
        let _ = ClinicianIdentity::from_file_text(&s);
        let _ = ClinicianPublic::from_text(&s);
    }
}

#[test]
fn key_texts_refuse_a_sign_inside_the_hex() {
    // `u8::from_str_radix` reads "+a" as 10; the strict hex must refuse it.
    let id = alice();
    let mut public = id.public().to_text();
    public.replace_range(PUBLIC_TEXT_PREFIX.len()..PUBLIC_TEXT_PREFIX.len() + 1, "+");
    assert!(matches!(
        ClinicianPublic::from_text(&public),
        Err(ResultsError::BadField { field: "key", .. })
    ));
    let mut secret = id.to_text().to_string();
    secret.replace_range(SECRET_TEXT_PREFIX.len()..SECRET_TEXT_PREFIX.len() + 1, "+");
    assert!(matches!(
        ClinicianIdentity::from_text(&secret),
        Err(ResultsError::BadField { field: "key", .. })
    ));
    let rid = "+".to_owned() + &"0".repeat(31);
    assert_eq!(crate::selective::container::RecordId::from_hex(&rid), None);
}
