#!/usr/bin/env bash
# The whole test suite, from a fresh machine: `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

step() { printf '\n==> %s\n' "$*"; }

bash scripts/bootstrap.sh

step "Rust unit tests of the local Ably-compatible server"
cargo test -p ably-server

step "Extension tests in PostgreSQL 15 (cargo pgrx test)"
# pgrx tests run as the postgres user; its data directory must be writable by it.
cargo pgrx test pg15 --runas postgres --pgdata /tmp/ablypg-pgrx-test

step "Installing ably_pg into PostgreSQL 15 and building the local Ably server"
cargo pgrx install --pg-config "$PG_CONFIG"
cargo build -p ably-server
export ABLY_SERVER_BIN="$PWD/target/debug/ably-server"

step "The ably SDK against the local Ably-compatible server"
(cd examples/ably-server/test && npm ci --no-audit --no-fund && npm test)

step "Delivery: PostgreSQL → worker → local Ably server → ably SDK"
(cd tests && npm ci --no-audit --no-fund && npm test)

step "Chat demo in Chromium"
(cd examples/chat && npm ci --no-audit --no-fund && npm run build)
node scripts/chat.mjs test
