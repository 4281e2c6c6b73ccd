#!/usr/bin/env python3
"""Build NeuroKit2 reference values for aorta's HRV agreement test.

For a few MIT-BIH records, take the reference beat annotations (`.atr`) in
5-minute windows, build the normal-to-normal (NN) series exactly as
`aorta_signal::hrv::NnSeries::from_beats` does (an interval counts only when
both of its beats are labelled N, L or R; artefact filter OFF so both sides see
the identical series), run NeuroKit2's `hrv_time`, `hrv_frequency` (Welch on
RR resampled at 4 Hz, absolute power: `interpolation_rate=4, normalize=False`)
and `hrv_nonlinear`, and write everything as one JSON fixture.

Not run in CI: the fixture is committed. Re-run with

    pip install neurokit2 wfdb
    python3 tools/hrv_reference.py --db ../shared/data/mitdb \
        --out crates/aorta-signal/tests/fixtures/hrv/neurokit_mitdb.json
"""

import argparse
import json
import platform
import warnings

import numpy as np
import neurokit2 as nk
import scipy
import wfdb

# Beat symbols whose intervals count as normal-to-normal (sinus-conducted
# beats, including bundle-branch-block morphology).
NORMAL = {"N", "L", "R"}
# The 15 beat symbols of ANSI/AAMI EC57 (see shared/data/README.md).
BEATS = set("NLRejAaJSVEF/fQ")

# (record, window start in seconds); each window lasts 300 s.
WINDOWS = [
    ("100", 300),
    ("100", 1200),
    ("103", 300),
    ("113", 300),
    ("116", 300),
    ("118", 300),
    ("119", 300),
    ("122", 600),
    ("201", 300),
    ("210", 900),
]
WINDOW_S = 300

TIME_KEYS = ["MeanNN", "SDNN", "RMSSD", "SDSD", "pNN50", "pNN20", "MinNN", "MaxNN", "HTI", "TINN"]
FREQ_KEYS = ["ULF", "VLF", "LF", "HF", "VHF", "TP", "LFHF", "LFn", "HFn"]
NONLIN_KEYS = ["SD1", "SD2", "SD1SD2", "SampEn", "DFA_alpha1", "DFA_alpha2"]


def clean(v):
    v = float(v)
    return v if np.isfinite(v) else None


def window(db, record, start_s):
    ann = wfdb.rdann(f"{db}/{record}", "atr")
    fs = float(ann.fs)
    lo, hi = start_s * fs, (start_s + WINDOW_S) * fs
    beats = [(int(s), sym) for s, sym in zip(ann.sample, ann.symbol) if sym in BEATS and lo <= s < hi]
    samples = [s for s, _ in beats]
    symbols = "".join(sym for _, sym in beats)
    nn, t = [], []
    for (s0, a), (s1, b) in zip(beats, beats[1:]):
        if a in NORMAL and b in NORMAL:
            nn.append((s1 - s0) / fs * 1000.0)
            t.append(s1 / fs)
    return fs, samples, symbols, nn, t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="MIT-BIH directory (with NNN.atr)")
    ap.add_argument("--out", required=True, help="fixture JSON to write")
    args = ap.parse_args()

    out = {
        "generator": "tools/hrv_reference.py",
        "neurokit2_version": nk.__version__,
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "python_version": platform.python_version(),
        "normal_symbols": "".join(sorted(NORMAL)),
        "neurokit_calls": {
            "time": "nk.hrv_time({'RRI': nn_ms, 'RRI_Time': nn_time_s})",
            "frequency": "nk.hrv_frequency({...}, psd_method='welch', interpolation_rate=4, normalize=False)",
            "nonlinear": "nk.hrv_nonlinear({...})",
        },
        "windows": [],
    }
    for record, start in WINDOWS:
        fs, samples, symbols, nn, t = window(args.db, record, start)
        peaks = {"RRI": np.array(nn), "RRI_Time": np.array(t)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ht = nk.hrv_time(peaks)
            hf = nk.hrv_frequency(peaks, psd_method="welch", interpolation_rate=4, normalize=False)
            hn = nk.hrv_nonlinear(peaks)
        ref = {}
        for frame, keys in ((ht, TIME_KEYS), (hf, FREQ_KEYS), (hn, NONLIN_KEYS)):
            for k in keys:
                ref[k] = clean(frame["HRV_" + k].iloc[0])
        out["windows"].append(
            {
                "record": record,
                "start_s": start,
                "end_s": start + WINDOW_S,
                "fs": fs,
                "beat_samples": samples,
                "beat_symbols": symbols,
                "nn_ms": nn,
                "nn_time_s": t,
                "neurokit": ref,
            }
        )
        print(f"{record} [{start}, {start + WINDOW_S}) s: {len(samples)} beats, {len(nn)} NN")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
