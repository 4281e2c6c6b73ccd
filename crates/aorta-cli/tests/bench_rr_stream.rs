//! `aorta bench rr-stream`: Parquet by default, CSV on request, the JSON
//! contract, `--verify`, and clear exits for ambiguous or broken input.
mod common;

use common::{aorta, json, shared_data};

#[test]
fn parquet_default_csv_option_and_errors() {
    let Some(db) = shared_data("mitdb", "parquet_default_csv_option_and_errors") else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let db = db.to_str().unwrap();
    let pq = json(aorta(&[
        "bench",
        "rr-stream",
        "--input",
        dir,
        "--patients",
        "4",
        "--db",
        db,
        "--verify",
        "--json",
    ]));
    for key in ["events", "windows", "events_per_s", "seconds"] {
        assert!(pq.get(key).is_some(), "missing {key}: {pq}");
    }
    assert_eq!(pq["format"], "parquet");
    assert_eq!(pq["max_rel_diff"], 0.0);
    assert!(pq["events"].as_u64().unwrap() > 5000);
    assert!(d.path().join("rr-0000.parquet").exists());

    // Both formats present: --format is required (usage error 2), then honoured.
    let csv_dir = d.path().join("csv");
    let csv = json(aorta(&[
        "bench",
        "rr-stream",
        "--input",
        csv_dir.to_str().unwrap(),
        "--patients",
        "4",
        "--db",
        db,
        "--format",
        "csv",
        "--json",
    ]));
    assert_eq!(csv["format"], "csv");
    assert_eq!(
        (csv["events"].clone(), csv["windows"].clone()),
        (pq["events"].clone(), pq["windows"].clone())
    );
    std::fs::copy(csv_dir.join("rr-0000.csv"), d.path().join("rr-0000.csv")).unwrap();
    assert_eq!(
        aorta(&["bench", "rr-stream", "--input", dir]).status.code(),
        Some(2)
    );
    let again = json(aorta(&[
        "bench",
        "rr-stream",
        "--input",
        dir,
        "--format",
        "parquet",
        "--json",
    ]));
    assert_eq!(again["events"], pq["events"]);

    // A broken Parquet file: an error naming it, exit 2, no panic.
    let f = d.path().join("rr-0000.parquet");
    std::fs::write(&f, b"PAR1 not really parquet PAR1").unwrap();
    let out = aorta(&["bench", "rr-stream", "--input", dir, "--format", "parquet"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("rr-0000.parquet") && !err.contains("panicked"),
        "{err}"
    );
}
