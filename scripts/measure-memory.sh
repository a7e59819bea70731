#!/usr/bin/env bash
# Measures engine memory per series and per window kind: peak RSS of `tidewatch run --once`
# over SERIES series (default 10000) x SECONDS seconds (default 600: the anomaly detector's
# 500-point baseline fills) of one event per second,
# for pipelines that add one operator at a time. The differences divided by the series count
# are the per-series costs in docs/operations.md.
#
#   scripts/measure-memory.sh [SERIES] [SECONDS]
#   ANALYTICS=0 scripts/measure-memory.sh 1000000 30   # a million series, without analytics
set -euo pipefail
series=${1:-10000}
seconds=${2:-600}
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$series" "$seconds" > "$work/events.ndjson" <<'PY'
import random, sys
series, seconds = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(1)
start = 1_764_000_000_000
out = sys.stdout
for s in range(seconds):
    for k in range(series):
        ts = start + s * 1000 + k * 1000 // series - rng.randrange(3000)
        out.write('{"ts":%d,"series":"sensor-%05d","value":%.3f,"id":"e%d-%d"}\n' % (ts, k, 20 + rng.gauss(0, 1), s, k))
PY

run() {
  local name=$1 body=$2 config="$work/pipeline.toml"
  cat > "$config" <<TOML
[[streams]]
name = "m"
source = { kind = "file", path = "$work/events.ndjson" }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "10s" }
max_series = 1000000
$body

[[sinks]]
kind = "console"
TOML
  /usr/bin/time -f "%M" -o "$work/rss" \
    target/release/tidewatch run --once --config "$config" > /dev/null 2>&1
  printf '%-28s %8d KiB peak RSS\n' "$name" "$(cat "$work/rss")"
}

echo "$series series x $seconds s, one event per series per second, <= 3 s out of order"
run "ingest only" ""
run "dedup 5m" 'dedup = { horizon = "5m" }'
run "tumbling 1m" 'windows = [{ kind = "tumbling", size = "1m" }]'
run "sliding 5m / 10s" 'windows = [{ kind = "sliding", size = "5m", slide = "10s" }]'
run "session gap 30s" 'windows = [{ kind = "session", gap = "30s" }]'
run "dedup, tumbling and sliding" 'dedup = { horizon = "5m" }
windows = [{ kind = "tumbling", size = "1m" }, { kind = "sliding", size = "5m", slide = "10s" }]'
if [ "${ANALYTICS:-1}" != 0 ]; then
  run "analytics (defaults)" 'analytics = {}'
  run "analytics, no seasonal profiles" 'analytics = { zscore = { season = "none" } }'
fi
