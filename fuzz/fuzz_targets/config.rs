//! Every TOML configuration aorta reads, picked by the first byte: the
//! server config (`aorta_server::http::ServerConfig`), the key broker's
//! policy, the broker's development key file and the server's subscribers
//! (clinicians) file (these two are read from a path, so the input is
//! written to a scratch file first), and the worker's stream config. Any
//! bytes give a configuration or a typed error, never a panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// A scratch file of this process (the fuzzer runs one input at a time).
fn scratch() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        std::env::temp_dir().join(format!("aorta-fuzz-config-{}.toml", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest);
    match pick % 5 {
        0 => {
            if let Ok(t) = text {
                let _ =
                    aorta_server::http::ServerConfig::from_toml_str(t, Path::new("server.toml"));
            }
        }
        1 => {
            if let Ok(t) = text {
                let _ = aorta_server::broker::policy::Policy::from_toml_str(t);
            }
        }
        2 => {
            let _ = aorta_worker::config::StreamConfig::parse(rest);
        }
        3 => {
            if std::fs::write(scratch(), rest).is_ok() {
                let _ = aorta_server::http::api::load_clinicians(scratch());
            }
        }
        _ => {
            if std::fs::write(scratch(), rest).is_ok() {
                let _ = aorta_server::broker::MemoryKeySource::from_toml_file(scratch());
            }
        }
    }
});
