//! Findings of the coverage-guided fuzzing campaign (`docs/fuzzing.md`),
//! each a named regression test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_crypto::selective::{
    HeaderRule, KdfParams, Mode, ProtectOptions, SelectiveError, open_private, protect,
};

/// A private container with its Argon2id costs (bytes 40..52) replaced.
fn container_with_costs(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Vec<u8> {
    let opts = ProtectOptions {
        mode: Mode::Strong,
        kdf: KdfParams::INSECURE_TEST,
        header: HeaderRule::Auto,
    };
    let mut private = protect(b"a record", b"pw", &opts).unwrap().private;
    private[40..44].copy_from_slice(&m_cost_kib.to_be_bytes());
    private[44..48].copy_from_slice(&t_cost.to_be_bytes());
    private[48..52].copy_from_slice(&p_cost.to_be_bytes());
    private
}

/// The largest costs the old range allowed (1 GiB, 16 passes, 16 lanes) made
/// every recovery attempt of a hostile container take 30 s and 1 GB; costs
/// over the cap (`docs/vault-format.md`) are now refused before any key is
/// derived, each bound on its own and the product m × t.
#[test]
fn vault_kdf_costs_over_the_phone_cap_are_refused() {
    for (m, t, p) in [
        (KdfParams::MAX_M_COST_KIB + 1, 1, 1),     // memory
        (64 * 1024, KdfParams::MAX_T_COST + 1, 1), // passes
        (64 * 1024, 1, KdfParams::MAX_P_COST + 1), // lanes
        (256 * 1024, 3, 1),                        // work: 768 MiB-passes
        (1 << 20, 16, 16),                         // the old maximum
    ] {
        let c = container_with_costs(m, t, p);
        match open_private(&c, b"pw") {
            Err(SelectiveError::KdfParamsOutOfRange {
                m_cost_kib,
                t_cost,
                p_cost,
            }) => assert_eq!((m_cost_kib, t_cost, p_cost), (m, t, p)),
            other => panic!("m={m} t={t} p={p}: {other:?}"),
        }
    }
}

/// The default costs and the cap itself stay accepted (checked without
/// deriving: the derivation's cost is a benchmark's business).
#[test]
fn vault_kdf_costs_at_the_cap_are_accepted() {
    for p in [
        KdfParams::DEFAULT,
        KdfParams {
            m_cost_kib: KdfParams::MAX_M_COST_KIB,
            t_cost: 2,
            p_cost: KdfParams::MAX_P_COST,
        },
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: KdfParams::MAX_T_COST,
            p_cost: 1,
        },
    ] {
        p.check().unwrap();
    }
}
