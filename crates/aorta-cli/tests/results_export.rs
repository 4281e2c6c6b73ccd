//! `aorta results export` from a file `results fetch --json` wrote: every
//! format, a damaged input (a clear error, exit 2), and `--post` to a local
//! FHIR endpoint that checks the method, the content type and the body
//! (and one that refuses: a clear error with its status, exit 2).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "a test fails by panicking: unwrap, expect and indexing are its assertions"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

const RESULTS: &str = r#"[
  {"patient": "SN-1", "start": 1700000000000000, "end": 1700000010000000,
   "result": {"type": "heart_rate", "beats": 12, "bpm": 72.5}},
  {"patient": "SN-1", "start": 1700000000000000, "end": 1700000030000000,
   "result": {"type": "beats", "r_peaks_us": [1700000000500000, 1700000001300000, 1700000002100000]}},
  {"patient": "SN-1", "start": 1700000001300000, "end": 1700000001300001,
   "result": {"type": "rhythm", "time_s": 1.3, "kind": "af_onset"}},
  {"patient": "SN-1", "start": 1699999996300000, "end": 1700000006300000,
   "result": {"type": "strip", "fs": 250.0, "first_sample_us": 1699999996300000,
              "event": {"time_s": 1.3, "kind": "af_onset"},
              "leads": [{"channel": 0, "samples_uv": [0, 15, -20, 980, 40]},
                        {"channel": 1, "samples_uv": [1, 2, 3, 4, 5]}]}},
  {"patient": "SN-2", "start": 1700000000000000, "end": 1700000300000000,
   "result": {"type": "hrv", "n_nn": 300, "mean_nn": 800.0, "sdnn": 42.0, "rmssd": 31.5,
              "pnn50": 8.0, "lf": 700.0, "hf": 350.0, "lf_hf": 2.0, "sd1": null, "sd2": 50.0}}
]"#;

fn aorta(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aorta"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_format_from_a_fetch_json_file() {
    let d = tempfile::tempdir().unwrap();
    let from = d.path().join("results.json");
    std::fs::write(&from, RESULTS).unwrap();

    let csv = d.path().join("r.csv");
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "csv",
        "--from",
        s(&from),
        "--out",
        s(&csv),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&csv).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "health data is owner-only: {mode:o}");
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].starts_with("patient,type,start,end,start_us,end_us,bpm"));
    assert!(
        lines[1].starts_with("SN-1,heart_rate,2023-11-14T22:13:20.000Z,2023-11-14T22:13:30.000Z,")
    );
    assert!(
        lines[4].contains(",strip,") && lines[4].contains(",af_onset,,250,2,5,"),
        "{}",
        lines[4]
    );

    let o = aorta(&[
        "results",
        "export",
        "--format",
        "fhir",
        "--from",
        s(&from),
        "--out",
        "-",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bundle: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    // 2 patients + 2 devices; HR 1, rhythm 1, strip 1, HRV 9 (beats: none).
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 4 + 12);
    // The same input, the same bytes.
    let again = aorta(&[
        "results",
        "export",
        "--format",
        "fhir",
        "--from",
        s(&from),
        "--out",
        "-",
    ]);
    assert_eq!(o.stdout, again.stdout);

    // --patient keeps one patient.
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "fhir",
        "--from",
        s(&from),
        "--out",
        "-",
        "--patient",
        "SN-2",
    ]);
    let one: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(one["entry"].as_array().unwrap().len(), 2 + 9);

    let dir = d.path().join("wfdb");
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "wfdb-ann",
        "--from",
        s(&from),
        "--out",
        s(&dir),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let hea = std::fs::read_to_string(dir.join("SN_1.hea")).unwrap();
    assert!(hea.starts_with("SN_1 0 250 "), "the strip's rate: {hea}");
    let anns =
        aorta_signal::wfdb::parse_annotations(&std::fs::read(dir.join("SN_1.aorta")).unwrap())
            .unwrap();
    assert_eq!(anns.iter().filter(|a| a.is_beat()).count(), 3);
    assert_eq!(
        anns.iter().filter(|a| a.rhythm() == Some("AFIB")).count(),
        1
    );
    assert!(
        dir.join("SN_2.hea").is_file(),
        "every patient gets a record"
    );
}

#[test]
fn a_damaged_or_wrong_input_is_a_clear_error_with_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("truncated.json", &RESULTS.as_bytes()[..RESULTS.len() / 2]),
        ("garbage.json", b"\x00\xff not json"),
        ("object.json", br#"{"patient": "SN-1"}"#),
        (
            "wrong-type.json",
            br#"[{"patient": "SN-1", "start": 1, "end": 2, "result": {"type": "nope"}}]"#,
        ),
    ];
    for (name, bytes) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let out = d.path().join("out.json");
        let o = aorta(&[
            "results",
            "export",
            "--format",
            "fhir",
            "--from",
            s(&p),
            "--out",
            s(&out),
        ]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains(name) && e.contains("not a JSON array of results"),
            "{name}: {e}"
        );
        assert!(!e.contains("panicked"), "{e}");
        assert!(!out.exists(), "{name}: nothing written");
    }
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "csv",
        "--from",
        s(&d.path().join("absent.json")),
        "--out",
        "-",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("absent.json"), "{}", stderr(&o));
    // Without --from, the server flags are needed.
    let o = aorta(&["results", "export", "--format", "csv", "--out", "-"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is required to read results from a server"),
        "{}",
        stderr(&o)
    );
    // --post only with fhir; --fs only with wfdb-ann; a bad --fs.
    let from = d.path().join("ok.json");
    std::fs::write(&from, RESULTS).unwrap();
    for (args, says) in [
        (
            vec!["--format", "csv", "--post", "http://127.0.0.1:9/"],
            "--format fhir",
        ),
        (vec!["--format", "fhir", "--fs", "250"], "--format wfdb-ann"),
        (
            vec!["--format", "wfdb-ann", "--fs", "0"],
            "sampling frequency",
        ),
    ] {
        let out = d.path().join("x");
        let mut a = vec!["results", "export", "--from", s(&from), "--out", s(&out)];
        a.extend(args);
        let o = aorta(&a);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
}

/// What the local FHIR endpoint received: request line, headers, body.
type Request = (String, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 exchange on a local listener: the request's method, path,
/// headers and body, answered with `status` and `answer`.
fn serve_once(
    status: &'static str,
    answer: &'static str,
) -> (String, std::thread::JoinHandle<Request>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/fhir", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (stream, _) = l.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut r = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let mut w = stream;
        write!(
            w,
            "HTTP/1.1 {status}\r\ncontent-type: application/fhir+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
            answer.len()
        )
        .unwrap();
        (line.trim_end().to_owned(), headers, body)
    });
    (url, h)
}

#[test]
fn post_sends_the_bundle_as_fhir_json_and_a_refusal_is_an_error() {
    let d = tempfile::tempdir().unwrap();
    let from = d.path().join("results.json");
    std::fs::write(&from, RESULTS).unwrap();
    let out = d.path().join("bundle.json");

    let (url, server) = serve_once(
        "201 Created",
        "{\"resourceType\":\"Bundle\",\"type\":\"collection-response\"}",
    );
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "fhir",
        "--from",
        s(&from),
        "--out",
        s(&out),
        "--post",
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("201"), "{}", stderr(&o));
    let (line, headers, body) = server.join().unwrap();
    assert_eq!(line, "POST /fhir HTTP/1.1");
    let ct = headers.iter().find(|(k, _)| k == "content-type").unwrap();
    assert_eq!(ct.1, "application/fhir+json");
    let sent: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(sent, written, "the Bundle posted is the one written");
    assert_eq!(sent["resourceType"], "Bundle");

    let (url, server) = serve_once(
        "422 Unprocessable Entity",
        "{\"resourceType\":\"OperationOutcome\",\"issue\":[{\"severity\":\"error\",\"code\":\"invalid\"}]}",
    );
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "fhir",
        "--from",
        s(&from),
        "--out",
        s(&out),
        "--post",
        &url,
    ]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("422") && e.contains("OperationOutcome") && e.contains(&url),
        "{e}"
    );

    // Nobody listening: a clear network error, exit 2.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = aorta(&[
        "results",
        "export",
        "--format",
        "fhir",
        "--from",
        s(&from),
        "--out",
        s(&out),
        "--post",
        &format!("http://127.0.0.1:{port}/fhir"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("posting the FHIR Bundle"),
        "{}",
        stderr(&o)
    );
}
