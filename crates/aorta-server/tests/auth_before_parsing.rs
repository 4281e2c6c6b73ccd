//! Authentication comes before parsing: a stranger's request is answered
//! `401` whatever its query string, so a malformed query cannot be used to
//! probe the routes' parsers without credentials (issue 13, item 7). Every
//! answer is JSON.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod http_common;
use http_common::*;

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn a_strangers_malformed_query_gets_401_not_400() {
    let r = start(|_| {});
    for pq in [
        "/v1/results?after=minus-one",
        "/v1/results?limit=lots",
        "/v1/results?after=1&after=2",
    ] {
        // Unsigned.
        let resp = r.client.get(format!("{}{pq}", r.url)).send().unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().unwrap();
        assert_eq!(status, 401, "{pq}: {body}");
        assert_eq!(json(&body)["error"], "clinician_unauthenticated", "{pq}");
        // Signed by a key the server does not know.
        let now = aorta_base::time::now_s();
        let (status, body) = read_as(&r, "dr", &clinician_key("mallory"), pq, now);
        assert_eq!(status, 401, "{pq}: {body}");
        assert_eq!(json(&body)["error"], "clinician_unauthenticated", "{pq}");
        // The worker routes: the token first, too.
        let resp = r
            .client
            .get(format!("{}/v1/log?from=minus-one", r.url))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(json(&resp.text().unwrap())["error"], "unauthorized");
    }
    // An authenticated clinician's malformed query: 400, as JSON.
    let now = aorta_base::time::now_s();
    let (status, body) = read_as(
        &r,
        "dr",
        &clinician_key("dr"),
        "/v1/results?after=minus-one",
        now,
    );
    assert_eq!(status, 400, "{body}");
    let v = json(&body);
    assert_eq!(v["error"], "bad_request");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
}
