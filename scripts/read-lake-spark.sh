#!/usr/bin/env bash
# Reads a Tidewatch Parquet lake with PySpark, as a Spark user would: prints each record kind's
# schema (timestamps, signed counts, the window kind beside the record directory) and row
# counts per kind, and window counts per window kind. Installs PySpark (PyPI) into
# .test-deps/pyspark once; needs Java 17.
#
#   scripts/read-lake-spark.sh LAKE_DIR
set -euo pipefail
lake=$(realpath "${1:?usage: scripts/read-lake-spark.sh LAKE_DIR}")
cd "$(dirname "$0")/.."
PYSPARK_VERSION=4.3.0
deps=.test-deps/pyspark
if [ "$(cat "$deps/PYSPARK_VERSION" 2>/dev/null)" != "$PYSPARK_VERSION" ]; then
  rm -rf "$deps" && mkdir -p "$deps"
  python3 -m pip install --quiet --disable-pip-version-check --target "$deps" "pyspark==$PYSPARK_VERSION"
  echo "$PYSPARK_VERSION" > "$deps/PYSPARK_VERSION"
fi
command -v java >/dev/null || { echo "error: Spark needs Java 17 (apt-get install openjdk-17-jre-headless)" >&2; exit 1; }
PYTHONPATH="$deps" python3 - "$lake" <<'PY'
import os, sys
from pyspark.sql import SparkSession

lake = sys.argv[1]
spark = (SparkSession.builder.master("local[2]").appName("tidewatch-lake")
         .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
kinds = sorted(d.split("=", 1)[1] for d in os.listdir(lake) if d.startswith("record="))
for kind in kinds:
    frame = spark.read.option("basePath", lake).parquet(f"{lake}/record={kind}")
    print(f"== record={kind}: {frame.count()} rows")
    frame.printSchema()
    if kind == "window":
        frame.groupBy("kind").count().orderBy("kind").show()
        frame.select("series", "kind", "window_start", "window_end", "count").orderBy("window_start", "series", "kind").show(3, truncate=False)
spark.stop()
PY
