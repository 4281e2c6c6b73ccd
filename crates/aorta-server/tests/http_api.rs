//! The HTTPS API against hostile and broken input, in process over real
//! TLS on loopback: every bad frame gets its 4xx and a JSON reason, nothing
//! is a 5xx or a panic, acknowledged frames are in the log, backpressure
//! answers 503 with Retry-After, worker routes need the token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use aorta_crypto::auth::{SignedResult, SigningKey, WorkerCert};

use aorta_stream::log::{FileLog, FrameLog};
use proptest::prelude::*;

mod http_common;
use http_common::*;

#[test]
fn frames_are_acknowledged_once_durable_and_bad_frames_get_their_4xx() {
    let r = start(|_| {});
    let good = sealed("SN-OK", 1, 7, 360);
    let (s, ack) = post(&r, good.clone());
    assert_eq!(s, 200, "{ack}");
    assert_eq!(ack["serial"], "SN-OK");
    assert_eq!(ack["sequence"], 7);
    assert_eq!(ack["duplicate"], false);
    // The acknowledged frame is in the log, whole.
    let log = FileLog::open(r.data.join("frames.log")).unwrap();
    let (recs, _) = log.read_from(0, 10).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(&recs[0][8..], &good[..]);
    // An exact re-send is acknowledged again, not stored twice.
    let (s, ack) = post(&r, good.clone());
    assert_eq!(
        (s, &ack["duplicate"]),
        (200, &serde_json::Value::Bool(true))
    );
    // The same sequence with other bytes is a replay.
    let (s, e) = post(&r, sealed("SN-OK", 2, 7, 360));
    assert_eq!((s, e["error"].as_str()), (409, Some("sequence_replayed")));

    let mut truncated = good.clone();
    truncated.truncate(good.len() - 5);
    let mut bad_version = good.clone();
    bad_version[4] = 99;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (Vec::new(), 400, "malformed_frame"),
        (b"hello world".to_vec(), 400, "malformed_frame"),
        (truncated, 400, "malformed_frame"),
        (bad_version, 400, "unsupported_version"),
        // An unknown serial, or one without a key, is answered like a bad
        // signature: no oracle of which devices exist.
        (
            sealed("SN-NOBODY", 0, 1, 360),
            401,
            "device_signature_invalid",
        ),
        (
            sealed("SN-UNVERIFIED", 0, 1, 360),
            403,
            "device_not_verified",
        ),
        (sealed("SN-SMALL", 8, 8, 360), 403, "key_index_out_of_range"),
        (sealed("SN-REVOKED", 0, 1, 360), 403, "device_revoked"),
        (
            sealed("SN-KEYLESS", 0, 1, 360),
            401,
            "device_signature_invalid",
        ),
    ];
    for (body, status, name) in cases {
        let (s, e) = post(&r, body);
        assert_eq!(s, status, "{e}");
        assert_eq!(e["error"].as_str(), Some(name), "{e}");
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    // Larger than max_frame_bytes: 413 before anything is parsed.
    let (s, _) = post(&r, vec![0u8; 70 << 10]);
    assert_eq!(s, 413);
    // Nothing refused reached the log.
    let (recs, _) = FileLog::open(r.data.join("frames.log"))
        .unwrap()
        .read_from(0, 10)
        .unwrap();
    assert_eq!(recs.len(), 1);
    // The refusals are counted by name.
    let m = metrics(&r);
    assert!(m.contains("aorta_ingest_frames_accepted_total 1"), "{m}");
    assert!(
        m.contains("aorta_ingest_frames_refused_total{reason=\"device_signature_invalid\"} 2"),
        "{m}"
    );
    assert!(m.contains("aorta_ingest_frames_refused_total{reason=\"sequence_replayed\"} 1"));
}

#[test]
fn backpressure_from_a_lagging_worker_is_503_with_retry_after() {
    let r = start(|c| c.max_worker_lag_bytes = 1000);
    // The first frames fit in the allowed lag; then ingest refuses to grow it.
    let mut statuses = Vec::new();
    for seq in 0..6 {
        let body = sealed("SN-OK", 0, seq, 360);
        let sig = device_key("SN-OK").sign(&aorta_crypto::auth::frame_message(&body));
        let resp = r
            .client
            .post(format!("{}/v1/frames", r.url))
            .header(aorta_api::SIGNATURE_HEADER, aorta_base::hex::encode(&sig))
            .body(body)
            .send()
            .unwrap();
        let s = resp.status().as_u16();
        if s == 503 {
            assert_eq!(
                resp.headers().get("retry-after").unwrap().to_str().unwrap(),
                "1"
            );
        }
        statuses.push(s);
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&503), "{statuses:?}");
    // Once the worker checkpoints past the log end, ingest accepts again.
    let end: u64 = std::fs::metadata(r.data.join("frames.log")).unwrap().len();
    let cp = aorta_stream::checkpoint::Checkpoint::new(end, b"{}".to_vec()).unwrap();
    let s = r
        .client
        .put(format!("{}/v1/checkpoint", r.url))
        .bearer_auth(&r.token)
        .body(serde_json::to_vec(&cp).unwrap())
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 204);
    let (s, _) = post(&r, sealed("SN-OK", 0, 100, 360));
    assert_eq!(s, 200);
}

#[test]
fn worker_routes_need_the_token_and_refuse_garbage() {
    let r = start(|_| {});
    let get = |path: &str, token: Option<&str>| {
        let mut q = r.client.get(format!("{}{path}", r.url));
        if let Some(t) = token {
            q = q.bearer_auth(t);
        }
        q.send().unwrap().status().as_u16()
    };
    assert_eq!(get("/v1/log?from=0", None), 401);
    assert_eq!(get("/v1/log?from=0", Some("wrong")), 401);
    assert_eq!(get("/v1/checkpoint", None), 401);
    assert_eq!(get("/v1/log?from=0", Some(&r.token)), 200);
    assert_eq!(get("/v1/log?from=999999", Some(&r.token)), 416);
    assert_eq!(get("/v1/log?from=abc", Some(&r.token)), 400);
    assert_eq!(get("/v1/checkpoint", Some(&r.token)), 204);
    assert_eq!(get("/v1/results?after=99999", None), 401);
    assert_eq!(get("/healthz", None), 200);
    let send = |method: reqwest::Method, path: &str, body: &[u8]| {
        r.client
            .request(method, format!("{}{path}", r.url))
            .bearer_auth(&r.token)
            .body(body.to_vec())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    for body in [
        &b""[..],
        b"{",
        b"[]",
        br#"{"results":[{"id":"","body":""}]}"#,
        br#"{"results":[{"id":"a","body":"***"}]}"#,
        br#"{"results":[],"extra":1}"#,
    ] {
        assert_eq!(send(reqwest::Method::POST, "/v1/results", body), 400);
    }
    for body in [
        &b"nope"[..],
        br#"{"version":1,"log_offset":0,"state":"x","crc":1}"#,
        br#"{"version":2,"log_offset":0,"state":"","crc":0}"#,
    ] {
        assert_eq!(send(reqwest::Method::PUT, "/v1/checkpoint", body), 400);
    }
    // A batch signed by a certified worker key is stored once; a replay of
    // it is counted as duplicate.
    let (worker, cert) = worker_cert(&["dr"]);
    let now = aorta_base::time::now_s();
    let record = SignedResult::sign(&worker, cert.digest(), "dr/SN/0/1", b"sealed");
    let batch = |id: &str, rec: &[u8], cert: Option<&WorkerCert>| {
        serde_json::to_vec(&aorta_api::WorkerBatch {
            results: vec![aorta_api::ResultItem::new(id, rec)],
            latencies_us: vec![1500],
            opened: 1,
            certificate: cert
                .map(|c| aorta_api::certificate_text(&aorta_base::codec::Encode::to_bytes(c))),
            ..aorta_api::WorkerBatch::default()
        })
        .unwrap()
    };
    let post_batch = |b: Vec<u8>| {
        let resp = r
            .client
            .post(format!("{}/v1/results", r.url))
            .bearer_auth(&r.token)
            .body(b)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.text().unwrap())
    };
    // The host's attacks, with the worker token it holds: an unsigned
    // result, one signed by a key no broker certified, one under another id,
    // a certificate from another broker. None is stored, so none can
    // pre-empt the real result's id.
    let rogue = SigningKey::from_seed(&[8u8; 32]).unwrap();
    let rogue_cert = WorkerCert::issue(
        &rogue,
        rogue.public(),
        now - 10,
        now + 3600,
        true,
        "tdx",
        &[1; 32],
        "ward-a",
        &["dr".to_owned()],
    );
    // A certified key of another assignment (here: of clinician "other")
    // cannot sign for dr, and an expired certificate is refused.
    let others = WorkerCert::issue(
        &broker_key(),
        rogue.public(),
        now - 10,
        now + 3600,
        true,
        "tdx",
        &[1; 32],
        "ward-b",
        &["other".to_owned()],
    );
    let expired = WorkerCert::issue(
        &broker_key(),
        worker.public(),
        now - 7200,
        now - 3600,
        true,
        "tdx",
        &[1; 32],
        "ward-a",
        &["dr".to_owned()],
    );
    for (b, why) in [
        (
            batch(
                "dr/SN/0/1",
                &SignedResult::sign(&rogue, others.digest(), "dr/SN/0/1", b"forged"),
                Some(&others),
            ),
            "result_signature_invalid",
        ),
        (
            batch(
                "dr/SN/0/1",
                &SignedResult::sign(&worker, expired.digest(), "dr/SN/0/1", b"late"),
                Some(&expired),
            ),
            "certificate_refused",
        ),
        (batch("dr/SN/0/1", b"forged", None), "result_not_certified"),
        (
            batch(
                "dr/SN/0/1",
                &SignedResult::sign(&rogue, cert.digest(), "dr/SN/0/1", b"forged"),
                Some(&cert),
            ),
            "result_signature_invalid",
        ),
        (
            batch("dr/SN/9/9", &record, Some(&cert)),
            "result_signature_invalid",
        ),
        (
            batch(
                "dr/SN/0/1",
                &SignedResult::sign(&rogue, rogue_cert.digest(), "dr/SN/0/1", b"forged"),
                Some(&rogue_cert),
            ),
            "certificate_refused",
        ),
    ] {
        let (s, body) = post_batch(b);
        assert_eq!(s, 403, "{body}");
        assert!(body.contains(why), "{body}");
    }
    let (s, ans) = post_batch(batch("dr/SN/0/1", &record, Some(&cert)));
    assert_eq!((s, ans.as_str()), (200, r#"{"stored":1,"duplicates":0}"#));
    let (_, ans) = post_batch(batch("dr/SN/0/1", &record, Some(&cert)));
    assert_eq!(ans, r#"{"stored":0,"duplicates":1}"#);
    let now = aorta_base::time::now_s();
    let (s, body) = read_as(&r, "dr", &clinician_key("dr"), "/v1/results?after=0", now);
    assert_eq!(s, 200, "{body}");
    let page: aorta_api::ResultsPage = serde_json::from_str(&body).unwrap();
    assert_eq!(page.results.len(), 1);
    // Another clinician lists nothing of dr's.
    let (s, body) = read_as(
        &r,
        "other",
        &clinician_key("other"),
        "/v1/results?after=0",
        now,
    );
    assert_eq!(s, 200, "{body}");
    let theirs: aorta_api::ResultsPage = serde_json::from_str(&body).unwrap();
    assert!(theirs.results.is_empty() && theirs.certificates.is_empty());
    assert_eq!(page.results[0].id, "dr/SN/0/1");
    assert_eq!(page.results[0].bytes().unwrap(), record);
    assert_eq!(
        page.certificates,
        vec![aorta_api::certificate_text(
            &aorta_base::codec::Encode::to_bytes(&cert)
        )]
    );
}

/// Reading results needs a clinician's signed request, and a clinician
/// reads only their own: a stranger, another clinician, a replayed or
/// stale signature, a signature for another query, are all refused.
#[test]
fn only_the_clinician_reads_their_results() {
    let r = start(|_| {});
    let now = aorta_base::time::now_s();
    let dr = clinician_key("dr");
    let pq = "/v1/results?after=0";
    assert_eq!(read_as(&r, "dr", &dr, pq, now).0, 200);
    // Unsigned, as a stranger would.
    let s = r
        .client
        .get(format!("{}{pq}", r.url))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401);
    // Another clinician's key, or a key nobody registered, under dr's name.
    assert_eq!(read_as(&r, "dr", &clinician_key("other"), pq, now).0, 401);
    assert_eq!(read_as(&r, "dr", &clinician_key("nobody"), pq, now).0, 401);
    assert_eq!(
        read_as(&r, "nobody", &clinician_key("nobody"), pq, now).0,
        401
    );
    // A signature of another query does not cover this one.
    let sig = dr.sign(&aorta_crypto::auth::read_message(
        "dr",
        now,
        "/v1/results?after=5",
    ));
    let s = r
        .client
        .get(format!("{}{pq}", r.url))
        .header(aorta_api::CLINICIAN_HEADER, "dr")
        .header(aorta_api::TIME_HEADER, now.to_string())
        .header(aorta_api::SIGNATURE_HEADER, aorta_base::hex::encode(&sig))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401);
    // Too old or too far ahead.
    assert_eq!(read_as(&r, "dr", &dr, pq, now - 3600).0, 401);
    assert_eq!(read_as(&r, "dr", &dr, pq, now + 3600).0, 401);
    // Another clinician's ids, even signed correctly by "other".
    let (s, body) = read_as(
        &r,
        "other",
        &clinician_key("other"),
        "/v1/results?after=0&prefix=dr/",
        now,
    );
    assert_eq!(s, 403, "{body}");
}

/// A stranger on the network holds only the address: whatever it sends in
/// a device's name is refused before it touches the device's sequence
/// state, the lag budget or the log, and the device's real frames go on
/// being accepted.
#[test]
fn a_stranger_cannot_silence_or_impersonate_a_device() {
    let r = start(|c| c.max_worker_lag_bytes = 1 << 20);
    let stranger = SigningKey::from_seed(&[0x66; 32]).unwrap();
    for seq in (1u64 << 40)..(1u64 << 40) + 64 {
        let f = sealed("SN-OK", 0, seq, 360);
        let unsigned = post_with(&r, f.clone(), None);
        assert_eq!(
            (unsigned.0, unsigned.1["error"].as_str()),
            (401, Some("device_signature_missing"))
        );
        let sig = aorta_base::hex::encode(&stranger.sign(&aorta_crypto::auth::frame_message(&f)));
        let forged = post_with(&r, f.clone(), Some(&sig));
        assert_eq!(
            (forged.0, forged.1["error"].as_str()),
            (401, Some("device_signature_invalid"))
        );
        // Another registered device's key does not sign for this one.
        let other = aorta_base::hex::encode(
            &device_key("SN-OTHER").sign(&aorta_crypto::auth::frame_message(&f)),
        );
        assert_eq!(post_with(&r, f.clone(), Some(&other)).0, 401);
        assert_eq!(post_with(&r, f, Some("zz")).0, 401);
    }
    // Whether a serial exists or is revoked is not told to a stranger:
    // the same 401 as a bad signature.
    for serial in ["SN-REVOKED", "SN-UNVERIFIED", "SN-NOBODY", "SN-KEYLESS"] {
        let f = sealed(serial, 0, 1, 360);
        let sig = aorta_base::hex::encode(&stranger.sign(&aorta_crypto::auth::frame_message(&f)));
        let (s, e) = post_with(&r, f, Some(&sig));
        assert_eq!(
            (s, e["error"].as_str()),
            (401, Some("device_signature_invalid")),
            "{serial}"
        );
    }
    // The device's real frames, from sequence 0, are all accepted.
    for seq in 0..40 {
        let (s, e) = post(&r, sealed("SN-OK", 0, seq, 360));
        assert_eq!(s, 200, "{e}");
    }
    let (recs, _) = FileLog::open(r.data.join("frames.log"))
        .unwrap()
        .read_from(0, 1000)
        .unwrap();
    assert_eq!(recs.len(), 40, "only the device's frames are in the log");
    // The device's frames keep to the key-index window: a jump of the key
    // index the sequence gap cannot explain is refused.
    let (s, e) = post(&r, sealed("SN-OK", 9, 41, 360));
    assert_eq!(
        (s, e["error"].as_str()),
        (403, Some("key_index_out_of_window"))
    );
    assert_eq!(post(&r, sealed("SN-OK", 1, 41, 360)).0, 200);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    /// Any mutation or truncation of a valid frame gets a 2xx or a 4xx,
    /// never a 5xx, and the server keeps serving.
    #[test]
    fn mutated_frames_never_get_a_5xx(edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        thread_local!(static R: Running = start(|_| {}));
        R.with(|r| {
            let mut f = sealed("SN-OK", 0, 1, 360);
            for (at, b) in &edits {
                let i = at % f.len();
                f[i] ^= b | 1;
            }
            if cut % 3 == 0 {
                f.truncate(cut % f.len());
            }
            let (s, _) = post(r, f);
            prop_assert!(s < 500, "status {}", s);
            let (s, _) = post(r, sealed("SN-OK", 0, 1, 360));
            prop_assert!(s == 200 || s == 409, "good frame after a bad one: {}", s);
            Ok(())
        })?;
    }
}
