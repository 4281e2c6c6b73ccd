//! `aorta ehr …`: the health-record vault (paper 004): protect a record into
//! a public and a private fragment, disperse them, share them with HPKE
//! grants, recover them, audit who did what. Parses, calls
//! [`aorta_vault::EhrVault`] (which owns every check and audit entry) and
//! prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use aorta_base::fs::{write_private_atomic, write_private_new};
use aorta_crypto::selective::{HeaderRule, KdfParams, Mode, ProtectOptions, RecordId};
use aorta_vault::audit::AuditReport;
use aorta_vault::grant::Identity;
use aorta_vault::inputs;
use aorta_vault::rules::{RevokeTarget, ShareOptions};
use aorta_vault::{Blame, EhrVault, VaultError};

/// `aorta ehr` subcommands.
#[derive(clap::Subcommand)]
pub enum EhrCmd {
    /// Create a recipient identity (X25519 key pair, the same key text as
    /// `aorta clinician keygen`); prints the public key.
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
        /// Where to write the recovered file (written only if every check
        /// passes; an existing file only with --force).
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
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
        /// The recipient's public key (`aorta-clinician-1…`, from `aorta
        /// clinician keygen`/`public` or `aorta ehr keygen`; the older
        /// `aorta-ehr-pk1:…` too) or a file holding it.
        #[arg(long)]
        to: String,
        /// Validity, longer than 0: e.g. `30m`, `12h`, `7d`, `2w` (default 7d;
        /// emergency grants: never).
        #[arg(long)]
        expires: Option<String>,
        /// A standing emergency grant for the responsible doctor.
        #[arg(long)]
        emergency: bool,
        /// Share the DICOM header as is instead of de-identifying it.
        #[arg(long)]
        keep_identifying_header: bool,
        /// Where to write the grant (an existing file only with --force).
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
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
        /// Also draw the paper's Fig. 4 to this PNG: byte histograms of the
        /// input and of the public fragment, with their entropies.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Replace an existing --plot file.
        #[arg(long, requires = "plot")]
        force: bool,
    },
}

fn record_id(s: &str) -> anyhow::Result<RecordId> {
    RecordId::from_hex(s.trim()).with_context(|| format!("record id {s:?} is not 32 hex digits"))
}

fn protect_options(mode: Mode, header_bytes: Option<u64>) -> ProtectOptions {
    ProtectOptions {
        mode,
        kdf: KdfParams::DEFAULT,
        header: header_bytes.map_or(HeaderRule::Auto, HeaderRule::Bytes),
    }
}

/// Refuses, before any work, to replace an existing `out` without `--force`.
fn refuse_overwrite(out: &Path, force: bool) -> anyhow::Result<()> {
    if !force && out.exists() {
        bail!(
            "{} already exists; refusing to overwrite it (give --force to replace it)",
            out.display()
        );
    }
    Ok(())
}

/// Writes `out` (mode 0600, atomically): a new file, or with `force` a
/// replacement.
fn write_out(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    if force {
        write_private_atomic(out, bytes)?;
    } else {
        write_private_new(out, bytes)?;
    }
    Ok(())
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

/// Runs one `aorta ehr` command.
pub fn run(cmd: EhrCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        EhrCmd::Keygen { out } => {
            let id = Identity::generate()?;
            inputs::write_identity(&out, &id)?;
            outln!("{}", id.public().to_text());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Protect {
            vault,
            input,
            passphrase_file,
            mode,
            header_bytes,
        } => {
            let pass = inputs::read_passphrase(&passphrase_file)?;
            let data = inputs::read(&input)?;
            let v = EhrVault::open(&vault)?;
            let rid = v
                .protect(&data, &pass, &protect_options(mode, header_bytes))
                .with_context(|| format!("protecting {}", input.display()))?;
            outln!("{rid}");
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Recover {
            vault,
            record,
            passphrase_file,
            grant,
            identity,
            out,
            force,
        } => {
            refuse_overwrite(&out, force)?;
            let rid = record_id(&record)?;
            let v = EhrVault::open_existing(&vault)?;
            let result = match (passphrase_file, grant, identity) {
                (Some(pf), _, _) => v.recover_with_passphrase(&rid, &inputs::read_passphrase(&pf)?),
                (None, Some(gf), Some(idf)) => {
                    let ident = inputs::read_identity(&idf)
                        .with_context(|| format!("reading identity {}", idf.display()))?;
                    v.recover_with_grant(&rid, &inputs::read(&gf)?, &ident)
                        .map(|r| r.bytes)
                }
                _ => bail!("give --passphrase-file, or --grant with --identity"),
            };
            let bytes = match checked(result, Blame::Refused)? {
                Ok(b) => b,
                Err(code) => return Ok(code),
            };
            write_out(&out, &bytes, force)?;
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
            force,
        } => {
            refuse_overwrite(&out, force)?;
            let rid = record_id(&record)?;
            let pass = inputs::read_passphrase(&passphrase_file)?;
            let recipient = inputs::recipient_key(&to)?;
            let opts = ShareOptions {
                valid_for_s: expires.as_deref().map(inputs::parse_validity).transpose()?,
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
            write_out(&out, &shared.grant, force)?;
            if shared.header.expires_at == aorta_vault::grant::NEVER {
                eprintln!("grant written to {}; it never expires", out.display());
            } else {
                eprintln!(
                    "grant written to {}; valid until {}",
                    out.display(),
                    crate::when::iso_s(shared.header.expires_at)
                );
            }
            outln!("{}", shared.header.grant_hex());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Revoke {
            vault,
            grant,
            grant_id,
        } => {
            let grant_bytes = grant.as_deref().map(inputs::read).transpose()?;
            let target = match (&grant_bytes, &grant_id) {
                (Some(g), _) => RevokeTarget::Grant(g),
                (None, Some(id)) => RevokeTarget::Id(id),
                (None, None) => bail!("give --grant or --grant-id"),
            };
            let v = EhrVault::open_existing(&vault)?;
            let gid = v.revoke(target)?;
            outln!("revoked {gid}");
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
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for e in &entries {
                    outln!(
                        "{:>5} {} {:<9} record {} grant {} {}",
                        e.seq,
                        crate::when::iso_s(e.time),
                        e.event.name(),
                        e.record,
                        e.grant.as_deref().unwrap_or("-"),
                        crate::when::iso_expires(&e.detail)
                    );
                }
                if verify {
                    outln!(
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
            plot,
            force,
        } => {
            if let Some(p) = &plot {
                refuse_overwrite(p, force)?;
            }
            let opts = protect_options(mode, header_bytes);
            let report = match &plot {
                None => inputs::entropy_report(&file, &opts)?,
                Some(p) => {
                    let (report, figure) = inputs::entropy_figure(&file, &opts)?;
                    write_out(p, &figure.to_png()?, force)?;
                    report
                }
            };
            crate::show(&report, json, |r| {
                outln!(
                    "{}: input {:.4} bits/byte ({} bytes, header {}), public fragment {:.4} bits/byte ({} bytes, mode {})",
                    r.file,
                    r.input_entropy,
                    r.input_bytes,
                    r.header_bytes,
                    r.public_entropy,
                    r.public_bytes,
                    r.mode
                );
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
