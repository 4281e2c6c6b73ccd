#!/usr/bin/env python3
"""Time NeuroKit2's HRV on the window aorta's `benches/hrv.rs` uses.

MIT-BIH record 100, 300-600 s, NN = intervals between two N/L/R reference
beats (384 NN). Prints the median wall time per call of NeuroKit2's
`hrv_time`, `hrv_frequency` (Welch, 4 Hz, absolute power, as aorta),
`hrv_nonlinear`, their sum, and `nk.hrv` with its defaults. Run it in the
same session as `cargo bench -p aorta-signal --bench hrv` to compare:

    pip install neurokit2 wfdb
    python3 tools/bench_hrv_neurokit.py --db ../shared/data/mitdb [--repeat 15]
"""

import argparse
import statistics
import time
import warnings

import neurokit2 as nk
import numpy as np
import wfdb

NORMAL = set("NLR")
BEATS = set("NLRejAaJSVEF/fQ")


def nn_window(db, record="100", start=300, length=300):
    ann = wfdb.rdann(f"{db}/{record}", "atr")
    fs = float(ann.fs)
    lo, hi = start * fs, (start + length) * fs
    beats = [(int(s), y) for s, y in zip(ann.sample, ann.symbol) if y in BEATS and lo <= s < hi]
    nn, t = [], []
    for (s0, a), (s1, b) in zip(beats, beats[1:]):
        if a in NORMAL and b in NORMAL:
            nn.append((s1 - s0) / fs * 1000.0)
            t.append(s1 / fs)
    return {"RRI": np.array(nn), "RRI_Time": np.array(t)}


def timed(fn, repeat):
    fn()  # warm-up (imports, caches)
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    peaks = nn_window(args.db)
    print(f"NeuroKit2 {nk.__version__}; record 100, 300-600 s, {len(peaks['RRI'])} NN")
    warnings.simplefilter("ignore")
    rows = [
        ("hrv_time", lambda: nk.hrv_time(peaks)),
        (
            "hrv_frequency (welch, 4 Hz)",
            lambda: nk.hrv_frequency(peaks, psd_method="welch", interpolation_rate=4, normalize=False),
        ),
        ("hrv_nonlinear", lambda: nk.hrv_nonlinear(peaks)),
        ("nk.hrv (defaults)", lambda: nk.hrv(peaks)),
    ]
    total = 0.0
    for name, fn in rows:
        ms = timed(fn, args.repeat)
        if name != "nk.hrv (defaults)":
            total += ms
        print(f"{name:<30} {ms:10.3f} ms (median of {args.repeat})")
    print(f"{'time + frequency + nonlinear':<30} {total:10.3f} ms")


if __name__ == "__main__":
    main()
