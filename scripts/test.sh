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

log "Toolchain components"
rustup component list --installed 2>/dev/null | grep -qE '^(rustfmt|clippy)' || rustup component add rustfmt clippy

log "Formatting (cargo fmt --check)"
cargo fmt --all -- --check

log "Lints (cargo clippy --all-targets)"
cargo clippy --all-targets --locked -- -D warnings

log "Tests (cargo test)"
cargo test --all-targets --locked

log "Doc tests"
cargo test --doc --locked
