//! `GET`/`POST /v1/erasures`: the worker's part of a patient erasure
//! (`crate::erasure`, `docs/erasure.md`). Worker routes: the token is
//! checked by `worker_gate` before the body is read.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use aorta_api::{ErasureAnswer, ErasureDone, ErasureItem, ErasureList};
use aorta_crypto::results::EraseToken;

use super::{AppState, err};

/// The pending requests. Each is remembered as handed out at the current
/// checkpoint count: its token is accepted only after a later checkpoint.
pub(super) async fn get_erasures(State(s): State<Arc<AppState>>) -> Response {
    let (Ok(book), Ok(mut handed)) = (s.erasures.lock(), s.erasures_handed.lock()) else {
        return err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "lock poisoned",
        );
    };
    let seq = s.checkpoint_seq.load(Ordering::SeqCst);
    let erasures = book
        .pending()
        .iter()
        .map(|p| {
            handed.entry(p.id.clone()).or_insert(seq);
            ErasureItem {
                id: p.id.clone(),
                serial: p.serial.clone(),
            }
        })
        .collect();
    axum::Json(ErasureList { erasures }).into_response()
}

/// The worker has dropped the device's state and checkpointed: erase the
/// device's results with its token, then close the request (audited).
pub(super) async fn post_erasures(
    State(s): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Response {
    let done: ErasureDone = match serde_json::from_slice(&body) {
        Ok(d) => d,
        Err(e) => return err(StatusCode::BAD_REQUEST, "bad_erasure", e.to_string()),
    };
    let Some(token) = EraseToken::from_hex(&done.token) else {
        return err(
            StatusCode::BAD_REQUEST,
            "bad_erasure",
            "token: 64 lower-case hex digits expected",
        );
    };
    let known = s
        .erasures
        .lock()
        .map(|b| b.pending().iter().any(|p| p.id == done.id))
        .unwrap_or(false);
    if !known {
        return err(
            StatusCode::NOT_FOUND,
            "unknown_erasure",
            format!("no pending erasure {}", done.id),
        );
    }
    let handed = s
        .erasures_handed
        .lock()
        .ok()
        .and_then(|h| h.get(&done.id).copied());
    let seq = s.checkpoint_seq.load(Ordering::SeqCst);
    if handed.is_none_or(|at| seq <= at) {
        return err(
            StatusCode::CONFLICT,
            "checkpoint_first",
            "drop the device's state and save a checkpoint after GET /v1/erasures, then send the token",
        );
    }
    let st = s.clone();
    let id = done.id.clone();
    let r = tokio::task::spawn_blocking(move || -> Result<u64, String> {
        let erased = {
            let mut store = st.results.lock().map_err(|_| "lock poisoned".to_string())?;
            store
                .erase_where(|stored| {
                    stored
                        .split_once('/')
                        .is_some_and(|(_, opaque)| token.matches(opaque))
                })
                .map_err(|e| e.to_string())?
        };
        let mut book = st
            .erasures
            .lock()
            .map_err(|_| "lock poisoned".to_string())?;
        let p = book.complete(&id).map_err(|e| e.to_string())?;
        let mut fields = serde_json::Map::new();
        fields.insert("results".into(), erased.records.into());
        fields.insert("result_bytes".into(), erased.bytes.into());
        book.audit("erased", &p, fields)
            .map_err(|e| e.to_string())?;
        st.erasures_pending
            .store(book.pending().len() as u64, Ordering::Relaxed);
        Ok(erased.records)
    })
    .await;
    match r {
        Ok(Ok(n)) => {
            if let Ok(mut h) = s.erasures_handed.lock() {
                h.remove(&done.id);
            }
            tracing::info!(target: "aorta::server", request = %done.id, results = n, "patient erasure complete");
            axum::Json(ErasureAnswer {
                id: done.id,
                results_erased: n,
            })
            .into_response()
        }
        Ok(Err(e)) => err(StatusCode::INTERNAL_SERVER_ERROR, "erasure_failed", e),
        Err(e) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}
