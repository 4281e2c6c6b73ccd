//! Opened results as a FHIR R4 (4.0.1) Bundle (`docs/fhir.md`).
//!
//! One `collection` Bundle: for each device serial, in order of first
//! appearance, a pseudonymous `Patient` (an identifier, the serial; no name,
//! no birth date) and the `Device`; then one or more Observations per result,
//! in the order given. Every resource's `fullUrl` is `urn:uuid:` of a
//! [`super::content_uuid`] of its content, so the same results give the same
//! Bundle, byte for byte, and resources reference each other by those URLs.

use aorta_signal::rhythm::RhythmEventKind;
use aorta_stream::ecg::{EcgResult, EcgStrip, HrvSummary};
use aorta_worker::clinician::OpenedResult;
use serde_json::{Value, json};

use super::{ExportError, content_uuid, event_name, iso};

/// aorta's code system for what no standard code covers (`docs/fhir.md`).
pub const AORTA_CODES: &str = "urn:aorta:fhir:codes";
/// The identifier system of device serials (Patient and Device).
pub const SERIAL_SYSTEM: &str = "urn:aorta:device-serial";
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// ISO/IEEE 11073-10101 (MDC), as HL7's ECG example names it.
pub const MDC: &str = "urn:oid:2.16.840.1.113883.6.24";
/// FHIR's DataAbsentReason code system.
pub const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
/// FHIR's observation categories.
pub const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// Sets `key` of the JSON object `obj` (nothing for a non-object, which
/// this module never builds).
fn set(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert(key.to_owned(), v);
    }
}

fn aorta(code: &str, display: &str) -> Value {
    coding(AORTA_CODES, code, display)
}

/// A number rounded to 3 decimals (what the analysis can honestly claim),
/// or `None` for NaN and infinities.
fn decimal(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1000.0).round() / 1000.0)
}

/// `value` with unit `unit` (UCUM code and display), or a DataAbsentReason
/// `not-a-number` when it is NaN.
fn quantity_or_absent(obs: &mut Value, v: f64, unit: &str, display: &str) {
    match decimal(v) {
        Some(v) => {
            obs["valueQuantity"] =
                json!({"value": v, "unit": display, "system": UCUM, "code": unit});
        }
        None => {
            set(
                obs,
                "dataAbsentReason",
                json!({"coding": [coding(DATA_ABSENT, "not-a-number", "Not a Number (NaN)")],
                "text": "too few beats in the window"}),
            );
        }
    }
}

/// One HRV value: value, standard coding, aorta code, display, UCUM code,
/// unit display.
type HrvRow = (
    f64,
    Option<Value>,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

/// The HRV values of one window: `(field, standard coding, aorta code,
/// display, UCUM code, unit display)`.
fn hrv_rows(h: &HrvSummary) -> [HrvRow; 9] {
    [
        (
            h.mean_nn,
            None,
            "hrv-mean-nn",
            "Mean NN interval",
            "ms",
            "ms",
        ),
        (
            h.sdnn,
            Some(coding(
                LOINC,
                "80404-7",
                "R-R interval.standard deviation (Heart rate variability)",
            )),
            "hrv-sdnn",
            "SDNN",
            "ms",
            "ms",
        ),
        (h.rmssd, None, "hrv-rmssd", "RMSSD", "ms", "ms"),
        (h.pnn50, None, "hrv-pnn50", "pNN50", "%", "%"),
        (
            h.lf,
            None,
            "hrv-lf",
            "LF power (0.04-0.15 Hz)",
            "ms2",
            "ms²",
        ),
        (h.hf, None, "hrv-hf", "HF power (0.15-0.4 Hz)", "ms2", "ms²"),
        (h.lf_hf, None, "hrv-lf-hf", "LF/HF ratio", "1", "ratio"),
        (h.sd1, None, "hrv-sd1", "Poincaré SD1", "ms", "ms"),
        (h.sd2, None, "hrv-sd2", "Poincaré SD2", "ms", "ms"),
    ]
}

/// The standard coding of a rhythm event's value, when one exists (SNOMED
/// CT disorders for the onsets; ends and pauses have none).
fn rhythm_snomed(kind: &RhythmEventKind) -> Option<Value> {
    match kind {
        RhythmEventKind::AfOnset => Some(coding(SNOMED, "49436004", "Atrial fibrillation")),
        RhythmEventKind::BradyOnset => Some(coding(SNOMED, "48867003", "Bradycardia")),
        RhythmEventKind::TachyOnset => Some(coding(SNOMED, "3424008", "Tachycardia")),
        RhythmEventKind::VfOnset => Some(coding(SNOMED, "71908006", "Ventricular fibrillation")),
        RhythmEventKind::VtOnset { .. } => {
            Some(coding(SNOMED, "25569003", "Ventricular tachycardia"))
        }
        RhythmEventKind::AsystoleOnset => Some(coding(SNOMED, "397829000", "Asystole")),
        _ => None,
    }
}

fn rhythm_display(kind: &RhythmEventKind) -> &'static str {
    match kind {
        RhythmEventKind::AfOnset => "Atrial fibrillation began",
        RhythmEventKind::AfOffset => "Atrial fibrillation ended",
        RhythmEventKind::BradyOnset => "Bradycardia began",
        RhythmEventKind::BradyOffset => "Bradycardia ended",
        RhythmEventKind::TachyOnset => "Tachycardia began",
        RhythmEventKind::TachyOffset => "Tachycardia ended",
        RhythmEventKind::PauseOnset => "Pause: no beat for the pause limit",
        RhythmEventKind::Pause { .. } => "Pause ended",
        RhythmEventKind::VfOnset => "Ventricular fibrillation/flutter began (read from the signal)",
        RhythmEventKind::VfOffset => "Ventricular fibrillation/flutter ended",
        RhythmEventKind::VtOnset { .. } => "Ventricular tachycardia began",
        RhythmEventKind::VtOffset => "Ventricular tachycardia ended",
        RhythmEventKind::AsystoleOnset => "Asystole began (a readable flat line)",
        RhythmEventKind::AsystoleOffset => "Asystole ended",
        RhythmEventKind::VentricularRun { .. } => "Run of ventricular beats",
        RhythmEventKind::BigeminyOnset { .. } => "Ventricular bigeminy began",
        RhythmEventKind::BigeminyOffset => "Ventricular bigeminy ended",
        RhythmEventKind::TrigeminyOnset { .. } => "Ventricular trigeminy began",
        RhythmEventKind::TrigeminyOffset => "Ventricular trigeminy ended",
        RhythmEventKind::SignalLostOnset => "Signal lost (lead off, railed or gaps): no analysis",
        RhythmEventKind::SignalLostOffset => "Signal back",
        RhythmEventKind::TooNoisyOnset => "Signal too noisy to analyse",
        RhythmEventKind::TooNoisyOffset => "Signal readable again",
        _ => "Rhythm event",
    }
}

struct Ctx {
    patient: String,
    device: String,
}

fn base(ctx: &Ctx, id: &str, code: Value) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "code": code,
        "subject": {"reference": format!("urn:uuid:{}", ctx.patient)},
        "device": {"reference": format!("urn:uuid:{}", ctx.device)},
    })
}

fn period(start: i64, end: i64) -> Result<Value, ExportError> {
    Ok(json!({"start": iso(start)?, "end": iso(end)?}))
}

fn strip_observation(ctx: &Ctx, id: &str, s: &EcgStrip) -> Result<Value, ExportError> {
    if !(s.fs.is_finite() && s.fs > 0.0) {
        return Err(ExportError::Unrepresentable(format!(
            "strip sampling rate {} Hz",
            s.fs
        )));
    }
    let n = s
        .leads
        .iter()
        .map(|l| l.samples_uv.len())
        .max()
        .unwrap_or(0);
    let span_us = (n as f64 * 1e6 / s.fs).round() as i64;
    let ev = event_name(&s.event);
    let mut obs = base(
        ctx,
        id,
        json!({"coding": [coding(MDC, "131328", "MDC_ECG_ELEC_POTL"), aorta("ecg-strip", "ECG strip around a rhythm event")],
               "text": format!("ECG strip around {ev}")}),
    );
    set(
        &mut obs,
        "category",
        json!([{"coding": [coding(CATEGORY, "procedure", "Procedure")]}]),
    );
    set(
        &mut obs,
        "effectivePeriod",
        period(s.first_sample_us, s.first_sample_us.saturating_add(span_us))?,
    );
    let period_ms = 1000.0 / s.fs;
    let components: Vec<Value> = s
        .leads
        .iter()
        .map(|l| {
            let mut sd = json!({
                "origin": {"value": 0, "unit": "µV", "system": UCUM, "code": "uV"},
                "period": period_ms,
                "factor": 1,
                "dimensions": 1,
            });
            if !l.samples_uv.is_empty() {
                let data: Vec<String> = l.samples_uv.iter().map(i32::to_string).collect();
                set(&mut sd, "data", Value::String(data.join(" ")));
            }
            json!({
                "code": {"coding": [coding(MDC, "131328", "MDC_ECG_ELEC_POTL"),
                                    aorta(&format!("channel-{}", l.channel), &format!("Channel {} of the device's frames", l.channel))],
                         "text": format!("channel {}", l.channel)},
                "valueSampledData": sd,
            })
        })
        .collect();
    set(&mut obs, "component", Value::Array(components));
    set(
        &mut obs,
        "note",
        json!([{"text": format!(
            "{} channel(s) at {} Hz around the {ev} event; samples in µV",
            s.leads.len(),
            s.fs
        )}]),
    );
    Ok(obs)
}

/// The Observations of one result (none for `beats`: beat lists go to the
/// WFDB export; the rate is in the heart-rate Observations).
fn observations(ctx: &Ctx, r: &OpenedResult) -> Result<Vec<(String, Value)>, ExportError> {
    let key = serde_json::to_vec(r).unwrap_or_default();
    let uid = |what: &str| {
        let mut name = key.clone();
        name.extend_from_slice(what.as_bytes());
        content_uuid("Observation", &name)
    };
    let mut out = Vec::new();
    match &r.result {
        EcgResult::HeartRate { beats, bpm } => {
            let id = uid("heart-rate");
            let mut obs = base(
                ctx,
                &id,
                json!({"coding": [coding(LOINC, "8867-4", "Heart rate")], "text": "Heart rate"}),
            );
            set(
                &mut obs,
                "category",
                json!([{"coding": [coding(CATEGORY, "vital-signs", "Vital Signs")]}]),
            );
            set(&mut obs, "effectivePeriod", period(r.start, r.end)?);
            quantity_or_absent(&mut obs, *bpm, "/min", "beats/minute");
            set(
                &mut obs,
                "component",
                json!([{
                    "code": {"coding": [aorta("beat-count", "Beats detected in the window")]},
                    "valueInteger": beats,
                }]),
            );
            out.push((id, obs));
        }
        EcgResult::Hrv(h) => {
            for (v, standard, code, display, unit, unit_display) in hrv_rows(h) {
                let id = uid(code);
                let mut codings = Vec::new();
                codings.extend(standard);
                codings.push(aorta(code, display));
                let mut obs = base(
                    ctx,
                    &id,
                    json!({"coding": codings, "text": format!("HRV {display}")}),
                );
                set(&mut obs, "effectivePeriod", period(r.start, r.end)?);
                quantity_or_absent(&mut obs, v, unit, unit_display);
                let mut components = vec![json!({
                    "code": {"coding": [aorta("nn-count", "NN intervals used")]},
                    "valueInteger": h.n_nn,
                })];
                // How much of the window the beats cover, and whether that is
                // too little for a full result (docs/hrv.md); absent from
                // results written before coverage was recorded.
                if let Some(cov) = h.coverage.and_then(decimal) {
                    components.push(json!({
                        "code": {"coding": [aorta("window-coverage", "Fraction of the window covered by NN intervals")]},
                        "valueQuantity": {"value": cov, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"},
                    }));
                    components.push(json!({
                        "code": {"coding": [aorta("partial-window", "Window too short for a full HRV result")]},
                        "valueBoolean": h.partial,
                    }));
                }
                set(&mut obs, "component", Value::Array(components));
                out.push((id, obs));
            }
        }
        EcgResult::Rhythm(e) => {
            let id = uid("rhythm");
            let name = event_name(e);
            let mut obs = base(
                ctx,
                &id,
                json!({"coding": [aorta("rhythm-event", "Rhythm event")], "text": "Rhythm event"}),
            );
            set(&mut obs, "effectiveDateTime", Value::String(iso(r.start)?));
            let mut codings = Vec::new();
            codings.extend(rhythm_snomed(&e.kind));
            codings.push(aorta(&name.replace('_', "-"), rhythm_display(&e.kind)));
            set(
                &mut obs,
                "valueCodeableConcept",
                json!({"coding": codings, "text": rhythm_display(&e.kind)}),
            );
            if let Some(d) = super::pause_duration(e).and_then(decimal) {
                set(
                    &mut obs,
                    "component",
                    json!([{
                        "code": {"coding": [aorta("pause-duration", "Length of the pause")]},
                        "valueQuantity": {"value": d, "unit": "s", "system": UCUM, "code": "s"},
                    }]),
                );
            }
            out.push((id, obs));
        }
        EcgResult::Strip(s) => {
            let id = uid("strip");
            let obs = strip_observation(ctx, &id, s)?;
            out.push((id, obs));
        }
        EcgResult::Beats(_) => {}
        EcgResult::Gap {
            first_missing_sequence,
            missing_frames,
        } => {
            let id = uid("gap");
            let mut obs = base(
                ctx,
                &id,
                json!({"coding": [aorta("data-gap", "Frames of the device never reached the analysis")],
                       "text": "Data gap"}),
            );
            set(&mut obs, "effectivePeriod", period(r.start, r.end)?);
            set(
                &mut obs,
                "dataAbsentReason",
                json!({"coding": [coding(DATA_ABSENT, "error", "Error")],
                "text": format!("{missing_frames} frame(s) missing")}),
            );
            set(
                &mut obs,
                "component",
                json!([
                    {"code": {"coding": [aorta("first-missing-sequence", "First missing frame sequence number")]},
                     "valueInteger": first_missing_sequence},
                    {"code": {"coding": [aorta("missing-frames", "Frames missing")]},
                     "valueInteger": missing_frames},
                ]),
            );
            out.push((id, obs));
        }
    }
    Ok(out)
}

/// The Bundle of `results` (`docs/fhir.md`).
pub fn bundle(results: &[OpenedResult]) -> Result<Value, ExportError> {
    let mut patients: Vec<&str> = Vec::new();
    for r in results {
        if !patients.contains(&r.patient.as_str()) {
            patients.push(&r.patient);
        }
    }
    let mut entries = Vec::new();
    for serial in &patients {
        let pid = content_uuid("Patient", serial.as_bytes());
        let did = content_uuid("Device", serial.as_bytes());
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{pid}"),
            "resource": {
                "resourceType": "Patient",
                "id": pid,
                "identifier": [{"system": SERIAL_SYSTEM, "value": serial,
                                "type": {"text": "serial of the patient's aorta device (pseudonym)"}}],
            }
        }));
        entries.push(json!({
            "fullUrl": format!("urn:uuid:{did}"),
            "resource": {
                "resourceType": "Device",
                "id": did,
                "identifier": [{"system": SERIAL_SYSTEM, "value": serial}],
                "serialNumber": serial,
                "type": {"text": "aorta ECG device"},
                "patient": {"reference": format!("urn:uuid:{pid}")},
            }
        }));
    }
    for r in results {
        let ctx = Ctx {
            patient: content_uuid("Patient", r.patient.as_bytes()),
            device: content_uuid("Device", r.patient.as_bytes()),
        };
        for (id, obs) in observations(&ctx, r)? {
            entries.push(json!({"fullUrl": format!("urn:uuid:{id}"), "resource": obs}));
        }
    }
    let mut digest = Vec::new();
    for e in &entries {
        if let Some(u) = e.get("fullUrl").and_then(Value::as_str) {
            digest.extend_from_slice(u.as_bytes());
        }
    }
    Ok(json!({
        "resourceType": "Bundle",
        "id": content_uuid("Bundle", &digest),
        "type": "collection",
        "entry": entries,
    }))
}

/// Largest part of a FHIR server's error answer quoted in the error.
const ANSWER_QUOTE: usize = 300;

/// POSTs `bundle` to `url` (`Content-Type: application/fhir+json`), as a
/// FHIR server's base endpoint takes a Bundle. `ca` is the PEM file of the
/// certificates to trust for an `https://` URL (none is trusted without
/// it); `http://` is sent as is. A non-2xx answer is an error quoting the
/// status and the start of the answer (an OperationOutcome, usually).
/// Returns the status.
pub fn post(url: &str, ca: Option<&std::path::Path>, bundle: &Value) -> Result<u16, ExportError> {
    let fail = |detail: String| ExportError::Post {
        url: url.to_owned(),
        detail,
    };
    let tls = match ca {
        Some(ca) => aorta_api::client_tls_config_file(ca).map_err(|e| fail(e.to_string()))?,
        None => {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| fail(e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    };
    let http = reqwest::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| fail(format!("building the HTTP client: {e}")))?;
    let body = serde_json::to_vec(bundle).map_err(|e| fail(e.to_string()))?;
    let r = http
        .post(url)
        .header("content-type", "application/fhir+json")
        .header("accept", "application/fhir+json")
        .body(body)
        .send()
        .map_err(|e| {
            let mut detail = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                detail.push_str(": ");
                detail.push_str(&s.to_string());
                src = s.source();
            }
            fail(detail)
        })?;
    let status = r.status();
    if !status.is_success() {
        let text: String = r
            .text()
            .unwrap_or_default()
            .chars()
            .take(ANSWER_QUOTE)
            .collect();
        return Err(fail(format!("the server answered {status}: {text}")));
    }
    Ok(status.as_u16())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        reason = "a test fails by panicking"
    )]
    use super::*;
    use aorta_signal::rhythm::RhythmEvent;
    use aorta_stream::ecg::StripLead;

    const T0: i64 = 1_700_000_000_000_000;

    fn sample() -> Vec<OpenedResult> {
        let r = |patient: &str, start: i64, result| OpenedResult {
            patient: patient.into(),
            start,
            end: start + 10_000_000,
            result,
        };
        let af = RhythmEvent {
            time_s: 12.0,
            kind: RhythmEventKind::AfOnset,
        };
        vec![
            r(
                "SN-1",
                T0,
                EcgResult::HeartRate {
                    beats: 12,
                    bpm: 72.25,
                },
            ),
            r(
                "SN-2",
                T0,
                EcgResult::HeartRate {
                    beats: 1,
                    bpm: f64::NAN,
                },
            ),
            r("SN-1", T0 + 1, EcgResult::Rhythm(af)),
            r(
                "SN-1",
                T0 - 5_000_000,
                EcgResult::Strip(EcgStrip {
                    event: af,
                    fs: 250.0,
                    first_sample_us: T0 - 5_000_000,
                    leads: vec![
                        StripLead {
                            channel: 0,
                            samples_uv: vec![10, -20, 30, 0],
                        },
                        StripLead {
                            channel: 1,
                            samples_uv: vec![],
                        },
                    ],
                }),
            ),
        ]
    }

    #[test]
    fn the_bundle_is_deterministic_and_references_resolve() {
        let a = serde_json::to_string(&bundle(&sample()).unwrap()).unwrap();
        let b = serde_json::to_string(&bundle(&sample()).unwrap()).unwrap();
        assert_eq!(a, b, "the same results give the same bytes");
        // Another value gives other ids.
        let mut other = sample();
        other[0].result = EcgResult::HeartRate {
            beats: 12,
            bpm: 73.0,
        };
        let c = bundle(&other).unwrap();
        let v: Value = serde_json::from_str(&a).unwrap();
        assert_ne!(v["id"], c["id"]);
        let entries = v["entry"].as_array().unwrap();
        // 2 patients and 2 devices, then HR, HR, rhythm, strip.
        let kinds: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "Patient",
                "Device",
                "Patient",
                "Device",
                "Observation",
                "Observation",
                "Observation",
                "Observation"
            ]
        );
        let urls: Vec<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        let mut unique = urls.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), urls.len());
        for e in &entries[4..] {
            let o = &e["resource"];
            for field in ["subject", "device"] {
                assert!(urls.contains(&o[field]["reference"].as_str().unwrap()));
            }
        }
        let hr = &entries[4]["resource"];
        assert_eq!(hr["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(hr["valueQuantity"]["value"], 72.25);
        assert_eq!(hr["valueQuantity"]["code"], "/min");
        assert_eq!(hr["effectivePeriod"]["start"], "2023-11-14T22:13:20.000Z");
        let nan = &entries[5]["resource"];
        assert!(nan.get("valueQuantity").is_none());
        assert_eq!(nan["dataAbsentReason"]["coding"][0]["code"], "not-a-number");
        let rhythm = &entries[6]["resource"];
        assert_eq!(
            rhythm["valueCodeableConcept"]["coding"][0]["code"],
            "49436004"
        );
        let strip = &entries[7]["resource"];
        assert_eq!(strip["code"]["coding"][0]["code"], "131328");
        let sd = &strip["component"][0]["valueSampledData"];
        assert_eq!(sd["data"], "10 -20 30 0");
        assert_eq!(sd["period"], 4.0);
        assert!(
            strip["component"][1]["valueSampledData"]
                .get("data")
                .is_none()
        );
        assert_eq!(strip["effectivePeriod"]["end"], "2023-11-14T22:13:15.016Z");
        // Nothing names the patient beyond the serial.
        let p = &entries[0]["resource"];
        assert!(p.get("name").is_none() && p.get("birthDate").is_none());
        assert_eq!(p["identifier"][0]["value"], "SN-1");
    }

    #[test]
    fn times_outside_the_format_and_bad_rates_are_errors() {
        let mut bad = sample();
        bad[0].start = -1;
        assert!(matches!(bundle(&bad), Err(ExportError::Unrepresentable(_))));
        let mut bad = sample();
        if let EcgResult::Strip(s) = &mut bad[3].result {
            s.fs = 0.0;
        }
        assert!(matches!(bundle(&bad), Err(ExportError::Unrepresentable(_))));
    }
}
