# Sourced by the Kafka scripts: builds the release binary, starts a local noida-db broker on a
# free loopback port in a temporary directory, and stops it (and removes the directory) on exit.
# Sets WORK (the directory) and PORT.
BROKER=.test-deps/noida-db/noida-db
[ -x "$BROKER" ] || { echo "no broker at $BROKER: run ./scripts/test.sh first" >&2; exit 1; }

cargo build --release --quiet
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BROKER" start --host 127.0.0.1 --only kafka --kafka-port "$PORT" --data-dir "$WORK/broker" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null; wait $BROKER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
