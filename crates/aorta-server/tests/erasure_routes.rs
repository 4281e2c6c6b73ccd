//! `GET`/`POST /v1/erasures` (`docs/erasure.md`) as a stranger, a confused
//! worker and a second server would try them: only the token holder sees a
//! pending request; a token is accepted only after a checkpoint saved since
//! the request was handed out; garbage gets its 4xx; a second process
//! cannot open the same data directory.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

mod http_common;
use http_common::*;

#[test]
fn erasure_routes_are_the_workers_and_want_a_checkpoint_first() {
    let r = start(|c| {
        std::fs::create_dir_all(&c.data_dir).unwrap();
        aorta_server::erasure::request(&c.data_dir, "SN-OK").unwrap();
    });
    let get = |path: &str, token: Option<&str>| {
        let mut q = r.client.get(format!("{}{path}", r.url));
        if let Some(t) = token {
            q = q.bearer_auth(t);
        }
        q.send().unwrap()
    };
    let post = |body: serde_json::Value, token: Option<&str>| {
        let mut q = r.client.post(format!("{}/v1/erasures", r.url));
        if let Some(t) = token {
            q = q.bearer_auth(t);
        }
        let a = q.json(&body).send().unwrap();
        let s = a.status().as_u16();
        (s, a.json::<serde_json::Value>().unwrap())
    };
    // A stranger sees nothing and can complete nothing.
    assert_eq!(get("/v1/erasures", None).status().as_u16(), 401);
    let token = "ab".repeat(32);
    let (s, _) = post(serde_json::json!({"id": "00", "token": token}), None);
    assert_eq!(s, 401);
    // The log answer announces it.
    let a = get("/v1/log?from=0", Some(&r.token));
    assert_eq!(a.headers()[aorta_api::ERASURES_HEADER], "1");
    // Not handed out yet: a token is refused.
    let id = {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(r.data.join("erasure/pending.json")).unwrap())
                .unwrap();
        v["pending"][0]["id"].as_str().unwrap().to_owned()
    };
    let (s, e) = post(
        serde_json::json!({"id": id, "token": token}),
        Some(&r.token),
    );
    assert_eq!((s, e["error"].as_str()), (409, Some("checkpoint_first")));
    // Handed out.
    let list: aorta_api::ErasureList = get("/v1/erasures", Some(&r.token)).json().unwrap();
    assert_eq!(list.erasures.len(), 1);
    assert_eq!(list.erasures[0].serial, "SN-OK");
    // Still no checkpoint since: refused.
    let (s, _) = post(
        serde_json::json!({"id": id, "token": token}),
        Some(&r.token),
    );
    assert_eq!(s, 409);
    // Garbage: 400; an unknown request: 404.
    let (s, e) = post(serde_json::json!({"id": id, "token": "zz"}), Some(&r.token));
    assert_eq!((s, e["error"].as_str()), (400, Some("bad_erasure")));
    let (s, _) = post(serde_json::json!({"id": id}), Some(&r.token));
    assert_eq!(s, 400);
    let (s, e) = post(
        serde_json::json!({"id": "ff".repeat(16), "token": token}),
        Some(&r.token),
    );
    assert_eq!((s, e["error"].as_str()), (404, Some("unknown_erasure")));
    // A checkpoint, then the token: done, audited, no longer announced.
    let cp = aorta_stream::checkpoint::Checkpoint::new(0, b"{}".to_vec()).unwrap();
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
    let (s, a) = post(
        serde_json::json!({"id": id, "token": token}),
        Some(&r.token),
    );
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["results_erased"], 0);
    let list: aorta_api::ErasureList = get("/v1/erasures", Some(&r.token)).json().unwrap();
    assert!(list.erasures.is_empty());
    let a = get("/v1/log?from=0", Some(&r.token));
    assert!(a.headers().get(aorta_api::ERASURES_HEADER).is_none());
    let audit = std::fs::read_to_string(r.data.join("audit.log")).unwrap();
    assert!(audit.contains("\"event\":\"erased\"") && !audit.contains("SN-OK"));
    // Twice: the request is gone.
    let (s, _) = post(
        serde_json::json!({"id": id, "token": token}),
        Some(&r.token),
    );
    assert_eq!(s, 404);

    // A second process on the same data directory: refused at open, and
    // `aorta admin erase` too.
    let cfg = aorta_server::http::ServerConfig {
        data_dir: r.data.clone(),
        ..Default::default()
    };
    let e = aorta_server::http::api::open_state(&cfg, directory_of(&["SN-OK"]), None)
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("in use"), "{e:#}");
    let e = aorta_server::erasure::request(&r.data, "SN-OTHER").unwrap_err();
    assert!(matches!(
        e,
        aorta_server::erasure::ErasureError::InUse { .. }
    ));
}
