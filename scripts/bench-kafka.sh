#!/usr/bin/env bash
# Throughput through Kafka, side by side on one topic in one run: `tidewatch produce` N events
# into a 3-partition topic on a local Apache Kafka broker, then
#   1. raw consume: a plain rdkafka consumer reading the topic to its end (benches/kafka_consume.rs),
#   2. `tidewatch run --once` into NDJSON files,
#   3. the same into SQLite,
#   4. the same into PostgreSQL (a throwaway cluster of Debian's server),
# each with dedup, tumbling 1 m and sliding 1 m / 10 s windows and the default analytics, and
# prints events/s for each and its share of the raw consume rate. The raw rate times the consume
# loop alone (assigned to the end offsets); its whole process (start, metadata, watermarks)
# is printed below it, and the Tidewatch runs are timed as whole processes (start, database,
# Kafka metadata and end offsets, the final checkpoint and offset commit included).
#
#   scripts/bench-kafka.sh [EVENTS]          (default 600000, 300 series; needs ./scripts/test.sh
#                                             run once, for Apache Kafka's jars and PostgreSQL)
#   SERIES=1000 scripts/bench-kafka.sh 1000000
#   ASSIGNMENT=group scripts/bench-kafka.sh   the Tidewatch runs under a consumer group
#   THREADS=1 ASSIGNMENT=group scripts/bench-kafka.sh   with engine.threads = 1 (default: cores)
#   BIN=/tmp/older/tidewatch scripts/bench-kafka.sh        the Tidewatch runs with another build
#   SINKS="sqlite postgres" scripts/bench-kafka.sh   only these Tidewatch runs (of ndjson sqlite postgres)
#   SPAN=2h scripts/bench-kafka.sh           events stamped over 2 h of event time (a replay of a
#                                             backlog: watermarks advance, windows close along the
#                                             way); by default they carry the time they are sent,
#                                             all within the lateness, so everything closes at the end
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${1:-600000}
SERIES=${SERIES:-300}
SPAN=${SPAN:-}
ASSIGNMENT=${ASSIGNMENT:-static}
THREADS=${THREADS:-}
BIN=${BIN:-./target/release/tidewatch}
ENGINE=""
[ -n "$THREADS" ] && ENGINE="engine = { threads = $THREADS }"
source scripts/local-broker.sh
cargo build --release --quiet --bench kafka_consume
RAW_CONSUME=$(ls -t target/release/deps/kafka_consume-* | grep -v '\.d$' | head -1)

# PostgreSQL: a throwaway cluster on a free port, as the postgres user (it refuses root).
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort | tail -1)
PG_PORT=$(free_port)
mkdir -p "$WORK/pg" && chmod 755 "$WORK"
as_pg() { if [ "$(id -u)" = 0 ]; then chown -R postgres "$WORK/pg"; runuser -u postgres -- "$@"; else "$@"; fi; }
as_pg "$PG_BIN/initdb" -D "$WORK/pg/data" -U tidewatch --auth=trust >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -l "$WORK/pg/log" -w \
  -o "-p $PG_PORT -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
trap 'as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1; kill $BROKER_PID 2>/dev/null; wait $BROKER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tidewatch bench

TOPIC=bench-$$
pipeline() { # NAME SINK-TABLE
  cat <<TOML
checkpoint = { interval = "10s", pipeline = "$1" }
$ENGINE

[[streams]]
name = "bench"
source = { kind = "kafka", brokers = "127.0.0.1:$PORT", topics = ["$TOPIC"], group = "bench-$1", assignment = "$ASSIGNMENT" }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "10s" }
dedup = { horizon = "5m" }
windows = [{ kind = "tumbling", size = "1m" }, { kind = "sliding", size = "1m", slide = "10s" }]
analytics = {}

[[sinks]]
$2
TOML
}
pipeline ndjson "kind = \"ndjson\"
path = \"$WORK/out\"" >"$WORK/ndjson.toml"
pipeline sqlite "kind = \"db\"
url = \"sqlite://$WORK/bench.db\"" >"$WORK/sqlite.toml"
pipeline postgres "kind = \"db\"
url = \"postgres://tidewatch@127.0.0.1:$PG_PORT/bench\"" >"$WORK/postgres.toml"

echo "== produce $EVENTS events ($SERIES series, as fast as the broker takes them)"
./target/release/tidewatch produce --brokers "127.0.0.1:$PORT" --topic "$TOPIC" --partitions 3 \
  --events "$EVENTS" --rate 0 --series "$SERIES" ${SPAN:+--span "$SPAN"} 2>/dev/null

seconds() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$@"; }
echo "== raw consume (plain rdkafka consumer)"
START=$(date +%s.%N)
"$RAW_CONSUME" --brokers "127.0.0.1:$PORT" --topic "$TOPIC" | tee "$WORK/raw.txt"
END=$(date +%s.%N)
RAW_RATE=$(sed -n 's/.*: \([0-9]*\) messages\/s/\1/p' "$WORK/raw.txt")
RAW_PROCESS=$(seconds "$START" "$END")

# Under a group, partition state moves through a database's checkpoints: no NDJSON-only run.
DEFAULT_SINKS="ndjson sqlite postgres"
[ "$ASSIGNMENT" = group ] && DEFAULT_SINKS="sqlite postgres"
SINKS=${SINKS:-$DEFAULT_SINKS}
results=()
for sink in $SINKS; do
  echo "== run --once into $sink"
  START=$(date +%s.%N)
  "$BIN" run --once --config "$WORK/$sink.toml" 2>&1 | grep -v "^$" | tail -3
  END=$(date +%s.%N)
  results+=("$sink $(seconds "$START" "$END")")
done

echo
EVENT_TIME="as sent"
[ -n "$SPAN" ] && EVENT_TIME="spanning $SPAN"
echo "== $EVENTS events, $SERIES series, 3 partitions, assignment $ASSIGNMENT, engine threads ${THREADS:-default}, event time $EVENT_TIME"
printf '%-28s %12s %8s %8s\n' path events/s seconds "of raw"
printf '%-28s %12s %8s %8s\n' "raw consume (rdkafka)" "$(printf "%'d" "$RAW_RATE")" "$(python3 -c "print(f'{$EVENTS/$RAW_RATE:.2f}')")" "100 %"
python3 -c "
events, seconds, raw = $EVENTS, $RAW_PROCESS, $RAW_RATE
print(f'{\"  the same, whole process\":<28} {events / seconds:>12,.0f} {seconds:>8.2f} {100 * events / seconds / raw:>6.0f} %')"
for result in "${results[@]}"; do
  set -- $result
  python3 -c "
events, seconds, raw = $EVENTS, $2, $RAW_RATE
print(f'{\"Kafka -> $1\":<28} {events / seconds:>12,.0f} {seconds:>8.2f} {100 * events / seconds / raw:>6.0f} %')"
done
