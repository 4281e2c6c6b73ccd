//! `aorta factory …`: the key pool, the key registry and device provisioning.

use std::path::PathBuf;
use std::process::ExitCode;

use aorta_crypto::keys;
use aorta_device::DeviceDir;
use aorta_registry::{PoolConfig, Registry, RegistryError};

/// `aorta factory` subcommands.
#[derive(clap::Subcommand)]
pub enum FactoryCmd {
    /// Create a new master key pool (system CSPRNG) and an empty key registry.
    Init {
        /// Registry directory (created; must not hold a registry yet).
        #[arg(long)]
        registry: PathBuf,
        /// Keys in the pool (default: 1024 devices × 120 keys).
        #[arg(long, default_value_t = 1024 * 120, value_parser = crate::args::int(u64::from(aorta_crypto::keys::GROUP_LEN), aorta_registry::MAX_POOL_KEYS))]
        pool_keys: u64,
        /// Keys per device.
        #[arg(long, default_value_t = keys::DEFAULT_SLICE_LEN, value_parser = crate::args::int(aorta_crypto::keys::GROUP_LEN, u16::MAX))]
        slice_len: u16,
    },
    /// Give a device the next slice of the pool: write its key store (file
    /// backend), read it back as the assembled device would, and verify its
    /// commitment against the registry.
    Provision {
        /// Registry directory.
        #[arg(long)]
        registry: PathBuf,
        /// Device serial number ([A-Za-z0-9._-], at most 64 characters).
        #[arg(long)]
        serial: String,
        /// Device directory to create (holds `se.key`; the rotation state is written beside it).
        #[arg(long)]
        out: PathBuf,
    },
    /// Retire a device: its frames are refused from the next directory
    /// check on (ingest re-reads the directory), and the broker releases
    /// none of its keys. A replacement device gets a new serial.
    Revoke {
        /// Registry directory.
        #[arg(long)]
        registry: PathBuf,
        /// Device serial number.
        serial: String,
    },
    /// Print the public device directory (serial, status, key-slice
    /// length, smallest max_key_uses, signing public key; no key material),
    /// the file `aorta server` authenticates devices with.
    Directory {
        /// Registry directory.
        #[arg(long)]
        registry: PathBuf,
    },
}

pub fn run(cmd: FactoryCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        FactoryCmd::Revoke { registry, serial } => {
            let reg = Registry::open(&registry)?;
            match reg.revoke(&serial) {
                Ok(()) => {
                    outln!(
                        "device {serial}: revoked ({} updated; ingest refuses its frames from its next check)",
                        reg.directory_path().display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ RegistryError::UnknownSerial { .. }) => {
                    eprintln!("refused: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
        FactoryCmd::Directory { registry } => {
            let reg = Registry::open(&registry)?;
            out!("{}", reg.directory()?.to_text());
            Ok(ExitCode::SUCCESS)
        }
        FactoryCmd::Init {
            registry,
            pool_keys,
            slice_len,
        } => {
            let reg = Registry::init(
                &registry,
                PoolConfig {
                    pool_keys,
                    slice_len,
                },
            )?;
            outln!(
                "registry {}: pool of {} keys, {} keys per device ({} devices); keys wrapped under {}/kek",
                registry.display(),
                reg.pool_keys()?,
                slice_len,
                reg.pool_keys()? / u64::from(slice_len.max(1)),
                registry.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        FactoryCmd::Provision {
            registry,
            serial,
            out,
        } => {
            let reg = Registry::open(&registry)?;
            let dir = DeviceDir::new(out);
            dir.ensure_no_key_store()?;
            let slice = match reg.provision(&serial) {
                Ok(s) => s,
                Err(
                    e @ (RegistryError::AlreadyProvisioned { .. }
                    | RegistryError::Overlap { .. }
                    | RegistryError::PoolExhausted { .. }),
                ) => {
                    eprintln!("refused: {e}");
                    return Ok(ExitCode::from(1));
                }
                Err(e) => return Err(e.into()),
            };
            // Assembly check: the device reads its keys back and sends the
            // commitment with the serial.
            let installed = dir.install_keys(slice)?;
            match reg.verify(&serial, &installed.commitment) {
                Ok(()) => {
                    reg.register_key(&serial, &installed.signing_public_key)?;
                    let info = reg.device(&serial)?;
                    outln!(
                        "device {serial}: keys {}..{} of the pool, key store {}, verified; signing key {} in {}",
                        info.offset,
                        info.offset + u64::from(info.slice_len),
                        dir.se().display(),
                        aorta_base::hex::encode(&installed.signing_public_key),
                        reg.directory_path().display()
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ RegistryError::CommitmentMismatch { .. }) => {
                    eprintln!("refused: {e}");
                    Ok(ExitCode::from(1))
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}
