#!/usr/bin/env python3
"""Reference outputs of the Python `wfdb` package (PhysioNet's WFDB for Python)
for `aorta wfdb info` / `aorta wfdb export`, saved as test fixtures.

Usage (from the repository root, with `pip install wfdb` in a virtualenv):

    python tools/wfdb_reference.py ../shared/data crates/aorta-cli/tests/fixtures/wfdb

For each record below it writes `NAME.json`: the header fields as
`wfdb.rdheader` reads them, the first ROWS and the last TAIL samples in physical units as
`wfdb.rdrecord(...).p_signal` gives them, and (where the record has an `.atr`)
the first ANNS annotations as `wfdb.rdann` reads them. The tests in
`crates/aorta-cli/tests/cli_wfdb.rs` compare aorta's output with these.
"""
import json
import os
import re
import sys

import wfdb

RECORDS = ["mitdb/100", "mitdb/208", "challenge-2017/A00001"]
ROWS = 400
TAIL = 5
ANNS = 40


def reference(data, rec):
    path = os.path.join(data, rec)
    h = wfdb.rdheader(path)
    r = wfdb.rdrecord(path, sampto=ROWS)
    tail = wfdb.rdrecord(path, sampfrom=h.sig_len - TAIL)
    out = {
        "record": rec,
        "wfdb_version": wfdb.__version__,
        "record_name": h.record_name,
        "n_sig": h.n_sig,
        "fs": h.fs,
        "sig_len": h.sig_len,
        "base_time": None if h.base_time is None else str(h.base_time),
        "comments": h.comments,
        "signals": [
            {
                "file_name": h.file_name[i],
                "fmt": int(h.fmt[i]),
                "adc_gain": h.adc_gain[i],
                "baseline": h.baseline[i],
                "units": h.units[i],
                "adc_res": h.adc_res[i],
                "adc_zero": h.adc_zero[i],
                "init_value": h.init_value[i],
                "checksum": h.checksum[i],
                "sig_name": h.sig_name[i],
            }
            for i in range(h.n_sig)
        ],
        "p_signal": [[float(v) for v in row] for row in r.p_signal],
        "p_signal_tail": [[float(v) for v in row] for row in tail.p_signal],
    }
    if os.path.exists(path + ".atr"):
        a = wfdb.rdann(path, "atr", sampto=None)
        out["annotations"] = [
            {
                "sample": int(a.sample[i]),
                "symbol": a.symbol[i],
                "subtype": int(a.subtype[i]),
                "chan": int(a.chan[i]),
                "num": int(a.num[i]),
                "aux": a.aux_note[i],
            }
            for i in range(min(ANNS, len(a.sample)))
        ]
    return out


def main():
    data, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    for rec in RECORDS:
        ref = reference(data, rec)
        name = rec.replace("/", "_")
        text = json.dumps(ref, indent=1)
        # One line per sample row: [-0.145, -0.065].
        text = re.sub(
            r"\[\s+(-?[\d.e+-]+(?:,\s+-?[\d.e+-]+)*)\s+\]",
            lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]",
            text,
        )
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            f.write(text + "\n")
        print(f"{rec}: {len(ref['p_signal'])} rows, {len(ref.get('annotations', []))} annotations")


if __name__ == "__main__":
    main()
