#!/usr/bin/env bash
# Makes a fresh machine ready to build and test ably_pg. Idempotent: a second
# run only checks and returns in a second or two. Dockerfile.postgres repeats
# these build steps; keep the two identical.
set -euo pipefail

PG_MAJOR=15
PGRX_VERSION=0.18.0
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config

log() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian packages: Postgres headers, sudo (cargo pgrx test --runas), Chromium
# (browser tests), libclang for bindgen.
need_pkgs=()
for p in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR sudo chromium libclang-dev pkg-config; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

# cargo-pgrx, exactly the version the extension is built against.
if ! cargo pgrx --version 2>/dev/null | grep -q "cargo-pgrx $PGRX_VERSION\$"; then
  log "installing cargo-pgrx $PGRX_VERSION"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

# pgrx's view of the Postgres installation.
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  log "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

# The extension is installed into the system Postgres, so the folder must be
# writable by the user running tests (root here) and the postgres user must be
# able to read the checkout when pgrx runs tests as postgres.
log "ready"
