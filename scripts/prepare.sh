#!/usr/bin/env bash
# Builds what the demo and the tests run: ably_pg packaged into a private
# copy of PostgreSQL $PG (default 15, see scripts/pgtree.sh), the local
# Ably-compatible server, and the chat demo. Each step is skipped when its
# output is newer than its inputs.
set -euo pipefail
cd "$(dirname "$0")/.."
PG="${PG:-15}"

step() { printf '\n==> %s\n' "$*"; }

step "Packaging ably_pg into a private PostgreSQL $PG (target/pg/$PG)"
bash scripts/pgtree.sh "$PG" >/dev/null

step "Building the local Ably-compatible server"
cargo build -p ably-server

[ -n "${SKIP_CHAT_BUILD:-}" ] && exit 0
step "Building the chat demo"
cd examples/chat
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
stamp=.output/nitro.json
if [ ! -f "$stamp" ] || [ -n "$(find app server nuxt.config.ts package-lock.json -newer "$stamp" -print -quit)" ]; then
  npm run build
fi
