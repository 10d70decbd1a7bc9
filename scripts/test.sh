#!/usr/bin/env bash
# The whole test suite, from a fresh machine: `make test`.
#   make test          PostgreSQL 15, 16 and 18
#   make test PG=16    one version
# Each version runs the extension's #[pg_test]s and the delivery, security
# (and on 15 the upgrade) suites; the local server's tests and the chat demo
# in Chromium run once.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgversions.sh
versions="${PG:-$PG_VERSIONS}"
first="${versions%% *}"

step() { printf '\n==> %s\n' "$*"; }

bash scripts/bootstrap.sh

step "Rust unit tests of the local Ably-compatible server"
cargo test -p ably-server

for v in $versions; do
  step "Extension tests in PostgreSQL $v (cargo pgrx test)"
  # pgrx runs the test cluster as the postgres user, in a directory it can write.
  cargo pgrx test "pg$v" --runas postgres --pgdata "/tmp/ablypg-pgrx-test-$v"
done

for v in $versions; do
  PG="$v" bash scripts/prepare.sh
done
export ABLY_SERVER_BIN="$PWD/target/debug/ably-server"

step "A release's SQL changes only with a new version and an upgrade script"
bash scripts/check-upgrade.sh

step "The ably SDK against the local Ably-compatible server"
(cd examples/ably-server/test && npm ci --no-audit --no-fund && npm test)

(cd tests && npm ci --no-audit --no-fund)
for v in $versions; do
  step "Delivery and security on PostgreSQL $v: worker → local Ably server → ably SDK"
  release010=""
  release020=""
  if [ "$v" = 15 ]; then
    release010="$(bash scripts/build-release.sh 0.1.0 15)"
    release020="$(bash scripts/build-release.sh 0.2.0 15)"
  fi
  (cd tests && PG="$v" ABLY_PG_RELEASE_010="$release010" ABLY_PG_RELEASE_020="$release020" npm test)
done

step "The chat demo in Chromium (PostgreSQL $first)"
PG="$first" node scripts/chat.mjs test
