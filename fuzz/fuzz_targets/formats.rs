//! Every binary wire and disk format aorta defines, through each crate's
//! hidden `fuzzing` module: the first byte picks the format, the rest is
//! decoded and, when it decodes, re-encoded and compared (a differing
//! round trip panics). Short input and trailing bytes must be typed errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

const ORACLES: [fn(&[u8]) -> bool; 37] = [
    aorta_crypto::fuzzing::frame,
    aorta_crypto::fuzzing::calibration,
    aorta_crypto::fuzzing::reneg_offer,
    aorta_crypto::fuzzing::reneg_reply,
    aorta_crypto::fuzzing::vault_public,
    aorta_crypto::fuzzing::vault_private,
    aorta_crypto::fuzzing::vault_material,
    aorta_crypto::fuzzing::session_envelope,
    aorta_crypto::fuzzing::sealed_result,
    aorta_crypto::fuzzing::sealed_state,
    aorta_crypto::fuzzing::session_checkpoint,
    aorta_enclave::fuzzing::evidence,
    aorta_enclave::fuzzing::message,
    aorta_enclave::fuzzing::key_bundle,
    aorta_registry::fuzzing::device_record,
    aorta_registry::fuzzing::frame_state,
    aorta_registry::fuzzing::alloc_record,
    aorta_vault::fuzzing::shard,
    aorta_vault::fuzzing::grant,
    aorta_vault::fuzzing::grant_header,
    aorta_registry::fuzzing::reneg_history,
    aorta_device::fuzzing::key_store,
    aorta_device::fuzzing::rotation_state,
    aorta_stream::fuzzing::record_header,
    aorta_stream::fuzzing::log_record,
    aorta_api::fuzzing::log_body,
    aorta_crypto::fuzzing::worker_cert,
    aorta_crypto::fuzzing::signed_result,
    aorta_crypto::fuzzing::frame_prefix,
    aorta_vault::fuzzing::doctor_certificate,
    aorta_vault::fuzzing::emergency_request,
    aorta_vault::fuzzing::gate_grant,
    aorta_vault::fuzzing::gate_request,
    aorta_vault::fuzzing::gate_response,
    aorta_vault::fuzzing::replica,
    aorta_vault::fuzzing::audit_anchor,
    aorta_vault::fuzzing::gate_role_request,
];

fuzz_target!(|data: &[u8]| {
    if let Some((&pick, rest)) = data.split_first() {
        if let Some(oracle) = ORACLES.get(usize::from(pick) % ORACLES.len()) {
            oracle(rest);
        }
    }
});
