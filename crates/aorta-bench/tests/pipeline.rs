//! `aorta_bench::pipeline::run` on a tiny synthetic workload: both
//! pipelines go through the server's group commit, the secure results open
//! to the plain ones (at least one compared), and the report serializes
//! with the CLI's JSON keys.

use aorta_bench::pipeline::{PipelineConfig, run};

#[test]
fn tiny_pipeline_reports_identical_results() {
    let keep = tempfile::tempdir().unwrap();
    let cfg = PipelineConfig {
        devices: 2,
        // Long enough for results (heart rate over 10-s windows): a run
        // with none compared nothing and is not `ok`.
        seconds: 12.0,
        paced_seconds: 1.0,
        frame_seconds: 1.0,
        db: keep.path().join("no-such-db"),
        batch: 64,
        rounds: 1,
        checkpoint_secs: 1.0,
        keep: Some(keep.path().join("work")),
    };
    let said = std::sync::Mutex::new(Vec::new());
    let r = run(&cfg, &|s| said.lock().unwrap().push(s.to_owned())).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.data, "synthetic");
    assert!(said.lock().unwrap().iter().any(|s| s.contains("SYNTHETIC")));
    assert_eq!(r.secure.run.frames, 2 * 12);
    assert_eq!(r.plain.run.frames, 2 * 12);
    assert_eq!(r.secure.paced.run.frames, 2);
    assert!(r.results_identical);
    assert!(r.results_opened > 0, "{r:?}");
    // Frames went through the server's log writer into the kept stores.
    let log = keep.path().join("work/secure-max/frames.log");
    assert!(std::fs::metadata(&log).unwrap().len() > 0);
    let v = serde_json::to_value(&r).unwrap();
    for k in [
        "secure",
        "plain",
        "overhead",
        "overhead_cpu",
        "devices",
        "realtime_samples_per_s",
        "results_identical",
        "results_opened",
        "targets",
    ] {
        assert!(v.get(k).is_some(), "missing {k} in {v}");
    }
    assert!(v["secure"]["samples_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["secure"]["paced"]["kept_up"].is_boolean());
    assert_eq!(v["secure"]["rounds"].as_array().unwrap().len(), 1);
    assert!(v.get("refused").is_none());
}
