# Sourced by the Kafka scripts: builds the release binary, starts a local Apache Kafka broker
# (single-node KRaft, from the jars ./scripts/test.sh copies into .test-deps/kafka/libs) on free
# loopback ports in a temporary directory, and stops it (and removes the directory) on exit.
# Sets WORK (the directory) and PORT.
LIBS=.test-deps/kafka/libs
ls "$LIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || { echo "no Apache Kafka jars in $LIBS: run ./scripts/test.sh first" >&2; exit 1; }

cargo build --release --quiet
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
CONTROLLER_PORT=$(free_port)
cat >"$WORK/server.properties" <<PROPERTIES
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$WORK/broker
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPERTIES
java -cp "$LIBS/*" kafka.tools.StorageTool format -t MkU3OEVBNTcwNTJENDM2Qk -c "$WORK/server.properties" --standalone >"$WORK/format.log" 2>&1
java -Xms512m -Xmx1g -cp "$LIBS/*" kafka.Kafka "$WORK/server.properties" >"$WORK/broker.log" 2>&1 &
BROKER_PID=$!
trap 'kill $BROKER_PID 2>/dev/null; wait $BROKER_PID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 600); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
