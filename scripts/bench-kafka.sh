#!/usr/bin/env bash
# End-to-end throughput through Kafka: `tidewatch produce` N events into a 3-partition topic on
# a local noida-db broker, then `tidewatch run --once` reads them back through the whole engine
# into SQLite (and Parquet), and we report events/s for each step.
#
#   scripts/bench-kafka.sh [EVENTS]        (default 1000000; needs ./scripts/test.sh run once
#                                           to install the broker into .test-deps/)
#   ASSIGNMENT=group scripts/bench-kafka.sh  the same under a consumer group (state per partition)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
ASSIGNMENT=${ASSIGNMENT:-static}
BROKER=.test-deps/noida-db/noida-db
[ -x "$BROKER" ] || { echo "no broker at $BROKER: run ./scripts/test.sh first" >&2; exit 1; }

cargo build --release --quiet
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BROKER" start --host 127.0.0.1 --only kafka --kafka-port "$PORT" --data-dir "$WORK/broker" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null; wait $BROKER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

TOPIC=bench-$$
cat >"$WORK/p.toml" <<TOML
checkpoint = { interval = "10s" }

[[streams]]
name = "bench"
source = { kind = "kafka", brokers = "127.0.0.1:$PORT", topics = ["$TOPIC"], group = "bench", assignment = "$ASSIGNMENT" }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "10s" }
dedup = { horizon = "5m" }
windows = [{ kind = "tumbling", size = "1m" }, { kind = "sliding", size = "1m", slide = "10s" }]
analytics = {}

[[sinks]]
kind = "db"
url = "sqlite://$WORK/bench.db"
TOML
echo "== produce $EVENTS events (1000 series, as fast as the broker takes them)"
./target/release/tidewatch produce --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --partitions 3 \
  --events "$EVENTS" --rate 0 --series 1000 2>/dev/null
echo "== run --once into SQLite"
START=$(date +%s.%N)
./target/release/tidewatch run --once --config "$WORK/p.toml"
END=$(date +%s.%N)
python3 -c "print(f'end to end: {$EVENTS / ($END - $START):,.0f} events/s ({$END - $START:.2f} s)')"
