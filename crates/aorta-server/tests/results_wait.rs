//! Long-polling result reads (`GET /v1/results?wait=S`, `docs/server-api.md`):
//! a waiting clinician is answered when one of their results is stored (not
//! at the deadline), another clinician's result does not answer them, a
//! stranger is refused before any wait, and waiters are bounded per
//! clinician (429 with Retry-After over the bound).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::time::Duration;

use aorta_crypto::auth::SignedResult;

mod http_common;
use http_common::*;

fn store(r: &Running, id: &str) {
    let (worker, cert) = worker_cert(&["dr", "other"]);
    let record = SignedResult::sign(&worker, cert.digest(), id, b"sealed");
    let body = serde_json::to_vec(&aorta_api::WorkerBatch {
        results: vec![aorta_api::ResultItem::new(id, &record)],
        certificate: Some(aorta_api::certificate_text(
            &aorta_base::codec::Encode::to_bytes(&cert),
        )),
        ..aorta_api::WorkerBatch::default()
    })
    .unwrap();
    let resp = r
        .client
        .post(format!("{}/v1/results", r.url))
        .bearer_auth(&r.token)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// Waits (bounded) until the server holds `n` waiting reads.
fn until_waiting(r: &Running, n: usize) {
    for _ in 0..200 {
        if r.state.results_waiting() == n {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "expected {n} waiting reads, the server holds {}",
        r.state.results_waiting()
    );
}

fn page(body: &str) -> aorta_api::ResultsPage {
    serde_json::from_str(body).unwrap()
}

#[test]
fn a_waiting_reader_is_answered_by_its_new_result_not_by_others() {
    let r = start(|_| {});
    store(&r, "dr/SN/0/1");
    let now = aorta_base::time::now_s();
    let (s, body) = read_as(&r, "dr", &clinician_key("dr"), "/v1/results?after=0", now);
    assert_eq!(s, 200, "{body}");
    let first = page(&body);
    assert_eq!(first.results.len(), 1);
    let cursor = first.next;

    std::thread::scope(|sc| {
        let waiter = sc.spawn(|| {
            let pq = format!("/v1/results?after={cursor}&wait=20");
            read_as(&r, "dr", &clinician_key("dr"), &pq, now)
        });
        until_waiting(&r, 1);
        // Another clinician's result moves the store, not dr's answer.
        store(&r, "other/SN/5/6");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !waiter.is_finished(),
            "answered by another clinician's result"
        );
        assert_eq!(r.state.results_waiting(), 1);
        store(&r, "dr/SN/1/2");
        let (s, body) = waiter.join().unwrap();
        assert_eq!(s, 200, "{body}");
        // The answer carries the result stored while it waited: it was
        // woken by it (a deadline answer is empty).
        let p = page(&body);
        let ids: Vec<_> = p.results.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["dr/SN/1/2"]);
        assert_eq!(p.certificates.len(), 1);
    });
    assert_eq!(r.state.results_waiting(), 0, "the slot is given back");

    // At the deadline the answer is empty and its cursor is past what was
    // scanned.
    let end = {
        let (_, b) = read_as(&r, "dr", &clinician_key("dr"), "/v1/results?after=0", now);
        page(&b).next
    };
    let (s, body) = read_as(
        &r,
        "dr",
        &clinician_key("dr"),
        &format!("/v1/results?after={end}&wait=1"),
        now,
    );
    assert_eq!(s, 200, "{body}");
    let p = page(&body);
    assert!(p.results.is_empty());
    assert_eq!(p.next, end);
}

#[test]
fn a_stranger_is_refused_before_waiting_and_waiters_are_bounded() {
    let r = start(|_| {});
    // A stranger, or a wrong key under dr's name, asking to wait: 401 at
    // once (the client gives up after 10 s, far below the 25 s wait), and
    // no waiting slot is ever taken.
    let quick = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(aorta_api::client_tls_config_file(&r.cert).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let s = quick
        .get(format!("{}/v1/results?after=0&wait=25", r.url))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401);
    let now = aorta_base::time::now_s();
    let pq = "/v1/results?after=0&wait=25";
    let sig = clinician_key("nobody").sign(&aorta_crypto::auth::read_message("dr", now, pq));
    let s = quick
        .get(format!("{}{pq}", r.url))
        .header(aorta_api::CLINICIAN_HEADER, "dr")
        .header(aorta_api::TIME_HEADER, now.to_string())
        .header(aorta_api::SIGNATURE_HEADER, aorta_base::hex::encode(&sig))
        .send()
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(s, 401);
    assert_eq!(r.state.results_waiting(), 0);

    // dr may hold 4 waiting reads; a fifth gets 429 with Retry-After, and
    // "other" still gets its own.
    std::thread::scope(|sc| {
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| read_as(&r, "dr", &clinician_key("dr"), "/v1/results?wait=20", now))
            })
            .collect();
        until_waiting(&r, 4);
        let sig = clinician_key("dr").sign(&aorta_crypto::auth::read_message(
            "dr",
            now,
            "/v1/results?wait=20",
        ));
        let resp = r
            .client
            .get(format!("{}/v1/results?wait=20", r.url))
            .header(aorta_api::CLINICIAN_HEADER, "dr")
            .header(aorta_api::TIME_HEADER, now.to_string())
            .header(aorta_api::SIGNATURE_HEADER, aorta_base::hex::encode(&sig))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert!(resp.text().unwrap().contains("too_many_waiters"));
        // Without a wait, dr still reads at once.
        let (s, _) = read_as(&r, "dr", &clinician_key("dr"), "/v1/results?after=0", now);
        assert_eq!(s, 200);
        let other = sc.spawn(|| {
            read_as(
                &r,
                "other",
                &clinician_key("other"),
                "/v1/results?wait=20",
                now,
            )
        });
        until_waiting(&r, 5);
        // One result for each wakes all of them.
        store(&r, "dr/SN/0/1");
        store(&r, "other/SN/0/1");
        for w in waiters {
            let (s, body) = w.join().unwrap();
            assert_eq!(s, 200, "{body}");
            assert_eq!(page(&body).results.len(), 1);
        }
        let (s, body) = other.join().unwrap();
        assert_eq!(s, 200, "{body}");
        assert_eq!(page(&body).results[0].id, "other/SN/0/1");
    });
    assert_eq!(r.state.results_waiting(), 0);
    assert!(metrics(&r).contains("aorta_results_waiting 0"));
}
