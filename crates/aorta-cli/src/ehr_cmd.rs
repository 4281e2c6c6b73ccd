//! `aorta ehr …`: the health-record vault (paper 004): protect a record into
//! a public and a private fragment, disperse them, share them with HPKE
//! grants released through the patient's gate (`ehr gate serve`), recover
//! them, revoke (and rekey), audit who did what. Parses, calls
//! [`aorta_vault::EhrVault`] (which owns every check and audit entry) and
//! prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use aorta_base::fs::{write_private_atomic, write_private_new};
use aorta_crypto::selective::{HeaderRule, KdfParams, Mode, ProtectOptions, RecordId};
use aorta_vault::audit::{AuditAnchor, AuditReport};
use aorta_vault::gate::http::{HttpGate, Limits};
use aorta_vault::grant::{Identity, RecipientKey};
use aorta_vault::inputs;
use aorta_vault::rules::{
    DEFAULT_GATE_URL, GrantUse, Recipient, RevokeTarget, RoleUse, ShareOptions,
};
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
        #[arg(
            long,
            conflicts_with_all = ["grant", "identity", "as_responsible", "emergency"],
            required_unless_present_any = ["grant", "as_responsible", "emergency"]
        )]
        passphrase_file: Option<PathBuf>,
        /// Grant file (a recipient).
        #[arg(long, requires = "identity", conflicts_with_all = ["as_responsible", "emergency"])]
        grant: Option<PathBuf>,
        /// As the patient's responsible doctor, without a grant (needs
        /// --cert, --identity, --patient, --gate).
        #[arg(long, requires_all = ["cert", "identity"], conflicts_with = "emergency")]
        as_responsible: bool,
        /// Break-glass: the institution-signed emergency request (`aorta ehr
        /// institution emergency`); needs --identity, --patient, --gate.
        #[arg(long, requires = "identity")]
        emergency: Option<PathBuf>,
        /// The doctor's certificate (`AODC`): with --as-responsible; with
        /// --emergency it must be the one the request embeds.
        #[arg(long)]
        cert: Option<PathBuf>,
        /// The recipient's identity file.
        #[arg(long)]
        identity: Option<PathBuf>,
        /// The patient vault's public key (or a file holding it), given by
        /// the patient (`aorta ehr patient-key`): a grant or release not
        /// sealed by it is refused.
        #[arg(long, requires = "identity")]
        patient: Option<String>,
        /// Ask this gate (a grant names its gate; default for
        /// --as-responsible and --emergency: the loopback gate).
        #[arg(long, requires = "identity")]
        gate: Option<String>,
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
        /// The doctor's certificate (`AODC`, from `aorta ehr institution
        /// certify`): it must verify now against your pinned institutions;
        /// the grant is sealed to the certified key.
        #[arg(long, required_unless_present = "to", conflicts_with = "to")]
        to_cert: Option<PathBuf>,
        /// A bare recipient key (`aorta-clinician-1…` or a file holding it)
        /// instead of a certificate: only with --uncertified.
        #[arg(long, requires = "uncertified")]
        to: Option<String>,
        /// Share to a bare key no institution certifies: you vouch for it
        /// yourself (audited as uncertified).
        #[arg(long, requires = "to")]
        uncertified: bool,
        /// Validity, longer than 0: e.g. `30m`, `12h`, `7d`, `2w` (default 7d;
        /// emergency grants: never).
        #[arg(long)]
        expires: Option<String>,
        /// A standing grant that never expires (unless --expires): your own
        /// choice, made in advance, for one record. Break-glass by an
        /// institution is `aorta ehr recover --emergency`.
        #[arg(long)]
        emergency: bool,
        /// Share the DICOM header as is instead of de-identifying it.
        #[arg(long)]
        keep_identifying_header: bool,
        /// The URL of the patient's gate the grant sends the recipient to.
        #[arg(long, default_value = DEFAULT_GATE_URL)]
        gate: String,
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
        /// Then re-protect the grant's record under fresh keys and replace
        /// its fragments in every store: material released before decrypts
        /// nothing stored after.
        #[arg(long, requires = "passphrase_file")]
        rekey: bool,
        /// Passphrase file (for --rekey).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
    /// Print the patient vault's public key (recipients pin it: it seals
    /// every grant and release).
    PatientKey {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
    },
    /// The patient's release gate.
    #[command(subcommand)]
    Gate(GateCmd),
    /// Print the audit anchor a grant carries (`aorta-audit-anchor-1:…`):
    /// the recipient gives it to the patient, who checks their log still
    /// meets it with `aorta ehr audit --verify --anchor FILE`.
    GrantAnchor {
        /// The grant.
        #[arg(long)]
        grant: PathBuf,
        /// The recipient's identity.
        #[arg(long)]
        identity: PathBuf,
        /// The patient vault key (the grant must be sealed by it).
        #[arg(long)]
        patient: String,
    },
    /// Print the audit log; with --verify, check its MAC chain, its head and
    /// the anchor in the private store (and any --anchor).
    Audit {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// Verify the log (exit 1 if tampered).
        #[arg(long)]
        verify: bool,
        /// With --verify: a file of anchors taken earlier (`--print-anchor`,
        /// or carried in grants) that the log must still meet; repeatable.
        #[arg(long, requires = "verify")]
        anchor: Vec<PathBuf>,
        /// With --verify: a grant whose anchor the log must still meet
        /// (opened with --identity and --patient; repeatable).
        #[arg(long, requires_all = ["verify", "identity", "patient"])]
        grant: Vec<PathBuf>,
        /// The identity the --grant files are sealed to.
        #[arg(long, requires = "grant")]
        identity: Option<PathBuf>,
        /// The patient vault key the --grant files are sealed by.
        #[arg(long, requires = "grant")]
        patient: Option<String>,
        /// After verifying, print the log's current anchor (keep it off the
        /// device: it shows later deletion or truncation).
        #[arg(long, conflicts_with = "json")]
        print_anchor: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Institutions and roles: `institution …`, `pin`, `unpin`, `pins`,
    /// `responsible`, `check` (`docs/vault-institutions.md`).
    #[command(flatten)]
    Institutions(crate::ehr_institution_cmd::InstitutionCmds),
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

/// `aorta ehr gate …`.
#[derive(clap::Subcommand)]
pub enum GateCmd {
    /// Serve the vault's release gate (HTTP, `POST /v1/release`): it checks
    /// revocation and expiry with its own clock, audits every use and
    /// refusal, and releases recovery material sealed to the grant's
    /// recipient. Prints `gate listening on http://ADDR`; stops on
    /// SIGINT/SIGTERM.
    Serve {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// Address to listen on (loopback by default; port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:7480")]
        listen: std::net::SocketAddr,
        /// Most connections open at once.
        #[arg(long, default_value_t = 64)]
        max_connections: usize,
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
pub(crate) fn refuse_overwrite(out: &Path, force: bool) -> anyhow::Result<()> {
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
pub(crate) fn write_out(out: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
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
        // Tampered evidence (a public fragment no store holds intact, an
        // altered audit log) is a refusal too: exit 1, nothing written.
        Err(e) if e.blame() == refusal || e.blame() == Blame::Tampered => {
            eprintln!("refused: {e}");
            Ok(Err(ExitCode::from(1)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The audit anchor a grant carries, opened as its recipient.
fn grant_anchor(grant: &Path, identity: &Path, patient: &str) -> anyhow::Result<AuditAnchor> {
    let ident = inputs::read_identity(identity)
        .with_context(|| format!("reading identity {}", identity.display()))?;
    let patient = inputs::recipient_key(patient)?;
    let t = aorta_vault::gate::open_grant(&inputs::read(grant)?, &ident, &patient)
        .with_context(|| grant.display().to_string())?;
    AuditAnchor::parse(&t.audit_anchor)
        .with_context(|| format!("{}: the audit anchor it carries", grant.display()))
}

/// The recipient's identity (`--identity`) and the patient vault key
/// (`--patient`, required with it).
fn identity_and_patient(
    idf: &Path,
    patient: Option<String>,
) -> anyhow::Result<(Identity, RecipientKey)> {
    let ident = inputs::read_identity(idf)
        .with_context(|| format!("reading identity {}", idf.display()))?;
    let Some(patient) = patient else {
        bail!("give --patient (the patient vault key, from `aorta ehr patient-key`)");
    };
    Ok((ident, inputs::recipient_key(&patient)?))
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
            as_responsible,
            emergency,
            cert,
            identity,
            patient,
            gate,
            out,
            force,
        } => {
            refuse_overwrite(&out, force)?;
            let rid = record_id(&record)?;
            let v = EhrVault::open_existing(&vault)?;
            let role = if as_responsible {
                Some(aorta_vault::gate::KIND_RESPONSIBLE)
            } else if emergency.is_some() {
                Some(aorta_vault::gate::KIND_EMERGENCY)
            } else {
                None
            };
            let result = match (passphrase_file, grant, identity) {
                (Some(pf), _, _) => v.recover_with_passphrase(&rid, &inputs::read_passphrase(&pf)?),
                (None, None, Some(idf)) if role.is_some() => {
                    let (ident, patient) = identity_and_patient(&idf, patient)?;
                    let cert = cert.as_deref().map(inputs::read).transpose()?;
                    let credential = match (&emergency, &cert) {
                        (Some(req), cert) => {
                            let b = inputs::read(req)?;
                            let embedded = aorta_vault::institution::EmergencyRequest::parse(&b)
                                .with_context(|| req.display().to_string())?
                                .certificate;
                            if let Some(c) = cert
                                && aorta_vault::institution::DoctorCertificate::parse(c)?
                                    != embedded
                            {
                                bail!("--cert is not the certificate the emergency request names");
                            }
                            b
                        }
                        (None, Some(c)) => c.clone(),
                        (None, None) => bail!("--as-responsible needs --cert"),
                    };
                    let u = RoleUse {
                        kind: role.unwrap_or_default(),
                        credential: &credential,
                        identity: &ident,
                        patient: &patient,
                        gate_url: gate.as_deref().unwrap_or(DEFAULT_GATE_URL),
                    };
                    v.recover_with_role(&rid, &u, &HttpGate::default())
                }
                (None, Some(gf), Some(idf)) => {
                    let (ident, patient) = identity_and_patient(&idf, patient)?;
                    let grant_bytes = inputs::read(&gf)?;
                    let u = GrantUse {
                        grant: &grant_bytes,
                        identity: &ident,
                        patient: &patient,
                        gate_url: gate.as_deref(),
                    };
                    v.recover_with_grant(&rid, &u, &HttpGate::default())
                        .map(|r| r.bytes)
                }
                _ => bail!(
                    "give --passphrase-file, or --grant, --as-responsible --cert or --emergency with --identity"
                ),
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
            to_cert,
            to,
            uncertified,
            expires,
            emergency,
            keep_identifying_header,
            gate,
            out,
            force,
        } => {
            refuse_overwrite(&out, force)?;
            let rid = record_id(&record)?;
            let pass = inputs::read_passphrase(&passphrase_file)?;
            let cert = to_cert.as_deref().map(inputs::read).transpose()?;
            let recipient = match (&cert, &to) {
                (Some(c), _) => Recipient::Certified(c),
                (None, Some(k)) if uncertified => Recipient::Uncertified(inputs::recipient_key(k)?),
                _ => bail!("give --to-cert CERT (or --to KEY --uncertified)"),
            };
            let opts = ShareOptions {
                valid_for_s: expires.as_deref().map(inputs::parse_validity).transpose()?,
                emergency,
                keep_identifying_header,
            };
            let v = EhrVault::open_existing(&vault)?.with_gate_url(&gate);
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
            eprintln!(
                "the recipient needs the patient key {} (--patient) and your gate at {gate}",
                shared.header.patient.to_text()
            );
            outln!("{}", shared.header.grant_hex());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Revoke {
            vault,
            grant,
            grant_id,
            rekey,
            passphrase_file,
        } => {
            let grant_bytes = grant.as_deref().map(inputs::read).transpose()?;
            let target = match (&grant_bytes, &grant_id) {
                (Some(g), _) => RevokeTarget::Grant(g),
                (None, Some(id)) => RevokeTarget::Id(id),
                (None, None) => bail!("give --grant or --grant-id"),
            };
            let pass = passphrase_file
                .as_deref()
                .map(inputs::read_passphrase)
                .transpose()?;
            let v = EhrVault::open_existing(&vault)?;
            let (gid, record) = v.revoke(target)?;
            outln!("revoked {gid}");
            if rekey {
                let (Some(record), Some(pass)) = (record, pass) else {
                    bail!("--rekey: the vault has no record for grant {gid}; nothing rekeyed");
                };
                if let Err(code) = checked(v.rekey(&record, &pass), Blame::Refused)? {
                    return Ok(code);
                }
                outln!("rekeyed {record}");
            }
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::GrantAnchor {
            grant,
            identity,
            patient,
        } => {
            let a = grant_anchor(&grant, &identity, &patient)?;
            outln!("{}", a.to_text());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::PatientKey { vault } => {
            let v = EhrVault::open_existing(&vault)?;
            outln!("{}", v.patient_key()?.to_text());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Gate(GateCmd::Serve {
            vault,
            listen,
            max_connections,
        }) => {
            crate::signals::shut_down_on_signals()?;
            let v = EhrVault::open_existing(&vault)?;
            let key = v.patient_key()?;
            let limits = Limits {
                max_connections: max_connections.max(1),
                ..Limits::default()
            };
            aorta_vault::gate::http::run(
                listen,
                v,
                limits,
                |addr| {
                    eprintln!("patient key {}", key.to_text());
                    outln!("gate listening on http://{addr}");
                },
                std::future::pending(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Audit {
            vault,
            verify,
            anchor,
            grant,
            identity,
            patient,
            print_anchor,
            json,
        } => {
            let mut anchors = Vec::new();
            if let (Some(idf), Some(pk)) = (&identity, &patient) {
                for g in &grant {
                    anchors.push(grant_anchor(g, idf, pk)?);
                }
            }
            for f in &anchor {
                let text = String::from_utf8(inputs::read(f)?)
                    .with_context(|| format!("{}: not text", f.display()))?;
                anchors.extend(
                    AuditAnchor::all_from_text(&text).with_context(|| f.display().to_string())?,
                );
            }
            let v = EhrVault::open_existing(&vault)?;
            let refusal = if verify {
                Blame::Tampered
            } else {
                Blame::Refused
            };
            let entries = match checked(v.audit_verify_with_anchors(&anchors), refusal)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            };
            if json {
                let report = AuditReport::new(&entries);
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                let report = AuditReport::new(&entries);
                // Break-glass first, where the patient cannot miss it.
                if !report.emergency_accesses.is_empty() || !report.emergency_refusals.is_empty() {
                    outln!(
                        "!! {} emergency access(es), {} refused emergency request(s):",
                        report.emergency_accesses.len(),
                        report.emergency_refusals.len()
                    );
                    for e in report
                        .emergency_accesses
                        .iter()
                        .chain(report.emergency_refusals.iter())
                    {
                        outln!(
                            "!! {} {} record {} {}",
                            crate::when::iso_s(e.time),
                            e.event.name(),
                            e.record,
                            e.detail
                        );
                    }
                }
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
                        "audit log verified: {} entries, MAC chain intact, head and device anchor met{}",
                        entries.len(),
                        if anchors.is_empty() {
                            String::new()
                        } else {
                            format!(", {} given anchor(s) met", anchors.len())
                        }
                    );
                }
            }
            if print_anchor {
                outln!("{}", v.audit_anchor()?.to_text());
            }
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Institutions(cmd) => crate::ehr_institution_cmd::run(cmd),
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
