//! The validity windows of Intel DCAP collateral, checked before dcap-qvl
//! runs so that an expired or not-yet-valid item is refused by name with its
//! dates in ISO-8601 UTC ([`Refusal::CollateralOutOfDate`]) instead of a
//! library's debug output in unix seconds. Reading dates from unverified
//! collateral can only make the verifier refuse; dcap-qvl then verifies
//! every signature and checks the same windows again.

use std::time::Duration;

use x509_cert::der::{DateTime, Decode};
use x509_cert::{Certificate, crl::CertificateList, time::Time};

use super::Refusal;

/// `2025-06-20T00:00:00Z`, or the unix seconds when out of range.
fn iso(secs: u64) -> String {
    DateTime::from_unix_duration(Duration::from_secs(secs))
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("unix time {secs}"))
}

fn secs(t: &Time) -> u64 {
    t.to_unix_duration().as_secs()
}

/// Refuses when `now` is outside `[not_before, not_after]`.
fn window(
    item: impl FnOnce() -> String,
    not_before: u64,
    not_after: Option<u64>,
    now: u64,
) -> Result<(), Refusal> {
    let state = if now < not_before {
        "not yet valid"
    } else if not_after.is_some_and(|a| now > a) {
        "expired"
    } else {
        return Ok(());
    };
    Err(Refusal::CollateralOutOfDate {
        item: item(),
        state,
        not_before: iso(not_before),
        not_after: not_after.map_or_else(|| "none".to_owned(), iso),
        now: iso(now),
    })
}

fn check_crl(what: &str, der: &[u8], now: u64) -> Result<(), Refusal> {
    // An unparsable CRL is dcap-qvl's to refuse.
    let Ok(crl) = <CertificateList>::from_der(der) else {
        return Ok(());
    };
    let t = &crl.tbs_cert_list;
    window(
        || format!("{what} (issued by {})", t.issuer),
        secs(&t.this_update),
        t.next_update.as_ref().map(secs),
        now,
    )
}

fn check_chain(what: &str, pem: &[u8], now: u64) -> Result<(), Refusal> {
    let Ok(certs) = Certificate::load_pem_chain(pem) else {
        return Ok(());
    };
    for c in &certs {
        let tbs = c.tbs_certificate();
        let v = tbs.validity();
        window(
            || format!("certificate {} ({what})", tbs.subject()),
            secs(&v.not_before),
            Some(secs(&v.not_after)),
            now,
        )?;
    }
    Ok(())
}

fn check_json(what: &str, json: &str, now: u64) -> Result<(), Refusal> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Ok(());
    };
    let date = |k: &str| {
        v.get(k)
            .and_then(|d| d.as_str())
            .and_then(|d| d.parse::<DateTime>().ok())
            .map(|d| d.unix_duration().as_secs())
    };
    if let (Some(issued), Some(next)) = (date("issueDate"), date("nextUpdate")) {
        window(|| what.to_owned(), issued, Some(next), now)?;
    }
    Ok(())
}

/// Checks every dated item of `c` (and the PCK chain inside `quote`) at `now`.
pub(super) fn check_validity(
    c: &dcap_qvl::QuoteCollateralV3,
    quote: &[u8],
    now: u64,
) -> Result<(), Refusal> {
    check_crl("Intel SGX Root CA CRL", &c.root_ca_crl, now)?;
    check_crl("PCK CRL", &c.pck_crl, now)?;
    check_chain(
        "PCK CRL issuer chain",
        c.pck_crl_issuer_chain.as_bytes(),
        now,
    )?;
    check_chain(
        "TCB info issuer chain",
        c.tcb_info_issuer_chain.as_bytes(),
        now,
    )?;
    check_chain(
        "QE identity issuer chain",
        c.qe_identity_issuer_chain.as_bytes(),
        now,
    )?;
    if let Some(pck) = &c.pck_certificate_chain {
        check_chain("PCK certificate chain", pck.as_bytes(), now)?;
    }
    if let Ok(q) = dcap_qvl::quote::Quote::parse(quote)
        && let Ok(pem) = q.raw_cert_chain()
    {
        check_chain("PCK certificate chain in the quote", pem, now)?;
    }
    check_json("TCB info", &c.tcb_info, now)?;
    check_json("QE identity", &c.qe_identity, now)?;
    Ok(())
}

/// `tcbEvaluationDataNumber` of a TCB info or QE identity JSON (0 when absent).
pub(super) fn eval_num(json: &str) -> u32 {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v.get("tcbEvaluationDataNumber")?.as_u64())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}
