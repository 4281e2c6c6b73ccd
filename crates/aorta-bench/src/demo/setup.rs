//! What the factory and the data owner set up before the demo runs: the
//! records to replay, the device registry and devices, the clinician, the
//! broker policy and the server's configuration.

use std::path::{Path, PathBuf};

use anyhow::Context;
use aorta_crypto::keys;
use aorta_crypto::results::ClinicianIdentity;
use aorta_device::dir::DeviceDir;
use aorta_enclave::attest::SimAttester;
use aorta_enclave::evidence::Measurement;
use aorta_registry::{PoolConfig, Registry};

use super::{ASSIGNMENT, DemoConfig, SUBSCRIBER};

/// The records to replay: the database's (an error if it lists none), or
/// the shipped sample (written into `work`) when there is none; true for
/// the sample.
pub(crate) fn records(cfg: &DemoConfig, work: &Path) -> anyhow::Result<(Vec<PathBuf>, bool)> {
    if let Some(db) = &cfg.db {
        let names = aorta_signal::wfdb::database_records(db)
            .with_context(|| format!("{} is not a WFDB database", db.display()))?;
        // A varied ward first (sinus rhythm, AF, ectopy, noise), then the rest.
        const FIRST: [&str; 8] = ["100", "203", "201", "208", "119", "105", "210", "106"];
        let recs: Vec<PathBuf> = FIRST
            .iter()
            .copied()
            .filter(|f| names.iter().any(|n| n == f))
            .chain(
                names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| !FIRST.contains(n)),
            )
            .map(|l| db.join(l))
            .collect();
        anyhow::ensure!(
            !recs.is_empty(),
            "{} is not a WFDB database: no RECORDS entry and no .hea file",
            db.display()
        );
        return Ok((recs, false));
    }
    let dir = work.join("sample");
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for s in &cfg.sample {
        std::fs::write(dir.join(format!("{}.hea", s.name)), s.header)?;
        std::fs::write(dir.join(format!("{}.dat", s.name)), s.signal)?;
        out.push(dir.join(s.name));
    }
    Ok((out, true))
}

/// Everything the factory and the data owner set up.
pub(crate) struct Setup {
    pub(crate) serials: Vec<String>,
    pub(crate) identity: ClinicianIdentity,
}

/// Provisions `cfg.devices` devices in `work` and writes the clinician's
/// identity, the policy admitting exactly `cfg.exe` as the worker, the
/// subscribers and the server's configuration.
pub(crate) fn setup(cfg: &DemoConfig, work: &Path) -> anyhow::Result<Setup> {
    let serials = provision(work, cfg.devices, "DEMO")?;
    // The clinician.
    let identity = ClinicianIdentity::generate()?;
    aorta_base::fs::write_private_new(
        &work.join("clinician.key"),
        identity.to_file_text().as_bytes(),
    )?;
    // The data owner's policy: this exact worker build, sim allowed for the
    // demo only, results sealed to the clinician.
    let platform = SimAttester::load_or_create(&work.join("sim-platform.key"))?;
    let binary =
        std::fs::read(&cfg.exe).with_context(|| format!("cannot measure {}", cfg.exe.display()))?;
    let m = Measurement::of_worker(&binary, b"");
    let devices_toml = serials
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        work.join("policy.toml"),
        format!(
            "# aorta demo: sim attestation is NOT hardware-protected; never allow it in production.\n\
             allowed_backends = [\"sim\"]\nallow_simulation = true\n\
             allowed_measurements = [\"{}\"]\nsim_platform_keys = [\"{}\"]\n\n\
             [[assignments]]\nname = \"{ASSIGNMENT}\"\ndevices = [{devices_toml}]\nsubscribers = [\"{SUBSCRIBER}\"]\n",
            m.to_hex(),
            aorta_base::hex::encode(&platform.platform_public_key())
        ),
    )?;
    std::fs::write(
        work.join("subscribers.toml"),
        format!(
            "# Subscribers' public keys (clinicians); results are sealed to them.\n[results]\n{SUBSCRIBER} = \"{}\"\n",
            aorta_base::hex::encode(identity.public().as_bytes())
        ),
    )?;
    std::fs::write(
        work.join("clinicians.toml"),
        format!(
            "# Clinicians who may read results: their authentication keys\n\
             # (`aorta clinician public --auth`).\n[clinicians]\n{SUBSCRIBER} = \"{}\"\n",
            aorta_base::hex::encode(&identity.auth_key()?.public())
        ),
    )?;
    std::fs::write(
        work.join("server.toml"),
        "listen = \"127.0.0.1:0\"\nbroker_listen = \"127.0.0.1:0\"\ndata_dir = \"server\"\n\
         registry = \"registry\"\npolicy = \"policy.toml\"\nsubscribers = \"subscribers.toml\"\n\
         clinicians = \"clinicians.toml\"\n",
    )?;
    Ok(Setup { serials, identity })
}

/// Factory: the registry in `work/registry` and `devices` devices
/// (`PREFIX-0001`, … in `work/devices/`), their secure elements verified
/// and their signing keys in the public directory.
pub(crate) fn provision(work: &Path, devices: usize, prefix: &str) -> anyhow::Result<Vec<String>> {
    let slice = keys::DEFAULT_SLICE_LEN;
    let reg = Registry::init(
        work.join("registry"),
        PoolConfig {
            pool_keys: u64::from(slice) * devices as u64,
            slice_len: slice,
        },
    )?;
    let mut serials = Vec::with_capacity(devices);
    for i in 0..devices {
        let serial = format!("{prefix}-{:04}", i + 1);
        let dir = DeviceDir::new(work.join("devices").join(&serial));
        let installed = dir.install_keys(reg.provision(&serial)?)?;
        reg.verify(&serial, &installed.commitment)?;
        reg.register_key(&serial, &installed.signing_public_key)?;
        serials.push(serial);
    }
    Ok(serials)
}

/// The commands that run each part of a set-up demo by hand, from its
/// directory: the file names are the ones [`super::run`] wrote there.
pub(crate) fn commands(record: &str) -> Vec<String> {
    vec![
        "aorta server --config server.toml".into(),
        format!(
            "aorta worker stream --backend sim --broker BROKER_ADDR --assignment {ASSIGNMENT} \\\n      --sim-platform-key sim-platform.key --server https://ADDR \\\n      --ca server/cert.pem --token-file server/worker.token"
        ),
        format!(
            "aorta device run --device devices/DEMO-0001 --record {record} \\\n      --server https://ADDR --ca server/cert.pem --speed 10"
        ),
        format!(
            "aorta results fetch --server https://ADDR --ca server/cert.pem \\\n      --identity clinician.key --subscriber {SUBSCRIBER} --allow-sim \\\n      --broker-key $(aorta broker public-key --signing-key server/broker-signing.key)"
        ),
    ]
}
