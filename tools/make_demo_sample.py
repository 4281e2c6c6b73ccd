#!/usr/bin/env python3
"""Cut the demo's fallback sample from MIT-BIH (ODC-By 1.0, PhysioNet).

`aorta demo` replays ../shared/data/mitdb; when that folder is absent it uses
the excerpts this script writes to crates/aorta-cli/assets/sample/ (embedded
in the binary): the first SECONDS of records 100 (sinus rhythm) and 203
(atrial fibrillation/flutter, ventricular ectopy), format 212 cut at a frame
boundary, with the header's sample count, initial values and checksums
recomputed so the excerpt verifies like any WFDB record.

usage: python3 tools/make_demo_sample.py [../shared/data/mitdb] [SECONDS]
"""
import os
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/mitdb"
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 360
OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "aorta-cli", "assets", "sample")


def decode212(b):
    """Two 12-bit two's-complement samples per 3 bytes, interleaved channels."""
    out = []
    for i in range(0, len(b) - 2, 3):
        a, m, c = b[i], b[i + 1], b[i + 2]
        s0 = a | ((m & 0x0F) << 8)
        s1 = c | ((m & 0xF0) << 4)
        out.extend(v - 4096 if v >= 2048 else v for v in (s0, s1))
    return out


def signed16(x):
    x &= 0xFFFF
    return x - 65536 if x >= 32768 else x


for rec in ("100", "203"):
    lines = open(os.path.join(SRC, rec + ".hea")).read().splitlines()
    name, nsig, fs, _ = lines[0].split()[:4]
    nsig, fs = int(nsig), float(fs)
    assert nsig == 2
    n = int(SECONDS * fs)
    raw = open(os.path.join(SRC, rec + ".dat"), "rb").read()[: n * 3]
    samples = decode212(raw)
    assert len(samples) == 2 * n
    chans = [samples[0::2], samples[1::2]]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, rec + ".dat"), "wb") as f:
        f.write(raw)
    head = [f"{name} {nsig} {lines[0].split()[2]} {n}"]
    for k, line in enumerate(lines[1 : 1 + nsig]):
        p = line.split()
        p[5] = str(chans[k][0])
        p[6] = str(signed16(sum(chans[k])))
        head.append(" ".join(p))
    head.append(f"# first {SECONDS} s of MIT-BIH Arrhythmia Database record {rec} (PhysioNet, ODC-By 1.0)")
    with open(os.path.join(OUT, rec + ".hea"), "w") as f:
        f.write("\n".join(head) + "\n")
    print(rec, n, "samples per signal")
