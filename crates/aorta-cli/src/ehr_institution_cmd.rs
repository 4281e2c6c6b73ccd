//! `aorta ehr institution …` (the institution's side: its key, doctor
//! certificates, break-glass emergency requests) and the patient's side
//! `aorta ehr pin | unpin | pins | responsible | check`
//! (`docs/vault-institutions.md`). Parses, calls
//! [`aorta_vault::institution`] and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use aorta_crypto::selective::RecordId;
use aorta_vault::institution::{
    self, CertTerms, EmergencyScope, EmergencyTerms, InstitutionKey, InstitutionSigningKey,
    MAX_EMERGENCY_VALIDITY_S, PinnedInstitutions, Role, VerifiedDoctor,
};
use aorta_vault::store::Vault;
use aorta_vault::{Blame, VaultError, inputs};

use crate::ehr_cmd::{refuse_overwrite, write_out};

/// The institution and pin commands, flattened into `aorta ehr`.
#[derive(clap::Subcommand)]
pub enum InstitutionCmds {
    /// The institution's side: its signing key, doctor certificates,
    /// break-glass emergency requests.
    Institution {
        /// What to do.
        #[command(subcommand)]
        cmd: InstitutionCmd,
    },
    /// Pin an institution's public key in the vault's device store (the
    /// patient trusts its doctor certificates); pinning again replaces the
    /// name and the emergency permission.
    Pin {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// The institution's public key (`aorta-institution-1…`) or a file
        /// holding it.
        #[arg(long)]
        institution: String,
        /// A name for it in listings (default: the name it has, else the
        /// start of its key).
        #[arg(long)]
        name: Option<String>,
        /// Allow this institution to ask for break-glass emergency access
        /// (without it, its emergency requests are refused).
        #[arg(long)]
        emergency: bool,
    },
    /// Unpin an institution: its certificates and requests are refused from
    /// now on (a responsible doctor it certified is no longer named).
    Unpin {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// The institution's public key or a file holding it.
        #[arg(long)]
        institution: String,
    },
    /// List the pinned institutions and the responsible doctor.
    Pins {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Name the responsible doctor by certificate (its role must be
    /// responsible, its institution pinned), or --clear.
    Responsible {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// The doctor's certificate (from `aorta ehr institution certify
        /// --role responsible`).
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        cert: Option<PathBuf>,
        /// Name no responsible doctor.
        #[arg(long)]
        clear: bool,
    },
    /// Check a doctor certificate or an emergency request against the
    /// vault's pins, now (exit 1 when refused). Checking a request does not
    /// use it up.
    Check {
        /// Vault directory.
        #[arg(long)]
        vault: PathBuf,
        /// The certificate (`AODC`) or emergency request (`AOER`) file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `aorta ehr institution …`.
#[derive(clap::Subcommand)]
pub enum InstitutionCmd {
    /// Create the institution's signing key (Ed25519); prints its public
    /// key, which patients pin.
    Keygen {
        /// Where to write the key (secret; created with mode 0600, never
        /// overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the public key of a key file.
    Public {
        /// The institution's key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Certify a doctor's key.
    Certify {
        /// The institution's key file.
        #[arg(long)]
        key: PathBuf,
        /// The doctor's public key (`aorta-clinician-1…`, from `aorta ehr
        /// keygen`) or a file holding it.
        #[arg(long)]
        doctor_key: String,
        /// The doctor's display name.
        #[arg(long)]
        name: String,
        /// The doctor's staff id.
        #[arg(long, default_value = "")]
        staff_id: String,
        /// `doctor` or `responsible` (the responsible doctor's higher role).
        #[arg(long, default_value = "doctor")]
        role: String,
        /// Validity: e.g. `30d`, `365d`, `52w`.
        #[arg(long, default_value = "365d")]
        valid: String,
        /// Start of validity, RFC 3339 (default: now).
        #[arg(long)]
        not_before: Option<String>,
        /// Where to write the certificate (an existing file only with --force).
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Sign a break-glass emergency request for a certified doctor.
    Emergency {
        /// The institution's key file.
        #[arg(long)]
        key: PathBuf,
        /// The doctor's certificate, issued by this institution.
        #[arg(long)]
        cert: PathBuf,
        /// The record ids (32 hex digits each, comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        records: Vec<String>,
        /// Why (shown to the patient and kept in the audit log).
        #[arg(long)]
        reason: String,
        /// Validity, at most 24h: e.g. `30m`, `4h`.
        #[arg(long, default_value = "4h")]
        valid: String,
        /// Where to write the request (an existing file only with --force).
        #[arg(long)]
        out: PathBuf,
        /// Replace --out if it exists.
        #[arg(long)]
        force: bool,
    },
}

fn now() -> anyhow::Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs())
}

/// An institution key given as its text or as the path of a file holding it.
fn institution_key(arg: &str) -> anyhow::Result<InstitutionKey> {
    if arg
        .trim_start()
        .starts_with(institution::PUBLIC_TEXT_PREFIX)
    {
        return Ok(InstitutionKey::from_text(arg)?);
    }
    let path = Path::new(arg);
    if !path.exists() {
        bail!(
            "institution {arg:?}: neither a public key (aorta-institution-1 followed by 64 hex digits) nor an existing file"
        );
    }
    let bytes = inputs::read(path)?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("{}: not a public key file (not text)", path.display()))?;
    Ok(InstitutionKey::from_text(text)?)
}

/// A refusal prints `refused: …` and exits 1; other errors exit 2.
fn checked<T>(r: Result<T, VaultError>) -> anyhow::Result<Result<T, ExitCode>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) if e.blame() == Blame::Refused => {
            eprintln!("refused: {e}");
            Ok(Err(ExitCode::from(1)))
        }
        Err(e) => Err(e.into()),
    }
}

fn doctor_line(d: &VerifiedDoctor) -> String {
    let staff = if d.staff_id.is_empty() {
        String::new()
    } else {
        format!(" (staff id {:?})", d.staff_id)
    };
    format!(
        "doctor {:?}{staff} role {}{} key {} certified by {:?} ({}) valid {} to {}",
        d.name,
        d.role.name(),
        if d.responsible_for_patient {
            ", the patient's responsible doctor"
        } else {
            ""
        },
        d.doctor.to_text(),
        d.institution_name,
        d.institution,
        crate::when::iso_s(d.not_before),
        crate::when::iso_s(d.not_after)
    )
}

#[derive(serde::Serialize)]
struct PinsReport<'a> {
    institutions: Vec<PinLine<'a>>,
    responsible: Option<ResponsibleLine<'a>>,
}

#[derive(serde::Serialize)]
struct PinLine<'a> {
    key: String,
    name: &'a str,
    emergency: bool,
    pinned_at: u64,
}

#[derive(serde::Serialize)]
struct ResponsibleLine<'a> {
    institution: String,
    doctor: String,
    name: &'a str,
}

#[derive(serde::Serialize)]
struct EmergencyReport<'a> {
    kind: &'static str,
    request_id: String,
    doctor: &'a VerifiedDoctor,
    records: Vec<String>,
    patient_key: Option<String>,
    reason: &'a str,
    issued_at: u64,
    expires_at: u64,
    nonce: String,
}

/// Runs one institution or pin command.
pub fn run(cmd: InstitutionCmds) -> anyhow::Result<ExitCode> {
    match cmd {
        InstitutionCmds::Institution { cmd } => run_institution(cmd),
        InstitutionCmds::Pin {
            vault,
            institution,
            name,
            emergency,
        } => {
            let key = institution_key(&institution)?;
            // Through the vault's rules: the change is audited (`pin`).
            let v = aorta_vault::EhrVault::open_existing(&vault)?;
            let pins = v.pins()?;
            // Without --name: the name it has, or the start of its key.
            let name = name
                .or_else(|| pins.get(&key).map(|p| p.name.clone()))
                .unwrap_or_else(|| {
                    let t = key.to_text();
                    format!("institution {}", t.get(19..35).unwrap_or(&t))
                });
            let new = v.pin_institution(key, &name, emergency)?;
            outln!(
                "{} {key} as {name:?}; emergency access {}",
                if new { "pinned" } else { "updated" },
                if emergency { "allowed" } else { "not allowed" }
            );
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmds::Unpin { vault, institution } => {
            let key = institution_key(&institution)?;
            let v = aorta_vault::EhrVault::open_existing(&vault)?;
            v.unpin_institution(&key)?;
            outln!("unpinned {key}");
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmds::Pins { vault, json } => {
            let v = Vault::open_existing(&vault)?;
            let pins = PinnedInstitutions::load(&v)?;
            let report = PinsReport {
                institutions: pins
                    .list()
                    .iter()
                    .map(|p| PinLine {
                        key: p.key.to_text(),
                        name: &p.name,
                        emergency: p.emergency,
                        pinned_at: p.pinned_at,
                    })
                    .collect(),
                responsible: pins.responsible().map(|r| ResponsibleLine {
                    institution: r.institution.to_text(),
                    doctor: r.doctor.to_text(),
                    name: &r.name,
                }),
            };
            crate::show(&report, json, |r| {
                if r.institutions.is_empty() {
                    outln!("no institutions pinned");
                }
                for p in &r.institutions {
                    outln!(
                        "{} {:?} pinned {} emergency {}",
                        p.key,
                        p.name,
                        crate::when::iso_s(p.pinned_at),
                        if p.emergency { "allowed" } else { "no" }
                    );
                }
                match &r.responsible {
                    Some(d) => outln!(
                        "responsible doctor: {:?} {} (certified by {})",
                        d.name,
                        d.doctor,
                        d.institution
                    ),
                    None => outln!("responsible doctor: none"),
                }
            })?;
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmds::Responsible { vault, cert, clear } => {
            let v = aorta_vault::EhrVault::open_existing(&vault)?;
            if clear {
                v.clear_responsible()?;
                outln!("responsible doctor: none");
                return Ok(ExitCode::SUCCESS);
            }
            let Some(cert) = cert else {
                bail!("give --cert or --clear");
            };
            let bytes = inputs::read(&cert)?;
            let d = match checked(v.set_responsible(&bytes))? {
                Ok(d) => d,
                Err(code) => return Ok(code),
            };
            outln!("responsible {}", doctor_line(&d));
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmds::Check { vault, file, json } => {
            let v = Vault::open_existing(&vault)?;
            let pins = PinnedInstitutions::load(&v)?;
            let bytes = inputs::read(&file)?;
            let now = now()?;
            if bytes.starts_with(institution::EMERGENCY_MAGIC) {
                let e = match checked(institution::verify_emergency(&bytes, &pins, now))? {
                    Ok(e) => e,
                    Err(code) => return Ok(code),
                };
                let (records, patient_key) = match &e.scope {
                    EmergencyScope::Records(ids) => {
                        (ids.iter().map(RecordId::to_hex).collect(), None)
                    }
                    EmergencyScope::Patient(k) => (Vec::new(), Some(aorta_base::hex::encode(k))),
                };
                let report = EmergencyReport {
                    kind: "emergency-request",
                    request_id: aorta_base::hex::encode(&e.request_id),
                    doctor: &e.doctor,
                    records,
                    patient_key,
                    reason: &e.reason,
                    issued_at: e.issued_at,
                    expires_at: e.expires_at,
                    nonce: aorta_base::hex::encode(&e.nonce),
                };
                crate::show(&report, json, |r| {
                    outln!(
                        "emergency request {} verified (not used): {}",
                        r.request_id,
                        doctor_line(r.doctor)
                    );
                    outln!(
                        "  records {} reason {:?} issued {} valid until {}",
                        if r.records.is_empty() {
                            "all of the patient's".to_string()
                        } else {
                            r.records.join(",")
                        },
                        r.reason,
                        crate::when::iso_s(r.issued_at),
                        crate::when::iso_s(r.expires_at)
                    );
                })?;
            } else {
                let d = match checked(institution::verify(&bytes, &pins, now))? {
                    Ok(d) => d,
                    Err(code) => return Ok(code),
                };
                crate::show(&d, json, |d| {
                    outln!("certificate verified: {}", doctor_line(d))
                })?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run_institution(cmd: InstitutionCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        InstitutionCmd::Keygen { out } => {
            let k = InstitutionSigningKey::generate()?;
            institution::write_signing_key(&out, &k)?;
            outln!("{}", k.public());
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmd::Public { key } => {
            outln!("{}", institution::read_signing_key(&key)?.public());
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmd::Certify {
            key,
            doctor_key,
            name,
            staff_id,
            role,
            valid,
            not_before,
            out,
            force,
        } => {
            refuse_overwrite(&out, force)?;
            let role: Role = role.parse()?;
            let valid = inputs::parse_validity(&valid)?;
            let not_before = match not_before {
                Some(t) => humantime::parse_rfc3339(&t)
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs())
                    .with_context(|| {
                        format!(
                            "--not-before {t:?} is not an RFC 3339 time like 2026-12-07T14:41:01Z"
                        )
                    })?,
                None => now()?,
            };
            let not_after = not_before
                .checked_add(valid)
                .context("--valid: the certificate would end after the end of time")?;
            let k = institution::read_signing_key(&key)?;
            let doctor = inputs::recipient_key(&doctor_key)?;
            let cert = institution::certify(
                &k,
                &CertTerms {
                    doctor,
                    name: &name,
                    staff_id: &staff_id,
                    role,
                    not_before,
                    not_after,
                },
            )?;
            write_out(&out, &cert, force)?;
            eprintln!(
                "certificate for {name:?} ({}) written to {}; valid {} to {}",
                role.name(),
                out.display(),
                crate::when::iso_s(not_before),
                crate::when::iso_s(not_after)
            );
            Ok(ExitCode::SUCCESS)
        }
        InstitutionCmd::Emergency {
            key,
            cert,
            records,
            reason,
            valid,
            out,
            force,
        } => {
            refuse_overwrite(&out, force)?;
            let valid = inputs::parse_validity(&valid)?;
            if valid > MAX_EMERGENCY_VALIDITY_S {
                bail!(
                    "--valid: an emergency request lasts at most 24h ({MAX_EMERGENCY_VALIDITY_S} s)"
                );
            }
            let ids = records
                .iter()
                .map(|s| {
                    RecordId::from_hex(s.trim())
                        .with_context(|| format!("record id {s:?} is not 32 hex digits"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let k = institution::read_signing_key(&key)?;
            let cert = inputs::read(&cert)?;
            let issued_at = now()?;
            let req = institution::request_emergency(
                &k,
                &EmergencyTerms {
                    certificate: &cert,
                    scope: EmergencyScope::Records(ids),
                    reason: &reason,
                    issued_at,
                    valid_for_s: valid,
                    nonce: None,
                },
            )?;
            write_out(&out, &req, force)?;
            eprintln!(
                "emergency request written to {}; valid until {}",
                out.display(),
                crate::when::iso_s(issued_at + valid)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
