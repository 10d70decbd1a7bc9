#!/usr/bin/env bash
# The benchmarks, from a fresh machine: `make bench` (or scripts/bench.sh
# --quick for a smoke run of a few minutes). Builds ably_pg (packaged into a
# private PostgreSQL, scripts/pgtree.sh) and the local Ably-compatible server
# in release mode, then runs bench/run.mjs,
# which starts its own private cluster and server, prints a table and writes
# the figures to bench/results.json (or --out FILE) and the report to
# bench/RESULTS.md (full mode; --md FILE). See bench/RESULTS.md.
#
#   scripts/bench.sh [--quick] [--profile] [run.mjs options]
#
# --profile: perf record on the delivery worker (installs linux-perf from
# Debian's packages if perf is missing; without a working perf the run goes
# on and the report says "perf not available").
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

for arg in "$@"; do
  if [ "$arg" = --profile ] && ! perf --version >/dev/null 2>&1; then
    step "Installing linux-perf (for --profile)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends linux-perf >/dev/null \
      || printf 'bench: could not install linux-perf; profiles will say "perf not available"\n' >&2
  fi
done

step "Benchmark"
export BENCH_COMMAND="${BENCH_COMMAND:-scripts/bench.sh${*:+ $*}}"
node bench/run.mjs "$@"
