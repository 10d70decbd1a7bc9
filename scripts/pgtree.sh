#!/usr/bin/env bash
# Builds ably_pg for one PostgreSQL major version and packages it into a
# private copy of that version's installation, target/pg/<major>[-release]/.
# The tests, the demo and the benchmarks run their clusters from that copy:
#
#   bash scripts/pgtree.sh 15            # debug build, prints the bin folder
#   bash scripts/pgtree.sh 18 --release  # release build (benchmarks)
#
# Why a copy: installing a new ably_pg.so over one that a running cluster has
# loaded crashes that cluster, and several checkouts (and `cargo pgrx test`,
# which installs into the system PostgreSQL) may run clusters at once. A
# PostgreSQL installation finds its lib and share folders relative to its
# binaries, so the copy runs as is. Files are replaced by rename, never
# rewritten in place, so a cluster still running the previous build keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgversions.sh

major="${1:?usage: scripts/pgtree.sh <major> [--release]}"
profile=debug
[ "${2:-}" = "--release" ] && profile=release
pg_config="$(pg_config_of "$major")"
base="$(install_root_of "$major")"
tree="$PWD/target/pg/$major$([ "$profile" = release ] && echo -release || true)"

log() { printf 'pgtree: %s\n' "$*" >&2; }

# The copy of the installation (once; refreshed when the source is newer).
stamp="$tree/.copied"
if [ ! -f "$stamp" ] || [ "$pg_config" -nt "$stamp" ]; then
  log "copying PostgreSQL $major from $base"
  rm -rf "$tree"
  mkdir -p "$tree"
  for part in $(install_parts_of "$major"); do
    mkdir -p "$tree/$(dirname "$part")"
    cp -a "$base/$part" "$tree/$part"
  done
  touch "$stamp"
fi

# The extension, packaged for this version.
flags=(--pg-config "$pg_config" --no-default-features --features "pg$major")
[ "$profile" = debug ] && flags+=(--debug)
out="$PWD/target/pgpkg/$major-$profile"
rm -rf "$out"
log "building ably_pg for PostgreSQL $major ($profile)"
cargo pgrx package "${flags[@]}" --out-dir "$out" >&2

# The previous build's scripts go (a stale ably_pg--<version>.sql would be
# offered to CREATE EXTENSION); the library is replaced below, by rename.
find "$tree" -name 'ably_pg--*.sql' -delete

# Packaged paths are absolute paths of the original installation; strip its
# root and put each file into the copy by rename.
(cd "$out$base" && find . -type f) | while read -r rel; do
  dest="$tree/${rel#./}"
  mkdir -p "$(dirname "$dest")"
  cp "$out$base/$rel" "$dest.new.$$"
  mv -f "$dest.new.$$" "$dest"
done
bin="$tree/$(bin_part_of "$major")"
echo "$bin"
