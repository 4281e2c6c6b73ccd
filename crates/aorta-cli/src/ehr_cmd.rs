//! `aorta ehr …`: the health-record vault (paper 004): protect a record into
//! a public and a private fragment, disperse them, share them with HPKE
//! grants, recover them, audit who did what. Parses, calls
//! [`aorta_vault::EhrVault`] (which owns every check and audit entry) and
//! prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use aorta_base::fs::{write_private_atomic, write_private_new};
use aorta_crypto::selective::entropy::shannon_bits_per_byte;
use aorta_crypto::selective::{
    HeaderRule, KdfParams, MasterKey, Mode, ProtectOptions, Randomness, RecordId,
    container::{parse_public, protect_with_key},
};
use aorta_vault::audit::Entry;
use aorta_vault::grant::{Identity, RecipientKey};
use aorta_vault::rules::{RevokeTarget, ShareOptions};
use aorta_vault::{Blame, EhrVault, VaultError};

/// `aorta ehr` subcommands.
#[derive(clap::Subcommand)]
pub enum EhrCmd {
    /// Create a recipient identity (X25519 key pair); prints the public key.
    Keygen {
        /// Where to write the identity (secret; created with mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Protect a file: split it into public and private fragments and
    /// disperse them into the vault; prints the new record's id.
    Protect {
        /// Vault directory (default local stores under it; `vault.json` selects others).
        #[arg(long)]
        vault: PathBuf,
        /// The file to protect.
        #[arg(long = "in")]
        input: PathBuf,
        /// File holding the passphrase (one trailing newline is ignored).
        #[arg(long)]
        passphrase_file: PathBuf,
        /// `strong` (default: K plus the public fragment reveal nothing) or
        /// `faithful` (the paper's Algorithm 1 as published).
        #[arg(long, default_value = "strong")]
        mode: Mode,
        /// Treat the first N bytes as the file header (default: DICOM-aware).
        #[arg(long)]
        header_bytes: Option<u64>,
    },
    /// Recover a record with the passphrase or with a grant.
    Recover {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// Record id (32 hex digits).
        #[arg(long)]
        record: String,
        /// Passphrase file (the patient).
        #[arg(long, conflicts_with_all = ["grant", "identity"], required_unless_present = "grant")]
        passphrase_file: Option<PathBuf>,
        /// Grant file (a recipient).
        #[arg(long, requires = "identity")]
        grant: Option<PathBuf>,
        /// The recipient's identity file.
        #[arg(long, requires = "grant")]
        identity: Option<PathBuf>,
        /// Where to write the recovered file (written only if every check passes).
        #[arg(long)]
        out: PathBuf,
    },
    /// Grant a recipient access to one record.
    Share {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// Record id.
        #[arg(long)]
        record: String,
        /// Passphrase file.
        #[arg(long)]
        passphrase_file: PathBuf,
        /// The recipient's public key (`aorta-ehr-pk1:…`) or a file holding it.
        #[arg(long)]
        to: String,
        /// Validity, e.g. `30m`, `12h`, `7d`, `2w` (default 7d; emergency grants: never).
        #[arg(long)]
        expires: Option<String>,
        /// A standing emergency grant for the responsible doctor.
        #[arg(long)]
        emergency: bool,
        /// Share the DICOM header as is instead of de-identifying it.
        #[arg(long)]
        keep_identifying_header: bool,
        /// Where to write the grant.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a grant.
    Revoke {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// The grant file to revoke.
        #[arg(long, required_unless_present = "grant_id")]
        grant: Option<PathBuf>,
        /// Or the grant id (32 hex digits) printed by `share`.
        #[arg(long, conflicts_with = "grant")]
        grant_id: Option<String>,
    },
    /// Print the audit log; with --verify, check its hash chain.
    Audit {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// Verify the chain (exit 1 if tampered).
        #[arg(long)]
        verify: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shannon entropy (bits/byte) of a file and of its public fragment.
    Entropy {
        /// The file.
        file: PathBuf,
        /// Mode used for the public fragment.
        #[arg(long, default_value = "strong")]
        mode: Mode,
        /// Treat the first N bytes as the file header.
        #[arg(long)]
        header_bytes: Option<u64>,
        /// Print JSON (`input_entropy`, `public_entropy`, …).
        #[arg(long)]
        json: bool,
    },
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_passphrase(path: &Path) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    let mut p = zeroize::Zeroizing::new(read(path)?);
    if p.ends_with(b"\n") {
        p.pop();
        if p.ends_with(b"\r") {
            p.pop();
        }
    }
    if p.is_empty() {
        bail!("{}: the passphrase is empty", path.display());
    }
    Ok(p)
}

fn record_id(s: &str) -> anyhow::Result<RecordId> {
    RecordId::from_hex(s.trim()).with_context(|| format!("record id {s:?} is not 32 hex digits"))
}

fn header_rule(header_bytes: Option<u64>) -> HeaderRule {
    header_bytes.map_or(HeaderRule::Auto, HeaderRule::Bytes)
}

/// Parses `30s`, `15m`, `12h`, `7d`, `2w` into seconds.
fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().with_context(|| {
        format!("duration {s:?}: expected a number followed by s, m, h, d or w")
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("duration {s:?}: unknown unit {unit:?} (use s, m, h, d or w)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("duration {s:?} is too long"))
}

/// A vault result for the exit code: a refusal (the check ran and said no,
/// blamed on `refusal`) prints `refused: …` and exits 1; any other error is
/// an error (exit 2).
fn checked<T>(r: Result<T, VaultError>, refusal: Blame) -> anyhow::Result<Result<T, ExitCode>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.blame() == refusal => {
            eprintln!("refused: {e}");
            Ok(Err(ExitCode::from(1)))
        }
        Err(e) => Err(e.into()),
    }
}

/// `ehr audit --json`.
#[derive(serde::Serialize)]
struct AuditReport<'a> {
    verified: bool,
    entries: &'a [Entry],
}

/// `ehr entropy --json`.
#[derive(serde::Serialize)]
struct EntropyReport {
    file: String,
    mode: &'static str,
    input_bytes: usize,
    header_bytes: usize,
    public_bytes: usize,
    input_entropy: f64,
    public_entropy: f64,
}

/// Runs one `aorta ehr` command.
pub fn run(cmd: EhrCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EhrCmd::Keygen { out } => {
            if out.exists() {
                bail!(
                    "{} exists; refusing to overwrite an identity",
                    out.display()
                );
            }
            let id = Identity::generate()?;
            write_private_new(&out, id.to_text().as_bytes())?;
            println!("{}", id.public().to_text());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Protect {
            vault,
            input,
            passphrase_file,
            mode,
            header_bytes,
        } => {
            let pass = read_passphrase(&passphrase_file)?;
            let data = read(&input)?;
            let v = EhrVault::open(&vault)?;
            let opts = ProtectOptions {
                mode,
                kdf: KdfParams::DEFAULT,
                header: header_rule(header_bytes),
            };
            let rid = v
                .protect(&data, &pass, &opts)
                .with_context(|| format!("protecting {}", input.display()))?;
            println!("{rid}");
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Recover {
            vault,
            record,
            passphrase_file,
            grant,
            identity,
            out,
        } => {
            let rid = record_id(&record)?;
            let v = EhrVault::open_existing(&vault)?;
            let result = match (passphrase_file, grant, identity) {
                (Some(pf), _, _) => {
                    let pass = read_passphrase(&pf)?;
                    v.recover_with_passphrase(&rid, &pass)
                }
                (None, Some(gf), Some(idf)) => {
                    let g = read(&gf)?;
                    let id_text = String::from_utf8(read(&idf)?)
                        .with_context(|| format!("{} is not text", idf.display()))?;
                    let ident = Identity::from_text(&id_text)
                        .with_context(|| format!("reading identity {}", idf.display()))?;
                    v.recover_with_grant(&rid, &g, &ident).map(|r| r.bytes)
                }
                _ => bail!("give --passphrase-file, or --grant with --identity"),
            };
            let bytes = match checked(result, Blame::Refused)? {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            write_private_atomic(&out, &bytes)?;
            eprintln!("recovered {} bytes to {}", bytes.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Share {
            vault,
            record,
            passphrase_file,
            to,
            expires,
            emergency,
            keep_identifying_header,
            out,
        } => {
            let rid = record_id(&record)?;
            let pass = read_passphrase(&passphrase_file)?;
            let key_text = if to.trim_start().starts_with("aorta-ehr-pk1:") {
                to.clone()
            } else {
                String::from_utf8(read(Path::new(&to))?)
                    .with_context(|| format!("{to} is not a public key file"))?
            };
            let recipient = RecipientKey::from_text(&key_text)?;
            let opts = ShareOptions {
                valid_for_s: expires.as_deref().map(parse_duration).transpose()?,
                emergency,
                keep_identifying_header,
            };
            let v = EhrVault::open_existing(&vault)?;
            let shared = match checked(v.share(&rid, &pass, &recipient, &opts), Blame::Refused)? {
                Ok(s) => s,
                Err(code) => return Ok(code),
            };
            for n in &shared.notes {
                eprintln!("{n}");
            }
            write_private_atomic(&out, &shared.grant)?;
            println!("{}", shared.header.grant_hex());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Revoke {
            vault,
            grant,
            grant_id,
        } => {
            let grant_bytes = grant.as_deref().map(read).transpose()?;
            let target = match (&grant_bytes, &grant_id) {
                (Some(g), _) => RevokeTarget::Grant(g),
                (None, Some(id)) => RevokeTarget::Id(id),
                (None, None) => bail!("give --grant or --grant-id"),
            };
            let v = EhrVault::open_existing(&vault)?;
            let gid = v.revoke(target)?;
            println!("revoked {gid}");
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Audit {
            vault,
            verify,
            json,
        } => {
            let v = EhrVault::open_existing(&vault)?;
            let refusal = if verify {
                Blame::Tampered
            } else {
                Blame::Refused
            };
            let entries = match checked(v.audit_verify(), refusal)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            };
            if json {
                let report = AuditReport {
                    verified: true,
                    entries: &entries,
                };
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for e in &entries {
                    println!(
                        "{:>5} {} {:<9} record {} grant {} {}",
                        e.seq,
                        e.time,
                        e.event.name(),
                        e.record,
                        e.grant.as_deref().unwrap_or("-"),
                        e.detail
                    );
                }
                if verify {
                    println!(
                        "audit log verified: {} entries, hash chain intact",
                        entries.len()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Entropy {
            file,
            mode,
            header_bytes,
            json,
        } => {
            let data = read(&file)?;
            // The key does not matter for the statistics: a random K, no KDF.
            let k = aorta_base::random::array::<32>()?;
            let opts = ProtectOptions {
                mode,
                kdf: KdfParams::DEFAULT,
                header: header_rule(header_bytes),
            };
            let p = protect_with_key(
                &data,
                &MasterKey::from_bytes(k),
                &opts,
                &Randomness::fresh()?,
            )?;
            let (_, body, _) = parse_public(&p.public)?;
            let report = EntropyReport {
                file: file.display().to_string(),
                mode: mode.name(),
                input_bytes: data.len(),
                header_bytes: p.split.head_len,
                public_bytes: body.len(),
                input_entropy: shannon_bits_per_byte(&data),
                public_entropy: shannon_bits_per_byte(body),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{}: input {:.4} bits/byte ({} bytes, header {}), public fragment {:.4} bits/byte ({} bytes, mode {})",
                    report.file,
                    report.input_entropy,
                    report.input_bytes,
                    report.header_bytes,
                    report.public_entropy,
                    report.public_bytes,
                    report.mode
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
