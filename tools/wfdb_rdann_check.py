#!/usr/bin/env python3
"""Reads a WFDB annotation file with wfdb-python's rdann and summarises it.

Usage: wfdb_rdann_check.py RECORD_PATH ANNOTATOR

RECORD_PATH is the record without extension (its header RECORD_PATH.hea is
read too, for the sampling frequency and the base time). Prints one JSON
line: {"fs", "n", "symbols": {symbol: count}, "aux": [[sample, symbol, aux],
... for annotations with aux text], "base_time", "base_date", "samples":
[first, last]}. Exit 0, or 1 with the error.
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    import wfdb

    rec, ext = sys.argv[1], sys.argv[2]
    ann = wfdb.rdann(rec, ext)
    hdr = wfdb.rdheader(rec)
    symbols = {}
    for s in ann.symbol:
        symbols[s] = symbols.get(s, 0) + 1
    aux = [
        [int(ann.sample[i]), ann.symbol[i], ann.aux_note[i]]
        for i in range(len(ann.sample))
        if ann.aux_note[i]
    ]
    out = {
        "fs": float(hdr.fs),
        "ann_fs": None if ann.fs is None else float(ann.fs),
        "n": len(ann.sample),
        "symbols": symbols,
        "aux": aux,
        "base_time": None if hdr.base_time is None else str(hdr.base_time),
        "base_date": None if hdr.base_date is None else str(hdr.base_date),
        "samples": [int(ann.sample[0]), int(ann.sample[-1])] if len(ann.sample) else [],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
