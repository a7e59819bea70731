"""Issue 11's Q1 and Q3 on PySpark Structured Streaming, for scripts/bench-file.sh --pyspark.

    python3 scripts/bench_pyspark.py q1|q3 INPUT_DIR OUTPUT_DIR

The same queries as Tidewatch runs: readStream of the NDJSON files (schema given, no
inference), event time from the `ts` milliseconds, a 5 s watermark, tumbling 1-minute windows
per series (count, sum, mean, min, max, stddev, first, last by arrival), for Q3 after
dropDuplicatesWithinWatermark on the id; written as JSON files in append mode, the whole input
at once (trigger availableNow). Local mode on every core (local[*]), default shuffle partitions
lowered to the core count, as one would for a single machine.

Prints `timed <seconds>`: the query alone, from start() to the end of processing, without the
JVM's start (the script's whole run time, which bench-file.sh prints, includes it); then
`windows <n>`, the rows written.
"""

import sys
import time

from pyspark.sql import SparkSession, functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType


def main() -> None:
    query, source, target = sys.argv[1], sys.argv[2], sys.argv[3]
    spark = (
        SparkSession.builder.master("local[*]")
        .appName(f"tidewatch-{query}")
        .config("spark.sql.shuffle.partitions", str(spark_cores()))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    schema = StructType(
        [
            StructField("ts", LongType()),
            StructField("series", StringType()),
            StructField("value", DoubleType()),
            StructField("id", StringType()),
        ]
    )
    events = (
        spark.readStream.schema(schema)
        .json(source)
        .withColumn("event_time", F.timestamp_millis("ts"))
        .withWatermark("event_time", "5 seconds")
    )
    if query == "q3":
        events = events.dropDuplicatesWithinWatermark(["id"])
    windows = events.groupBy(F.window("event_time", "1 minute"), "series").agg(
        F.count("*").alias("count"),
        F.sum("value").alias("sum"),
        F.avg("value").alias("mean"),
        F.min("value").alias("min"),
        F.max("value").alias("max"),
        F.stddev("value").alias("stddev"),
        F.first("value").alias("first"),
        F.last("value").alias("last"),
    )
    started = time.monotonic()
    running = (
        windows.writeStream.format("json")
        .outputMode("append")
        .option("path", target)
        .option("checkpointLocation", target + "-checkpoint")
        .trigger(availableNow=True)
        .start()
    )
    running.awaitTermination()
    print(f"timed {time.monotonic() - started:.2f} s", flush=True)
    # Append mode emits a window once the watermark passes its end: the last minute of each
    # series stays open when the input ends (Tidewatch's --once closes it).
    print(f"windows {spark.read.json(target).count()}", flush=True)
    spark.stop()


def spark_cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
