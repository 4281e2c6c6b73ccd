#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), one
# after the other, each seeded from docs/vectors, the committed seeds under
# fuzz/seeds/TARGET and the project's real files (sample record, DICOM and
# Parquet fixtures, attestation quotes); see docs/fuzzing.md. Needs the
# nightly toolchain; installs cargo-fuzz when it is missing. For each target
# it prints one summary line (executions, libFuzzer's final coverage `cov`
# and features `ft`, corpus files); a crash stops the run (exit 1) and
# leaves its input under fuzz/artifacts/TARGET/.
#   bash tools/fuzz.sh [SECONDS] [TARGET...]
# FUZZ_LOG_DIR=DIR keeps each target's whole libFuzzer output in DIR/TARGET.log.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"
shift || true
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo +nightly install --locked cargo-fuzz
fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi
log_dir="${FUZZ_LOG_DIR:-}"
[ -z "$log_dir" ] || mkdir -p "$log_dir"
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus" "fuzz/artifacts/$t"
  seed() { # PICK FILE: FILE behind a first byte PICK (which picks the format)
    local out="$corpus/seed-$1-$(basename "$2")"
    [ -e "$out" ] || { printf "\\x$(printf %02x "$1")"; head -c 65535 "$2"; } >"$out"
  }
  copy() { # FILE...: each file as it is
    local f
    for f in "$@"; do
      [ -f "$f" ] || continue
      [ -e "$corpus/seed-$(basename "$f")" ] || head -c 65536 "$f" >"$corpus/seed-$(basename "$f")"
    done
  }
  # Committed seeds (already carrying their format byte where the target has one).
  if [ -d "fuzz/seeds/$t" ]; then copy fuzz/seeds/"$t"/*; fi
  case "$t" in
    formats) # every binary test vector, behind each format choice
      while IFS= read -r -d '' f; do
        for pick in $(seq 0 36); do seed "$pick" "$f"; done
      done < <(find docs/vectors -type f ! -name '*.json' ! -name '*.md' ! -name '*.txt' -size -64k -print0) ;;
    directory) # the directory test vectors, as they are (no format byte)
      copy docs/vectors/authentication/directory*.txt ;;
    wfdb) # the shipped sample record: header (pick 0) and signal (format picks)
      seed 0 crates/aorta-cli/assets/sample/100.hea
      if [ -f ../shared/data/mitdb/100.atr ]; then seed 1 ../shared/data/mitdb/100.atr; fi
      for pick in 2 5 8 11 14 17 20 23; do seed "$pick" crates/aorta-cli/assets/sample/100.dat; done ;;
    dicom) # real DICOM files in five transfer syntaxes
      copy tests/fixtures/dicom/*.dcm ;;
    rr_parquet) # aorta's and pyarrow's Parquet files
      copy crates/aorta-stream/tests/fixtures/*.parquet ;;
    attestation) # the sim evidence vector (pick 0)
      seed 0 docs/vectors/attestation/sim-evidence.bin ;;
  esac
  log="${log_dir:+$log_dir/$t.log}"
  log="${log:-$(mktemp)}"
  echo "== $t: ${secs} s from $(find "$corpus" -type f | wc -l) inputs"
  # nice: the campaign must not starve builds and tests sharing the machine.
  nice -n 19 cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" -- \
    -max_total_time="$secs" -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || true
  grep -E '^(==[0-9]+==|SUMMARY|thread .* panicked)' "$log" | head -20 || true
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 || true)
  runs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$log" | tail -1 || true)
  printf '%s: %s | %s | corpus %s files\n' "$t" "${runs:-no summary}" \
    "$(sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//; s/ lim:.*//' <<<"$done_line")" "$(find "$corpus" -type f | wc -l)"
  [ -n "$log_dir" ] || rm -f "$log"
  if compgen -G "fuzz/artifacts/$t/*-*" >/dev/null || [ -z "$runs" ]; then
    echo "$t failed: its input is in fuzz/artifacts/$t/ (or the target did not build)"; exit 1
  fi
done
