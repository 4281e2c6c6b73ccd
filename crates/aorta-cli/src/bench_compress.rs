//! `aorta bench compress --db DIR [--json]`: flags →
//! [`aorta_bench::compress::run`] → the report as a table or JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_bench::compress::{CodecSizes, CompressConfig};

/// Arguments of `aorta bench compress`.
#[derive(clap::Args)]
pub struct Args {
    /// WFDB database directory (with a RECORDS file, or any *.hea files).
    #[arg(long)]
    db: PathBuf,
    /// Seconds per aorta frame.
    #[arg(long, default_value_t = 10.0, value_parser = crate::args::secs(0.0, crate::args::MAX_FRAME_SECONDS))]
    frame_seconds: f64,
    /// Read records without checking their checksums and initial values.
    #[arg(long)]
    no_verify: bool,
    /// Print JSON (`records`, `total` and `errors`: the records not measured).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let r = aorta_bench::compress::run(&CompressConfig {
        db: a.db,
        frame_seconds: a.frame_seconds,
        read: crate::wfdb_cmd::read_options(a.no_verify),
    })?;
    // Records not measured: named on stderr, exit 2, the rest reported.
    for e in &r.errors {
        eprintln!("error: record {}: {}", e.record, e.error);
    }
    let code = if r.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    };
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(code);
    }
    outln!(
        "{:<10} {:>12} {:>22} {:>22} {:>22} {:>22}",
        "record",
        "raw bytes",
        "aorta",
        "gzip6",
        "zstd3",
        "dedup_gzip"
    );
    for row in &r.records {
        print_row(&row.record, &row.sizes);
    }
    print_row("total", &r.total);
    outln!(
        "aorta / gzip6 size ratio: {:.3} (target <= {:.2})",
        r.ratio_to_gzip(),
        aorta_bench::compress::TARGET_RATIO_TO_GZIP
    );
    Ok(code)
}

fn print_row(name: &str, s: &CodecSizes) {
    let raw = s.raw_bytes;
    let [a, g, z, d] = s.codecs().map(|(_, t)| {
        format!(
            "{:>9} {:>5.1}% {:>5.0}MB/s",
            t.bytes,
            100.0 * t.bytes as f64 / raw.max(1) as f64,
            t.mb_per_s
        )
    });
    outln!("{name:<10} {raw:>12} {a:>22} {g:>22} {z:>22} {d:>22}");
}
