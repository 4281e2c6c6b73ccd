#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), with
# the test vectors under docs/vectors as the starting corpus. Needs the
# nightly toolchain; installs cargo-fuzz when it is missing. A crash stops
# the run and leaves its input under fuzz/artifacts/TARGET/.
#   bash tools/fuzz.sh [SECONDS] [TARGET...]
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
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  seed() { # PICK FILE: FILE behind a first byte PICK (which picks the format)
    local out="$corpus/seed-$1-$(basename "$2")"
    [ -e "$out" ] || { printf "\\x$(printf %02x "$1")"; head -c 65535 "$2"; } >"$out"
  }
  case "$t" in
    formats) # every binary test vector, behind each format choice
      while IFS= read -r -d '' f; do
        for pick in $(seq 0 27); do seed "$pick" "$f"; done
      done < <(find docs/vectors -type f ! -name '*.json' ! -name '*.md' ! -name '*.txt' -size -64k -print0) ;;
    directory) # the directory test vectors, as they are (no format byte)
      for f in docs/vectors/authentication/directory*.txt; do
        [ -e "$corpus/seed-$(basename "$f")" ] || cp "$f" "$corpus/seed-$(basename "$f")"
      done ;;
    wfdb) # the shipped sample record: header (pick 0) and signal (format picks)
      seed 0 crates/aorta-cli/assets/sample/100.hea
      if [ -f ../shared/data/mitdb/100.atr ]; then seed 1 ../shared/data/mitdb/100.atr; fi
      for pick in 2 5 8 11 14 17 20 23; do seed "$pick" crates/aorta-cli/assets/sample/100.dat; done ;;
  esac
  echo "== $t: ${secs} s"
  cargo +nightly fuzz run --fuzz-dir fuzz "$t" "$corpus" -- -max_total_time="$secs" -max_len=65536 2>&1 |
    grep -E '^(#[0-9]+ +DONE|==[0-9]+==|SUMMARY|Done [0-9]+ runs)' || true
  if compgen -G "fuzz/artifacts/$t/*-*" >/dev/null; then
    echo "$t failed: its input is in fuzz/artifacts/$t/"; exit 1
  fi
done
