//! `aorta ehr …`: the health-record vault (paper 004): protect a record into
//! a public and a private fragment, disperse them, share them with HPKE
//! grants, recover them, audit who did what.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aorta_crypto::selective::container::open_private;
use aorta_crypto::selective::entropy::shannon_bits_per_byte;
use aorta_crypto::selective::{
    HeaderRule, KdfParams, MasterKey, Mode, ProtectOptions, Randomness, RecordId, SelectiveError,
    container::{parse_public, protect_with_key},
    protect, recover,
};
use aorta_vault::VaultError;
use aorta_vault::audit::{AuditLog, Event};
use aorta_vault::grant::{self, Identity, NEVER, RecipientKey};
use aorta_vault::store::Vault;

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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

/// Writes `bytes` to `path` atomically (temporary file + rename).
fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".aorta-tmp");
    let tmp = dir.join(tmp_name);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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

/// A refusal: the command ran and said no (exit 1).
fn refuse(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("refused: {msg}");
    Ok(ExitCode::from(1))
}

/// True for errors that mean "the check failed" rather than "bad input".
fn is_refusal(e: &VaultError) -> bool {
    matches!(
        e,
        VaultError::GrantNotForUs
            | VaultError::Expired { .. }
            | VaultError::Revoked { .. }
            | VaultError::Selective(
                SelectiveError::PrivateAuthFailed
                    | SelectiveError::PublicMismatch { .. }
                    | SelectiveError::PublicChecksum
            )
    )
}

fn audit(vault: &Vault) -> AuditLog {
    AuditLog::new(&vault.audit_path())
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
            write_atomic(&out, id.to_text().as_bytes(), true)?;
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
            let v = Vault::open(&vault)?;
            let opts = ProtectOptions {
                mode,
                kdf: KdfParams::DEFAULT,
                header: header_rule(header_bytes),
            };
            let p = protect(&data, &pass, &opts)
                .with_context(|| format!("protecting {}", input.display()))?;
            v.put_record(&p)?;
            audit(&v).append(
                now(),
                Event::Protect,
                &p.record_id.to_hex(),
                None,
                &format!("mode {}", mode.name()),
            )?;
            println!("{}", p.record_id);
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
            let v = Vault::open_existing(&vault)?;
            let log = audit(&v);
            let result = match (passphrase_file, grant, identity) {
                (Some(pf), _, _) => {
                    let pass = read_passphrase(&pf)?;
                    let private = v.get_private(&rid)?;
                    let public = v.get_public(&rid)?;
                    open_private(&private, &pass)
                        .and_then(|m| recover(&public, &m))
                        .map_err(|e| (VaultError::from(e), None))
                        .map(|b| (b, Event::Recover, None))
                }
                (None, Some(gf), Some(idf)) => {
                    let g = read(&gf)?;
                    let id_text = String::from_utf8(read(&idf)?)
                        .with_context(|| format!("{} is not text", idf.display()))?;
                    let ident = Identity::from_text(&id_text)
                        .with_context(|| format!("reading identity {}", idf.display()))?;
                    recover_by_grant(&v, rid, &g, &ident)
                }
                _ => bail!("give --passphrase-file, or --grant with --identity"),
            };
            match result {
                Ok((bytes, event, grant_hex)) => {
                    write_atomic(&out, &bytes, true)?;
                    log.append(now(), event, &rid.to_hex(), grant_hex.as_deref(), "")?;
                    eprintln!("recovered {} bytes to {}", bytes.len(), out.display());
                    Ok(ExitCode::SUCCESS)
                }
                Err((e, grant_hex)) if is_refusal(&e) => {
                    if let Some(g) = &grant_hex {
                        log.append(now(), Event::Refuse, &rid.to_hex(), Some(g), &e.to_string())?;
                    }
                    refuse(e)
                }
                Err((e, _)) => Err(e.into()),
            }
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
            let v = Vault::open_existing(&vault)?;
            let private = v.get_private(&rid)?;
            let mut m = match open_private(&private, &pass) {
                Ok(m) => m,
                Err(e @ SelectiveError::PrivateAuthFailed) => return refuse(e),
                Err(e) => return Err(e.into()),
            };
            if m.mode == Mode::Faithful {
                eprintln!(
                    "note: this record uses faithful mode; its grant carries the record key K, \
                     which lets the recipient test passphrase guesses offline (strong mode does not)"
                );
            }
            if !keep_identifying_header {
                let (head, note) = aorta_vault::deid::deidentify_head(&m.head, &rid)?;
                m.head = head;
                if let Some(n) = note {
                    eprintln!("{n}");
                }
            }
            let t = now();
            let expires_at = match (&expires, emergency) {
                (Some(d), _) => t.saturating_add(parse_duration(d)?),
                (None, true) => NEVER,
                (None, false) => t + 7 * 86_400,
            };
            let (h, bytes) = grant::seal(&m, &recipient, t, expires_at, emergency)?;
            write_atomic(&out, &bytes, false)?;
            audit(&v).append(
                t,
                if emergency {
                    Event::Emergency
                } else {
                    Event::Grant
                },
                &rid.to_hex(),
                Some(&h.grant_hex()),
                &format!(
                    "to {} expires {}",
                    recipient.to_text(),
                    if expires_at == NEVER {
                        "never".to_string()
                    } else {
                        expires_at.to_string()
                    }
                ),
            )?;
            println!("{}", h.grant_hex());
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Revoke {
            vault,
            grant,
            grant_id,
        } => {
            let (gid, rid) = match (grant, grant_id) {
                (Some(g), _) => {
                    let h = grant::peek(&read(&g)?)?;
                    (h.grant_hex(), h.record_id.to_hex())
                }
                (None, Some(id)) => {
                    let id = id.trim().to_ascii_lowercase();
                    if RecordId::from_hex(&id).is_none() {
                        bail!("grant id {id:?} is not 32 hex digits");
                    }
                    (id, String::new())
                }
                (None, None) => bail!("give --grant or --grant-id"),
            };
            let v = Vault::open_existing(&vault)?;
            v.revoke(&gid)?;
            audit(&v).append(now(), Event::Revoke, &rid, Some(&gid), "")?;
            println!("revoked {gid}");
            Ok(ExitCode::SUCCESS)
        }
        EhrCmd::Audit {
            vault,
            verify,
            json,
        } => {
            let v = Vault::open_existing(&vault)?;
            let entries = match audit(&v).verify() {
                Ok(e) => e,
                Err(e @ VaultError::AuditTampered { .. }) if verify => return refuse(e),
                Err(e) => return Err(e.into()),
            };
            if json {
                let out = serde_json::json!({ "verified": true, "entries": entries });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                for e in &entries {
                    println!(
                        "{:>5} {} {:<9} record {} grant {} {}",
                        e.seq,
                        e.time,
                        serde_json::to_value(e.event)?.as_str().unwrap_or("?"),
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
            let mut k = [0u8; 32];
            aorta_crypto::selective::keys::fill_random(&mut k)?;
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
            let input_entropy = shannon_bits_per_byte(&data);
            let public_entropy = shannon_bits_per_byte(body);
            if json {
                let out = serde_json::json!({
                    "file": file.display().to_string(),
                    "mode": mode.name(),
                    "input_bytes": data.len(),
                    "header_bytes": p.split.head_len,
                    "public_bytes": body.len(),
                    "input_entropy": input_entropy,
                    "public_entropy": public_entropy,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!(
                    "{}: input {:.4} bits/byte ({} bytes, header {}), public fragment {:.4} bits/byte ({} bytes, mode {})",
                    file.display(),
                    input_entropy,
                    data.len(),
                    p.split.head_len,
                    public_entropy,
                    body.len(),
                    mode.name()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

type Recovered = (Vec<u8>, Event, Option<String>);

fn recover_by_grant(
    v: &Vault,
    rid: RecordId,
    g: &[u8],
    ident: &Identity,
) -> Result<Recovered, (VaultError, Option<String>)> {
    let h = grant::peek(g).map_err(|e| (e, None))?;
    let gid = h.grant_hex();
    let tag = |e: VaultError| (e, Some(gid.clone()));
    if h.record_id != rid {
        return Err((
            VaultError::Malformed {
                what: "grant",
                offset: 24,
                reason: "the grant is for a different record",
            },
            Some(gid),
        ));
    }
    if v.is_revoked(&gid).map_err(tag)? {
        return Err(tag(VaultError::Revoked {
            grant_id: gid.clone(),
        }));
    }
    let (_, m) = grant::open(g, ident, now()).map_err(tag)?;
    let public = v.get_public(&rid).map_err(tag)?;
    let bytes = recover(&public, &m).map_err(|e| tag(e.into()))?;
    Ok((bytes, Event::Use, Some(gid)))
}
