#!/usr/bin/env bash
# The chat demo on embedded defaults: `make demo`. Ctrl-C stops everything.
# Set ABLY_API_KEY (and optionally DATABASE_URL) to use real Ably and an
# existing PostgreSQL instead.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/prepare.sh
exec node scripts/chat.mjs demo
