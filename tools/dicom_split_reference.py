#!/usr/bin/env python3
"""Reference split points for the DICOM fixtures, computed with pydicom
(`pip install pydicom`), saved as tests/fixtures/dicom/split_reference.json
and checked by crates/aorta-crypto/tests/dicom_split.rs (CI needs no pydicom).

For each fixture: file size, transfer syntax, the offset where the file meta
group ends and the file offset of the top-level Pixel Data value (null when
there is none or the data set is deflated). Run from the repository root:

    python3 tools/dicom_split_reference.py
"""
import json
import os
from pathlib import Path

import pydicom
from pydicom.filereader import data_element_generator

DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"


def main():
    d = Path("tests/fixtures/dicom")
    out = {}
    for f in sorted(p for p in d.iterdir() if p.suffix == ".dcm"):
        with open(f, "rb") as fp:
            fp.seek(128 + 4)
            meta = pydicom.filereader._read_file_meta_info(fp)
            meta_end = fp.tell()
            ts = str(meta.TransferSyntaxUID)
            tell = None
            if ts != DEFLATED:
                for el in data_element_generator(fp, ts == IMPLICIT_LE, ts != EXPLICIT_BE, defer_size=None):
                    if el.tag == 0x7FE00010:
                        tell = el.value_tell
                        break
        out[f.name] = {
            "size": os.path.getsize(f),
            "transfer_syntax": ts,
            "meta_end": meta_end,
            "pixel_data_value_offset": tell,
        }
    (d / "split_reference.json").write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
