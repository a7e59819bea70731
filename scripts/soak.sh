#!/usr/bin/env bash
# Soak: `tidewatch serve` at 20,000 events/s over 10,000 series with 100 dashboard clients for
# 30 minutes, its RSS sampled every 10 s (a CSV on stdout, a summary line at the end). Memory
# must level off; docs/operations.md and the README give the curve this prints.
#
#   scripts/soak.sh [--minutes 30] [--clients 100] [--rate 20000] [--series 10000] [--every 10]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec cargo bench --quiet --bench soak -- "$@"
