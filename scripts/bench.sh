#!/usr/bin/env bash
# The benchmarks, from a fresh machine: `make bench` (or scripts/bench.sh
# --quick for a smoke run of a few minutes). Builds ably_pg (packaged into a
# private PostgreSQL, scripts/pgtree.sh) and the local Ably-compatible server
# in release mode, then runs bench/run.mjs,
# which starts its own private cluster and server, prints a table and writes
# the figures to bench/results.json (or --out FILE). See bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PG="${PG:-15}" PG_PROFILE=release

step() { printf '\n==> %s\n' "$*" >&2; }

bash scripts/bootstrap.sh

step "Packaging ably_pg (release) into a private PostgreSQL $PG and building the local Ably server (release)"
bash scripts/pgtree.sh "$PG" --release >/dev/null
cargo build --release -p ably-server
export ABLY_SERVER_BIN="${ABLY_SERVER_BIN:-$PWD/target/release/ably-server}"

step "Benchmark dependencies"
(cd bench && npm ci --no-audit --no-fund)

step "Benchmark"
export BENCH_COMMAND="${BENCH_COMMAND:-scripts/bench.sh${*:+ $*}}"
node bench/run.mjs "$@"
