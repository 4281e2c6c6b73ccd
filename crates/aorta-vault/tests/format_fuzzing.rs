//! The vault's byte formats on the shared decoder: every committed vector
//! decodes and re-encodes to the same bytes, every single-byte mutation and
//! truncation of them is handled without a panic, short and trailing bytes
//! are typed errors, and the shard-length overflow (k = 1, data length
//! u64::MAX) is refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers: a failing unwrap, expect, panic or index is the test failing"
)]

use std::path::PathBuf;

use aorta_base::codec::DecodeError;
use aorta_crypto::selective::{RecordId, RecoveryMaterial, UnitKeys};
use aorta_vault::VaultError;
use aorta_vault::dispersal::{self, Dispersal};
use aorta_vault::fuzzing;
use aorta_vault::grant;
use aorta_vault::integrity::{self, IntegrityKey};

fn vector_key() -> IntegrityKey {
    let m = RecoveryMaterial::from_bytes(&vector("strong.material.aosm")).unwrap();
    IntegrityKey::for_material(&m).unwrap()
}

fn vector(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/vectors/vault-format")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every one-byte change (three values per position) and every truncation.
fn mutations(v: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    let flips = (0..v.len()).flat_map(move |i| {
        [0x01u8, 0x80, 0xff].into_iter().map(move |x| {
            let mut m = v.to_vec();
            m[i] ^= x;
            m
        })
    });
    let cuts = (0..v.len()).map(move |n| v[..n].to_vec());
    flips.chain(cuts)
}

#[test]
fn shard_vectors_round_trip_and_no_mutation_passes_the_tag() {
    let key = vector_key();
    let rid = RecordId(*b"record-id-000001");
    let d = Dispersal { k: 2, n: 3 };
    for i in 0..3 {
        let v = vector(&format!("strong.public.aosp.shard{i}.aosd"));
        assert!(fuzzing::shard(&v), "shard {i} vector does not decode");
        assert_eq!(dispersal::parse(&v).unwrap().version, 2);
        dispersal::check(&v, i, &rid, d, &key).unwrap();
        for m in mutations(&v) {
            // Decoding does not need the key; the tag covers every byte.
            let _ = fuzzing::shard(&m);
            assert!(dispersal::check(&m, i, &rid, d, &key).is_err());
        }
    }
    let v = vector("strong.public.aosi");
    assert!(fuzzing::replica(&v));
    integrity::open_replica(&v, &rid, &key).unwrap();
    for m in mutations(&v) {
        let _ = fuzzing::replica(&m);
        assert!(integrity::open_replica(&m, &rid, &key).is_err());
    }
}

#[test]
fn v1_shard_vectors_round_trip_and_mutations_never_panic() {
    for i in 0..3 {
        let v = vector(&format!("strong.public.aosp.shard{i}.v1.aosd"));
        assert!(fuzzing::shard(&v), "shard {i} vector does not decode");
        let s = dispersal::parse(&v).unwrap();
        assert_eq!(usize::from(s.index), i);
        let mut accepted = 0;
        for m in mutations(&v) {
            // The checksum covers every byte: no mutation is accepted.
            if fuzzing::shard(&m) {
                accepted += 1;
            }
            assert!(dispersal::parse(&m).is_err());
        }
        assert_eq!(accepted, 0, "shard {i}: a mutation passed the checksum");
    }
}

#[test]
fn grant_vector_round_trips_and_mutations_never_panic() {
    let v = vector("strong.grant.aosg");
    assert!(fuzzing::grant(&v));
    assert!(fuzzing::grant_header(&v[..88]));
    let h = grant::peek(&v).unwrap();
    assert_eq!(&h.grant_id, b"grant-id-0000001");
    for m in mutations(&v) {
        // Header mutations may still decode (the header is authenticated
        // when the grant is opened, not when it is parsed); a decoded
        // grant must re-encode to exactly its bytes.
        let _ = fuzzing::grant(&m);
        let _ = fuzzing::grant_header(m.get(..88).unwrap_or(&m));
        let _ = grant::peek(&m);
    }
}

#[test]
fn short_and_trailing_bytes_are_typed_errors() {
    let v = vector("strong.public.aosp.shard0.aosd");
    assert!(matches!(
        dispersal::parse(&v[..v.len() - 1]),
        Err(VaultError::Decode {
            source: DecodeError::Short { .. },
            ..
        })
    ));
    let mut long = v.clone();
    long.push(0);
    assert!(matches!(
        dispersal::parse(&long),
        Err(VaultError::Decode {
            source: DecodeError::Trailing { extra: 1, .. },
            ..
        })
    ));
    let g = vector("strong.grant.aosg");
    assert!(matches!(
        grant::peek(&g[..87]),
        Err(VaultError::Decode {
            source: DecodeError::Short { .. },
            ..
        })
    ));
    assert!(matches!(
        grant::peek(&g[..100]),
        Err(VaultError::Decode {
            source: DecodeError::Short {
                field: "encapsulated key",
                ..
            },
            ..
        })
    ));
    let mut newer = v.clone();
    newer[4] = 3;
    assert!(matches!(
        dispersal::parse(&newer),
        Err(VaultError::UnknownVersion { version: 3, .. })
    ));
    let r = vector("strong.public.aosi");
    let mut newer = r.clone();
    newer[4] = 2;
    assert!(matches!(
        integrity::parse_replica(&newer),
        Err(VaultError::UnknownVersion { version: 2, .. })
    ));
    assert!(matches!(
        integrity::parse_replica(&r[..r.len() - 1]),
        Err(VaultError::Decode {
            source: DecodeError::Short { .. },
            ..
        })
    ));
    let mut newer = g.clone();
    newer[4] = 9;
    assert!(matches!(
        grant::peek(&newer),
        Err(VaultError::UnknownVersion { version: 9, .. })
    ));
}

#[test]
fn k1_with_data_length_u64_max_is_refused_without_overflow() {
    let mut h = Vec::new();
    h.extend_from_slice(dispersal::SHARD_MAGIC);
    h.extend_from_slice(&[dispersal::SHARD_VERSION, 1, 2, 0]);
    h.extend_from_slice(&[7; 16]);
    h.extend_from_slice(&u64::MAX.to_be_bytes());
    for shard_len in [u64::MAX, 0, 2] {
        let mut d = h.clone();
        d.extend_from_slice(&shard_len.to_be_bytes());
        d.extend_from_slice(&[0; 64]);
        assert!(matches!(
            dispersal::parse(&d),
            Err(VaultError::Decode {
                source: DecodeError::Invalid {
                    field: "shard length",
                    ..
                },
                ..
            })
        ));
        assert!(!fuzzing::shard(&d));
    }
}

#[test]
fn fresh_shards_round_trip() {
    let d = Dispersal { k: 1, n: 2 };
    for len in [0usize, 1, 2, 3, 1000] {
        let data = vec![0x5a; len];
        let key = IntegrityKey::derive(&UnitKeys::from_parts([3; 32], [4; 32])).unwrap();
        for s in dispersal::encode(&data, RecordId([1; 16]), d, &key).unwrap() {
            assert!(fuzzing::shard(&s), "len {len}");
        }
    }
}

#[test]
fn anchor_vector_round_trips_and_mutations_never_panic() {
    let v = vector("audit.anchor");
    assert_eq!(v.len(), aorta_vault::audit::ANCHOR_LEN);
    assert!(fuzzing::audit_anchor(&v));
    for m in mutations(&v) {
        let _ = fuzzing::audit_anchor(&m);
        let _ = aorta_vault::audit::AuditAnchor::parse(&m);
    }
    assert!(matches!(
        aorta_vault::audit::AuditAnchor::parse(&v[..79]),
        Err(VaultError::Decode {
            source: DecodeError::Short { .. },
            ..
        })
    ));
}
