//! `aorta results …`: the clinician's side of the results API, and the
//! standard exports of what it opens (`aorta_clinician::export`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aorta_clinician::export;
use aorta_worker::clinician::{OpenedResult, ResultReader};
use aorta_worker::server::Server;

/// Where results come from: the server, opened with the clinician's
/// identity (shared by `fetch` and `export`).
#[derive(clap::Args, Debug)]
pub struct Source {
    /// Server base URL.
    #[arg(long, default_value = "https://127.0.0.1:7443")]
    server: String,
    /// The server's certificate to trust.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The clinician's identity file.
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Subscriber id the results are sealed to (as in the broker policy).
    #[arg(long)]
    subscriber: Option<String>,
    /// The key broker's certifying public key (64 hex digits, from
    /// `aorta broker public-key` or the server's `broker-signing.key`
    /// owner): only results signed by workers it certified are shown.
    #[arg(long)]
    broker_key: Option<String>,
    /// Accept results of `sim` workers (development only: they are NOT
    /// hardware-protected, and whoever controls their host can sign as
    /// them).
    #[arg(long)]
    allow_sim: bool,
    /// Only this patient's device serial.
    #[arg(long)]
    patient: Option<String>,
}

/// Export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// FHIR R4 (4.0.1) Bundle, JSON (docs/fhir.md).
    Fhir,
    /// CSV, one row per result, ISO-8601 UTC times.
    Csv,
    /// WFDB annotation files, one record per patient (a directory).
    WfdbAnn,
}

/// `aorta results` subcommands.
#[derive(clap::Subcommand)]
pub enum ResultsCmd {
    /// Fetch the results sealed to SUBSCRIBER and open them with the
    /// clinician's identity (`aorta clinician keygen`).
    Fetch {
        #[command(flatten)]
        source: Source,
        /// Print JSON (one array of results; with --follow, one result per
        /// line).
        #[arg(long)]
        json: bool,
        /// Keep following new results as the server stores them
        /// (long-poll), until interrupted or the output is closed.
        #[arg(long)]
        follow: bool,
    },
    /// Export opened results as FHIR R4, CSV or WFDB annotations: fetched
    /// and opened as `fetch` does, or read from a file `fetch --json`
    /// wrote (--from).
    Export {
        #[command(flatten)]
        source: Source,
        /// The format.
        #[arg(long, value_enum)]
        format: Format,
        /// Output: a file (`-` for standard output) for fhir and csv, a
        /// directory for wfdb-ann.
        #[arg(long)]
        out: PathBuf,
        /// Read the results from this file (the JSON array `aorta results
        /// fetch --json` prints) instead of the server.
        #[arg(long)]
        from: Option<PathBuf>,
        /// fhir: also POST the Bundle to this FHIR server endpoint
        /// (Content-Type application/fhir+json).
        #[arg(long)]
        post: Option<String>,
        /// fhir: the certificates to trust for an https --post URL (PEM).
        #[arg(long, requires = "post")]
        post_ca: Option<PathBuf>,
        /// wfdb-ann: sampling frequency of the annotation sample numbers,
        /// Hz (default: the patient's strips' rate, else 360).
        #[arg(long)]
        fs: Option<f64>,
    },
}

fn need<'a, T>(v: &'a Option<T>, flag: &str) -> anyhow::Result<&'a T> {
    v.as_ref()
        .ok_or_else(|| anyhow::anyhow!("{flag} is required to read results from a server"))
}

impl Source {
    fn reader(&self) -> anyhow::Result<ResultReader> {
        let broker_key = need(&self.broker_key, "--broker-key")?;
        let pinned =
            aorta_base::hex::decode_array::<32>(broker_key.trim(), aorta_base::hex::Case::Lower)
                .map_err(|e| anyhow::anyhow!("--broker-key: {e}"))?;
        let id = crate::clinician_cmd::read_identity(need(&self.identity, "--identity")?)?;
        let srv = Server::new(&self.server, need(&self.ca, "--ca")?, None)?;
        let subscriber = need(&self.subscriber, "--subscriber")?;
        Ok(
            ResultReader::new(srv, id, subscriber, self.patient.as_deref(), *pinned)?
                .allow_simulation(self.allow_sim),
        )
    }
}

/// What the reader could not open, on stderr; the exit status it means.
fn report(reader: &ResultReader) -> ExitCode {
    if reader.withheld() > 0 {
        eprintln!(
            "{} result(s) could not be opened: the host did not serve their session envelope (withheld or lost)",
            reader.withheld()
        );
    }
    for why in reader.certificate_refusals() {
        eprintln!("{why}");
    }
    if reader.refused() > 0 {
        eprintln!(
            "refused {} record(s) (not signed by a worker the pinned broker certified, altered by the host, or sealed to another identity); last: {}",
            reader.refused(),
            reader.last_refusal().unwrap_or("-")
        );
        return ExitCode::from(1);
    }
    if reader.withheld() > 0 {
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// The warnings for a subscriber or a patient nothing is known of
/// (`docs/cli.md`, "results fetch"): the server authenticates the
/// subscriber (an unlisted one is refused 401 before this), so what the
/// clinician can tell is that no result was ever opened for the
/// subscriber, or none for the patient among the patients seen.
fn warn_unknown(source: &Source, reader: &ResultReader, opened: usize) {
    let seen = reader.patients_seen();
    let subscriber = source.subscriber.as_deref().unwrap_or("-");
    if seen.is_empty() && reader.refused() == 0 && reader.withheld() == 0 {
        eprintln!(
            "warning: no result is stored for subscriber {subscriber} on this server: check the id against the broker policy's subscribers (or the worker has not analysed anything yet)"
        );
        return;
    }
    if let Some(p) = &source.patient
        && opened == 0
        && !seen.contains(p)
    {
        let known: Vec<&str> = seen.iter().map(String::as_str).take(10).collect();
        eprintln!(
            "warning: unknown patient {p}: no result of subscriber {subscriber} is for this device serial (patients seen: {}{})",
            known.join(", "),
            if seen.len() > known.len() {
                ", …"
            } else {
                ""
            }
        );
    }
}

fn print_text(r: &OpenedResult) {
    outln!(
        "{} [{} .. {}] {}",
        r.patient,
        crate::when::iso_us(r.start),
        crate::when::iso_us(r.end),
        export::summary(&r.result)
    );
}

fn fetch(source: &Source, json: bool, follow: bool) -> anyhow::Result<ExitCode> {
    if follow {
        // Every result is printed (a whole line) as it is opened: nothing
        // to flush, so Ctrl-C or SIGTERM is a requested stop, status 0.
        crate::signals::shut_down_on_signals()?;
    }
    let mut reader = source.reader()?;
    let results = reader.poll()?;
    let opened = results.len();
    if json && !follow {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        for r in &results {
            if json {
                outln!("{}", serde_json::to_string(r)?);
            } else {
                print_text(r);
            }
        }
        if !follow {
            eprintln!("{} result(s)", results.len());
        }
    }
    warn_unknown(source, &reader, opened);
    if !follow {
        return Ok(report(&reader));
    }
    let (mut refused, mut withheld) = (reader.refused(), reader.withheld());
    let mut certs = reader.certificate_refusals().len();
    let _ = report(&reader);
    loop {
        let results = match reader.poll_wait(FOLLOW_WAIT) {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                eprintln!("warning: {e}; retrying in 2 s");
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        for r in &results {
            if json {
                outln!("{}", serde_json::to_string(r)?);
            } else {
                print_text(r);
            }
        }
        // New refusals are reported as they happen; the run goes on.
        if reader.refused() != refused
            || reader.withheld() != withheld
            || reader.certificate_refusals().len() != certs
        {
            let _ = report(&reader);
            refused = reader.refused();
            withheld = reader.withheld();
            certs = reader.certificate_refusals().len();
        }
    }
}

/// The long-poll each `--follow` request asks for (the server's cap,
/// `aorta_api::MAX_RESULTS_WAIT_S`).
const FOLLOW_WAIT: Duration = Duration::from_secs(25);

fn write_out(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if out == Path::new("-") {
        use std::io::Write;
        let mut so = std::io::stdout().lock();
        so.write_all(bytes)?;
        so.flush()?;
        return Ok(());
    }
    // Results are health data: owner-only (0600), replaced atomically so
    // an interrupted export leaves no partial file.
    aorta_base::fs::write_private_atomic(out, bytes)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))
}

#[allow(
    clippy::too_many_arguments,
    reason = "the flags of one subcommand, passed through"
)]
fn export_cmd(
    source: &Source,
    format: Format,
    out: &Path,
    from: Option<&Path>,
    post: Option<&str>,
    post_ca: Option<&Path>,
    fs: Option<f64>,
) -> anyhow::Result<ExitCode> {
    if post.is_some() && format != Format::Fhir {
        anyhow::bail!("--post sends a FHIR Bundle: it needs --format fhir");
    }
    if fs.is_some() && format != Format::WfdbAnn {
        anyhow::bail!(
            "--fs sets the WFDB annotations' sampling frequency: it needs --format wfdb-ann"
        );
    }
    let (results, status) = match from {
        Some(path) => {
            let mut r = export::read_results(path)?;
            if let Some(p) = &source.patient {
                r.retain(|x| &x.patient == p);
            }
            (r, ExitCode::SUCCESS)
        }
        None => {
            let mut reader = source.reader()?;
            let r = reader.poll()?;
            warn_unknown(source, &reader, r.len());
            let status = report(&reader);
            (r, status)
        }
    };
    match format {
        Format::Fhir => {
            let bundle = export::fhir::bundle(&results)?;
            let mut text = serde_json::to_vec_pretty(&bundle)?;
            text.push(b'\n');
            write_out(out, &text)?;
            let n = bundle
                .get("entry")
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len);
            eprintln!(
                "FHIR R4 Bundle: {n} resource(s) from {} result(s)",
                results.len()
            );
            if let Some(url) = post {
                let code = export::fhir::post(url, post_ca, &bundle)?;
                eprintln!("posted to {url}: {code}");
            }
        }
        Format::Csv => {
            write_out(out, export::csv::to_csv(&results).as_bytes())?;
            eprintln!("CSV: {} row(s)", results.len());
        }
        Format::WfdbAnn => {
            if out == Path::new("-") {
                anyhow::bail!("--format wfdb-ann writes files: --out must be a directory");
            }
            aorta_base::fs::create_private_dir(out)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
            for rec in export::wfdb::records(&results, fs)? {
                let hea = out.join(format!("{}.hea", rec.record));
                let ann = out.join(format!("{}.{}", rec.record, export::wfdb::ANNOTATOR));
                write_out(&hea, rec.header.as_bytes())?;
                write_out(&ann, &rec.annotations)?;
                eprintln!(
                    "{}: {} beat(s), {} rhythm change(s), {} note(s) at {} Hz -> {}",
                    rec.patient,
                    rec.beats,
                    rec.rhythm,
                    rec.notes,
                    rec.fs,
                    ann.display()
                );
            }
        }
    }
    Ok(status)
}

pub fn run(cmd: ResultsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ResultsCmd::Fetch {
            source,
            json,
            follow,
        } => fetch(&source, json, follow),
        ResultsCmd::Export {
            source,
            format,
            out,
            from,
            post,
            post_ca,
            fs,
        } => export_cmd(
            &source,
            format,
            &out,
            from.as_deref(),
            post.as_deref(),
            post_ca.as_deref(),
            fs,
        ),
    }
}
