#!/usr/bin/env bash
# Throughput of the file path, whole process: `tidewatch run --once` over a generated NDJSON
# file into NDJSON files, for the two queries issue 11 names:
#   Q1: tumbling 1 m windows per series;
#   Q3: dedup by id (5 min horizon), then tumbling 1 m.
# The file: EVENTS events (default 2,000,000) over SERIES series (default 1,000), one event per
# series per second of event time, values around a level per series, 1 % of events sent twice
# (same id), up to 2 s out of order. With --pyspark, the same two queries also run on PySpark's
# Structured Streaming (readStream over the same file, availableNow trigger, writeStream to
# files; see scripts/bench_pyspark.py), where PySpark is installed (pip install pyspark).
#
# THREADS=N sets `engine.threads` (default: the machine's cores; 1 decodes on the engine's own
# thread), RUNS=N times each query N times, BIN=path runs another build (to compare two).
#
#   scripts/bench-file.sh [EVENTS] [SERIES] [--pyspark]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-2000000}
SERIES=${2:-1000}
PYSPARK=${3:-}
THREADS=${THREADS:-}
RUNS=${RUNS:-1}
BIN=${BIN:-./target/release/tidewatch}
cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/in"

python3 - "$EVENTS" "$SERIES" "$WORK/in/events.ndjson" <<'PY'
import random, sys
events, series, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(11)
start = 1_764_000_000_000
levels = [random.uniform(10, 100) for _ in range(series)]
with open(path, "w") as out:
    lines = []
    for i in range(events):
        s = i % series
        ts = start + (i // series) * 1000 + random.randint(-2000, 0)
        line = '{"ts":%d,"series":"s%04d","value":%.3f,"id":"e%d"}\n' % (
            ts, s, levels[s] + random.gauss(0, 1), i)
        lines.append(line)
        if random.random() < 0.01:
            lines.append(line)
        if len(lines) >= 100_000:
            out.writelines(lines)
            lines.clear()
    out.writelines(lines)
PY
LINES=$(wc -l <"$WORK/in/events.ndjson")

query() { # NAME DEDUP
  cat <<TOML
[[streams]]
name = "q"
source = { kind = "file", path = "$WORK/in/events.ndjson" }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "5s" }
$2
windows = [{ kind = "tumbling", size = "1m" }]

[[sinks]]
kind = "ndjson"
path = "$WORK/out-$1"
TOML
  if [ -n "$THREADS" ]; then printf '\n[engine]\nthreads = %s\n' "$THREADS"; fi
}
query q1 "" >"$WORK/q1.toml"
query q3 'dedup = { horizon = "5m" }' >"$WORK/q3.toml"

seconds() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$@"; }
echo "== $LINES lines ($EVENTS events, $SERIES series, 1 % sent twice)"
for q in q1 q3; do for _ in $(seq "$RUNS"); do
  rm -rf "$WORK/out-$q"
  START=$(date +%s.%N)
  "$BIN" run --once --config "$WORK/$q.toml" >"$WORK/$q.log" 2>&1
  END=$(date +%s.%N)
  python3 -c "
lines, seconds = $LINES, $(seconds "$START" "$END")
print(f'tidewatch {\"$q\".upper()}: {lines / seconds:>12,.0f} events/s ({seconds:.2f} s)')"
  sed -n 's/^/    /; /records written\|duplicates/p' "$WORK/$q.log"
done; done

if [ "$PYSPARK" = "--pyspark" ]; then
  for q in q1 q3; do
    START=$(date +%s.%N)
    python3 scripts/bench_pyspark.py "$q" "$WORK/in" "$WORK/spark-$q" >"$WORK/spark-$q.log" 2>&1 \
      || { tail -20 "$WORK/spark-$q.log"; exit 1; }
    END=$(date +%s.%N)
    python3 -c "
lines, seconds = $LINES, $(seconds "$START" "$END")
print(f'PySpark   {\"$q\".upper()}: {lines / seconds:>12,.0f} events/s ({seconds:.2f} s, JVM start included)')"
    sed -n "s/.*timed \(.*\)/PySpark   ${q^^} query alone, from start() to the end: \1/p" "$WORK/spark-$q.log"
    sed -n "s/^windows \(.*\)/    windows written: \1/p" "$WORK/spark-$q.log"
  done
fi
