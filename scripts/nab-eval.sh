#!/bin/bash
# Detection quality of Tidewatch's alerts on a labelled corpus in the Numenta Anomaly Benchmark's
# layout (data/<category>/<file>.csv + labels/combined_windows.json), scored with NAB's standard
# profile by nab_score.py (it reproduces NAB's published scores from NAB's own result files).
#
# usage: scripts/nab-eval.sh [ANALYTICS] [CORPUS]
#   ANALYTICS  the stream's `analytics = ...` value, default '{}' (Tidewatch's defaults)
#   CORPUS     default: the repository's tests/data/nab-train/ (31 of NAB's 58 files, MIT
#              licence)
# env: TIDEWATCH_BIN (default target/release/tidewatch of the repository, built if missing),
#      NAB_DETAIL=1 for a line per category. Each alert episode counts once, at its
#      episode_start.
# Reference points on NAB's whole corpus (published standard-profile scores): perfect 100,
# ARTime 74.9, Numenta HTM 70.1, contextOSE 69.9, Skyline 58.2, KNN-CAD 58.0,
# random cut forest 51.7, Twitter ADVec 47.1, windowedGaussian 39.6, random 16.8, null 0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ANALYTICS=${1:-"{}"}
CORPUS=${2:-$ROOT/tests/data/nab-train}
BIN=${TIDEWATCH_BIN:-$ROOT/target/release/tidewatch}
[[ -x $BIN ]] || (cd "$ROOT" && cargo build --release --quiet)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
RUN=$(mktemp -d); trap 'rm -rf "$RUN"' EXIT
python3 "$HERE/nab_score.py" --prepare "$CORPUS" "$RUN"
cat > "$RUN/nab.toml" <<TOML
[[streams]]
name = "nab"
source = { kind = "file", path = "$RUN/data" }
fields = { time = "ts", time_format = "epoch_ms", series = "series", value = "value", id = "id" }
watermark = { lateness = "0s" }
analytics = $ANALYTICS

[[sinks]]
kind = "ndjson"
path = "$RUN/out"
TOML
( cd "$RUN" && "$BIN" run --config "$RUN/nab.toml" --once >/dev/null )
python3 "$HERE/nab_score.py" "$CORPUS" "$RUN"
