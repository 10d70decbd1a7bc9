#!/usr/bin/env bash
# The whole test suite, from a fresh machine: `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

bash scripts/bootstrap.sh

step "Rust unit tests of the local Ably-compatible server"
cargo test -p ably-server

step "Extension tests in PostgreSQL 15 (cargo pgrx test)"
# pgrx runs the test cluster as the postgres user, in a directory it can write.
cargo pgrx test pg15 --runas postgres --pgdata /tmp/ablypg-pgrx-test

bash scripts/prepare.sh
export ABLY_SERVER_BIN="$PWD/target/debug/ably-server"

step "The ably SDK against the local Ably-compatible server"
(cd examples/ably-server/test && npm ci --no-audit --no-fund && npm test)

step "Delivery: PostgreSQL → worker → local Ably server → ably SDK"
(cd tests && npm ci --no-audit --no-fund && npm test)

step "The chat demo in Chromium"
node scripts/chat.mjs test
