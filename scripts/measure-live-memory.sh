#!/usr/bin/env bash
# Measures `serve` at many series: the demo source sends SERIES series at RATE events/s for
# SECONDS seconds (default 100,000 series at up to 200,000/s for 600 s: on 2 cores the demo
# reaches about 110,000/s, so every series fills its 600-point ring after about 9 minutes),
# with tumbling 1 m windows, z-scores and SQLite. Every 30 s it prints the process RSS and its
# peak so far, the points per series so far, the live view's series and estimated bytes, the
# overview's size and the first page's WebSocket snapshot size.
#
#   scripts/measure-live-memory.sh [SERIES] [RATE] [SECONDS] [MAX_MEMORY]
#
# PRELOAD=/path/to/lib.so runs `serve` with that library preloaded (another allocator);
# SERVE_LOG=/path keeps `serve`'s log there (RUST_LOG=tidewatch::pipeline=debug logs each
# checkpoint's size and time).
set -euo pipefail
series=${1:-100000}
rate=${2:-200000}
seconds=${3:-600}
max_memory=${4:-1000MiB}
cd "$(dirname "$0")/.."
cargo build --release --quiet
work=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  [ -n "${SERVE_LOG:-}" ] && cp "$work/serve.log" "$SERVE_LOG"
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/pipeline.toml" <<TOML
[[streams]]
name = "devices"
source = { kind = "demo", rate = $rate, series = $series }
fields = { time = "ts", series = "series", value = "value", id = "id" }
watermark = { lateness = "5s" }
windows = [{ kind = "tumbling", size = "1m" }]
analytics = { trend_window = "30s", zscore = { points = 200, season = "none" } }
max_series = $series

[[sinks]]
kind = "db"
url = "sqlite://$work/tidewatch.db"

[live]
max_memory = "$max_memory"
TOML

${PRELOAD:+env LD_PRELOAD=$PRELOAD} target/release/tidewatch serve --config "$work/pipeline.toml" --listen "127.0.0.1:$port" \
  > "$work/serve.log" 2>&1 &
pid=$!
metric() { curl -sf "http://127.0.0.1:$port/metrics" | awk -v name="$1" '$1 == name { print $2 }'; }
snapshot_bytes() {
  python3 - "$port" <<'PY' 2>/dev/null || echo "?"
import base64, os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall(("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(65536)
buf = buf.split(b"\r\n\r\n", 1)[1]
def need(n):
    global buf
    while len(buf) < n:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("closed")
        buf += chunk
need(2)
n = buf[1] & 127
head = 2
if n == 126:
    need(4); n = int.from_bytes(buf[2:4], "big"); head = 4
elif n == 127:
    need(10); n = int.from_bytes(buf[2:10], "big"); head = 10
print(n)
PY
}

printf '%6s %10s %10s %10s %7s %9s %12s %12s %10s %10s\n' seconds rss_mib anon_mib peak_mib points series live_mib bytes/series overview snapshot
for ((t = 30; t <= seconds; t += 30)); do
  sleep 30
  kill -0 "$pid" 2>/dev/null || { echo "serve exited:"; tail -20 "$work/serve.log"; exit 1; }
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$pid/status")
  anon=$(awk '/RssAnon/ { print $2 }' "/proc/$pid/status")
  peak=$(awk '/VmHWM/ { print $2 }' "/proc/$pid/status")
  n=$(metric tidewatch_series)
  live=$(metric tidewatch_live_memory_bytes)
  events=$(metric 'tidewatch_events_total{stream="devices"}')
  events=${events:-0}
  overview=$(curl -sf "http://127.0.0.1:$port/" | wc -c)
  printf '%6d %10d %10d %10d %7d %9s %12d %12d %10d %10s\n' "$t" $((rss / 1024)) $((anon / 1024)) $((peak / 1024)) \
    $((${events%.*} / series)) "$n" $((live / 1048576)) \
    $((rss * 1024 / (n > 0 ? n : 1))) "$overview" "$(snapshot_bytes)"
done
echo "events accepted: $(metric 'tidewatch_events_total{stream="devices"}')"
