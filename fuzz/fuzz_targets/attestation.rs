//! Attestation evidence beyond its framing (which `formats` covers): the
//! verifier over decoded evidence (with the nonce and time it claims, so
//! the checks reach the backend's proof), and the DCAP quote verifier
//! (dcap-qvl behind aorta's own length and collateral checks) over a quote
//! and collateral split from the input. Any bytes give a verified worker or
//! a typed refusal, never a panic.
#![no_main]

use aorta_base::codec::Decode;
use aorta_enclave::verify::{VerifierPolicy, verify, verify_dcap_quote};
use aorta_enclave::{Backend, Evidence};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if pick & 1 == 0 {
        if let Ok(ev) = Evidence::from_bytes(rest) {
            let mut policy = VerifierPolicy::default();
            policy.allowed_backends = vec![
                Backend::Sim,
                Backend::Tdx,
                Backend::SevSnp,
                Backend::SgxGramine,
            ];
            policy.allow_simulation = true;
            let _ = verify(&ev, &ev.claims.nonce, ev.claims.issued_at, &policy);
        }
    } else {
        // Quote ‖ collateral, split where two bytes after the pick say.
        let Some((cut, rest)) = rest.split_first_chunk::<2>() else {
            return;
        };
        let at = usize::from(u16::from_le_bytes(*cut)).min(rest.len());
        let (quote, collateral) = rest.split_at(at);
        let backend = if pick & 2 == 0 {
            Backend::Tdx
        } else {
            Backend::SgxGramine
        };
        let _ = verify_dcap_quote(backend, quote, collateral, 1_765_000_000);
    }
});
