#!/usr/bin/env python3
"""pyarrow's view of aorta's RR Parquet files (issue 6, `aorta bench rr-stream`).

  fixture DIR   write DIR/rr-pyarrow.parquet with pyarrow's defaults (nullable
                columns, Snappy, dictionary pages, format 2.6), several row
                groups, columns in a different order from aorta's writer,
                and DIR/rr-pyarrow.expected.csv holding the same rows
                (Python's shortest round-trip float repr), for the Rust test
                `pyarrow_written_fixture_reads_exactly`.
  check FILE... exit 0 iff every FILE has exactly the schema
                patient_id int32, event_time timestamp[us, tz=UTC], rr_ms double,
                and print its row count.

Needs `pip install pyarrow`. Not run in CI: the fixture is committed.
"""
import sys


def fixture(out_dir):
    import os
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    # Deterministic xorshift so the fixture is reproducible without numpy.
    x = 0x2545F4914F6CDD1D
    t = [1_767_225_600_000_000 + 1000 * p for p in range(7)]
    rows = []
    for i in range(1500):
        x ^= (x << 13) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 7
        x ^= (x << 17) & 0xFFFFFFFFFFFFFFFF
        p = x % 7
        # Full-precision doubles (not rounded), so the test checks exact bits.
        rr = 600.0 + (x % 400_000_000) / 1e6 + 1.0 / 3.0
        t[p] += int(rr * 1000)
        rows.append((-p if p == 6 else p, t[p], rr))  # one negative patient id
    rows.sort(key=lambda r: r[1])
    table = pa.table(
        {
            "event_time": pa.array([r[1] for r in rows], pa.timestamp("us", tz="UTC")),
            "rr_ms": pa.array([r[2] for r in rows], pa.float64()),
            "patient_id": pa.array([r[0] for r in rows], pa.int32()),
        }
    )
    pq.write_table(table, os.path.join(out_dir, "rr-pyarrow.parquet"), row_group_size=400)
    with open(os.path.join(out_dir, "rr-pyarrow.expected.csv"), "w") as f:
        f.write("patient_id,event_time,rr_ms\n")
        for p, ts, rr in rows:
            f.write(f"{p},{ts},{rr!r}\n")
    print(f"wrote {len(rows)} rows to {out_dir}")


def check(files):
    import pyarrow as pa
    import pyarrow.parquet as pq

    want = [
        ("patient_id", pa.int32()),
        ("event_time", pa.timestamp("us", tz="UTC")),
        ("rr_ms", pa.float64()),
    ]
    ok = True
    for path in files:
        schema = pq.read_schema(path)
        got = [(f.name, f.type) for f in schema]
        rows = pq.ParquetFile(path).metadata.num_rows
        if got != want:
            print(f"{path}: schema {got} != {want}")
            ok = False
        else:
            print(f"{path}: ok, {rows} rows, schema {got}")
    return ok


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "fixture":
        fixture(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "check":
        sys.exit(0 if check(sys.argv[2:]) else 1)
    else:
        print(__doc__)
        sys.exit(2)
