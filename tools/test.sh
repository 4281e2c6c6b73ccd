#!/usr/bin/env bash
# aorta's whole test suite — the command the README gives and CI runs.
# It installs what the tests need when it is missing, so a fresh machine passes too.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

# --- system packages the tests need (installed only when missing) -----------
apt_needed=()
# (each issue appends the packages its tests use; see the blocks below)
# --- issue 3 (device keys): SoftHSM2 for the PKCS#11 secure-element tests ---
if ! ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*/softhsm/libsofthsm2.so >/dev/null 2>&1; then
  apt_needed+=(softhsm2)
fi
# --- end issue 3 ---
if [ "${#apt_needed[@]}" -gt 0 ]; then
  log "installing ${apt_needed[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${apt_needed[@]}" >/dev/null
fi

# --- Rust checks --------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo test (workspace)"
cargo test --workspace
