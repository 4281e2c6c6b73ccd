#!/usr/bin/env python3
"""The Spark baseline of issue 6's RR job (`aorta bench rr-stream`), measured.

Vanilla Spark Structured Streaming (pyspark from PyPI, `pip install
pyspark==4.0.1 pandas pyarrow scipy`; Java 17) over the same Parquet directory
aorta reads (`aorta bench rr-stream --input DIR --patients N` writes it):

  readStream.parquet(DIR)  (one file per micro-batch, trigger availableNow)
  -> withWatermark(event_time, 0 s)
  -> groupBy(window(event_time, 5 min), patient_id)
     agg count, mean, stddev_samp (SDNN), time-sorted rr list
  -> append mode, foreachBatch: RMSSD, LF, HF, LF/HF per window in a pandas UDF
     (mapInPandas): RR resampled at 4 Hz (quadratic spline, as NeuroKit2's
     interp1d), Welch (Hann, 50 % overlap, nperseg about half the window,
     nfft 2*nperseg, density), bands integrated by the trapezoid rule.

Prints events/s as JSON (`events`, `windows`, `events_per_s`, `seconds`), with
the same meaning as aorta's: events read / wall-clock seconds from the start
of the query to its end (the Spark session's start-up is not counted).

Limitation (Spark's, stated): in append mode a window is emitted only once
the watermark passes its end; the watermark ends at the largest event time
read, so the windows still open then (those ending after the last event)
are never emitted, and `windows` is somewhat lower than aorta's (aorta
flushes every window at the end of its input).

Usage: python3 tools/spark_rr_baseline.py DIR [--cores 2] [--simple] [--local-dir D]
  --simple  count / mean / SDNN only (no pandas UDF), as the issue's 0.56 M/s figure.
Not part of CI.
"""
import argparse
import json
import os
import shutil
import tempfile
import time


def window_metrics(pdf_iter):
    import numpy as np
    import pandas as pd
    from scipy.interpolate import interp1d
    from scipy.signal import welch

    def one(times_us, rr):
        n = len(rr)
        nan = float("nan")
        rmssd = float(np.sqrt(np.sum(np.diff(rr) ** 2) / (n - 1))) if n > 1 else nan
        if n < 4:
            return rmssd, nan, nan, nan
        t = (times_us - times_us[0]) / 1e6
        grid = np.arange(t[0], t[-1] + 0.25, 0.25)
        f = interp1d(t, rr, kind="quadratic", bounds_error=False, fill_value=(rr[0], rr[-1]))
        x = f(grid)
        x = x - x.mean()
        fs = 4.0
        min_f = 2 * fs / (len(x) / 2)
        nperseg = min(int(2 / min_f * fs), len(x) // 2)
        if nperseg < 2:
            return rmssd, nan, nan, nan
        freq, psd = welch(x, fs=fs, window="hann", nperseg=nperseg, noverlap=nperseg // 2,
                          nfft=2 * nperseg, detrend=False, scaling="density", average="mean")
        keep = (freq >= min_f) & (freq <= 0.5)
        freq, psd = freq[keep], psd[keep]

        def band(lo, hi):
            m = (freq >= lo) & (freq < hi)
            if m.sum() < 2:
                return nan
            v = float(np.trapezoid(psd[m], freq[m]))
            return v if v != 0 else nan

        lf, hf = band(0.04, 0.15), band(0.15, 0.4)
        return rmssd, lf, hf, lf / hf

    for pdf in pdf_iter:
        out = [one(np.asarray(ts, dtype="int64"), np.asarray(rr, dtype="float64"))
               for ts, rr in zip(pdf["ts"], pdf["rr"])]
        res = pd.DataFrame(out, columns=["rmssd", "lf", "hf", "lf_hf"])
        res.insert(0, "patient_id", pdf["patient_id"].values)
        res.insert(1, "count", pdf["count"].values)
        yield res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--simple", action="store_true")
    ap.add_argument("--memory", default="8g")
    ap.add_argument("--local-dir", default=tempfile.gettempdir(),
                    help="Spark's shuffle/spill directory and the query checkpoint (e.g. /dev/shm)")
    a = ap.parse_args()

    # Everything stays on this machine's loopback.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession, functions as F
    from pyspark.sql.types import (DoubleType, IntegerType, StructField, StructType,
                                   TimestampType, LongType)

    spark = (SparkSession.builder.master(f"local[{a.cores}]")
             .appName("aorta-rr-baseline")
             .config("spark.driver.memory", a.memory)
             .config("spark.sql.shuffle.partitions", str(a.cores * 2))
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.local.dir", a.local_dir)
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    schema = StructType([
        StructField("patient_id", IntegerType(), False),
        StructField("event_time", TimestampType(), False),
        StructField("rr_ms", DoubleType(), False),
    ])
    events = (spark.readStream.schema(schema).option("maxFilesPerTrigger", 1)
              .parquet(os.path.abspath(a.dir)))
    aggs = [F.count("*").alias("count"), F.mean("rr_ms").alias("mean_rr"),
            F.stddev_samp("rr_ms").alias("sdnn")]
    if not a.simple:
        aggs.append(F.array_sort(F.collect_list(F.struct("event_time", "rr_ms"))).alias("ev"))
    windows = (events.withWatermark("event_time", "0 seconds")
               .groupBy(F.window("event_time", "5 minutes"), "patient_id").agg(*aggs))

    totals = {"windows": 0, "batches": 0}
    out_schema = StructType([
        StructField("patient_id", IntegerType()), StructField("count", LongType()),
        StructField("rmssd", DoubleType()), StructField("lf", DoubleType()),
        StructField("hf", DoubleType()), StructField("lf_hf", DoubleType()),
    ])

    def per_batch(bdf, _batch_id):
        if a.simple:
            # Forces every aggregate: count the windows and sum the SDNNs.
            row = bdf.agg(F.count("*").alias("n"), F.sum("sdnn").alias("s")).collect()[0]
        else:
            spectral = (bdf.select("patient_id", "count",
                                   F.expr("transform(ev, e -> unix_micros(e.event_time))").alias("ts"),
                                   F.col("ev.rr_ms").alias("rr"))
                        .mapInPandas(window_metrics, out_schema))
            row = spectral.agg(F.count("*").alias("n"), F.sum("lf_hf").alias("s")).collect()[0]
        totals["windows"] += row["n"]
        totals["batches"] += 1

    ckpt = tempfile.mkdtemp(prefix="aorta-spark-rr-", dir=a.local_dir)
    try:
        t0 = time.time()
        q = (windows.writeStream.outputMode("append").foreachBatch(per_batch)
             .option("checkpointLocation", ckpt).trigger(availableNow=True).start())
        q.awaitTermination()
        seconds = time.time() - t0
        n_events = sum(p["numInputRows"] for p in q.recentProgress)
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    print(json.dumps({
        "engine": f"Spark {spark.version} Structured Streaming, local[{a.cores}]",
        "job": "count/mean/SDNN" if a.simple else "count/mean/SDNN/RMSSD/LF/HF/LF-HF (pandas UDF)",
        "events": n_events, "windows": totals["windows"], "batches": totals["batches"],
        "events_per_s": n_events / seconds, "seconds": seconds,
    }, indent=2))
    spark.stop()


if __name__ == "__main__":
    main()
