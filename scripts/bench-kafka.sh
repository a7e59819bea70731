#!/usr/bin/env bash
# End-to-end throughput through Kafka: `tidewatch produce` N events into a 3-partition topic on
# a local Apache Kafka broker, then `tidewatch run --once` reads them back through the whole engine
# into SQLite (and Parquet), and we report events/s for each step.
#
#   scripts/bench-kafka.sh [EVENTS]        (default 1000000; needs ./scripts/test.sh run once
#                                           to install Apache Kafka's jars into .test-deps/)
#   ASSIGNMENT=group scripts/bench-kafka.sh  the same under a consumer group (state per partition)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-1000000}
ASSIGNMENT=${ASSIGNMENT:-static}
source scripts/local-broker.sh

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
