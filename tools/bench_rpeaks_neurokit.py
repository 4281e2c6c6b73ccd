#!/usr/bin/env python3
"""Time NeuroKit2's default R-peak detector (`ecg_peaks`, method "neurokit",
which also cleans the signal first, as NeuroKit2 does by default) on one
WFDB record's first lead, and print samples per second as JSON.

Usage: python3 tools/bench_rpeaks_neurokit.py RECORD_PATH [REPEATS]
Needs: pip install neurokit2 wfdb
"""
import json
import sys
import time

import neurokit2 as nk
import wfdb

path = sys.argv[1]
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
rec = wfdb.rdrecord(path, channels=[0])
x = rec.p_signal[:, 0]
fs = rec.fs
best = float("inf")
for _ in range(repeats):
    t0 = time.perf_counter()
    cleaned = nk.ecg_clean(x, sampling_rate=fs)
    _, info = nk.ecg_peaks(cleaned, sampling_rate=fs)
    best = min(best, time.perf_counter() - t0)
print(json.dumps({
    "tool": "neurokit2 " + nk.__version__,
    "record": path,
    "samples": int(len(x)),
    "seconds": best,
    "samples_per_s": len(x) / best,
    "beats": int(len(info["ECG_R_Peaks"])),
}))
