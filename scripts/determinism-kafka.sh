#!/usr/bin/env bash
# Same logs, same results, through Kafka: produces EVENTS events (300 series, one per series per
# second of event time, ≤ 5 s out of order, 0.1 % a minute or
# more late, 1 % duplicates) to a 3-partition topic on a local Apache Kafka broker, then reads the
# topic with `run --once` three ways — static assignment, static with small fetches, and a
# consumer group (one engine per partition) — and compares the SQLite tables row for row.
#
#   scripts/determinism-kafka.sh [EVENTS]   (default 600000; ./scripts/test.sh installs the broker)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-600000}
source scripts/local-broker.sh

TOPIC=determinism-$$
target/release/tidewatch produce --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --partitions 3 \
  --rate 0 --series 300 --events "$EVENTS" --span "$((EVENTS / 300))s" --late-rate 0.001 --dup-rate 0.01 >/dev/null

run() {
  local name=$1 extra=$2
  cat >"$WORK/$name.toml" <<TOML
checkpoint = { pipeline = "$name" }

[[streams]]
name = "s"
source = { kind = "kafka", brokers = "127.0.0.1:$PORT", topics = ["$TOPIC"], group = "$name-$$"$extra }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "5s" }
dedup = { horizon = "5m" }
windows = [{ kind = "tumbling", size = "1m" }, { kind = "sliding", size = "1m", slide = "10s" }]
analytics = {}

[[sinks]]
kind = "db"
url = "sqlite://$WORK/$name.db"
TOML
  target/release/tidewatch run --once --config "$WORK/$name.toml" | tail -1
}

echo "== static assignment"; run static ""
echo "== static, small fetches"; run small ', kafka = { "max.partition.fetch.bytes" = "2000", "message.max.bytes" = "1000", "fetch.max.bytes" = "4000" }'
echo "== consumer group"; run group ', assignment = "group"'

python3 - "$WORK" <<'PY'
import sqlite3, sys
work = sys.argv[1]
queries = {
    "windows": "SELECT stream, series, kind, window_start, window_end, count, sum, min, max, first, last FROM windows ORDER BY 1, 2, 3, 4, 5",
    "alerts": "SELECT id, ts, value, state FROM alerts ORDER BY id",
    "late_events": "SELECT source, partition, offset, ts, watermark FROM late_events ORDER BY 1, 2, 3",
    "dead_letters": "SELECT source, partition, offset, reason FROM dead_letters ORDER BY 1, 2, 3",
}
rows = {name: {t: sqlite3.connect(f"{work}/{name}.db").execute(q).fetchall() for t, q in queries.items()}
        for name in ("static", "small", "group")}
for table in queries:
    counts = ", ".join(f"{name} {len(rows[name][table])}" for name in rows)
    same = rows["static"][table] == rows["small"][table] == rows["group"][table]
    print(f"{table}: {counts} rows; identical: {'yes' if same else 'NO'}")
PY
