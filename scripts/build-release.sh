#!/usr/bin/env bash
# Builds a released version of ably_pg from the commit scripts/releases
# names for it, for the upgrade test: `bash scripts/build-release.sh 0.1.0 15`
# prints the folder holding the packaged files (the same layout `cargo pgrx
# package` writes: absolute paths of the PostgreSQL installation below it).
# Skipped when already built.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgversions.sh

version="${1:?usage: scripts/build-release.sh <version> <major>}"
version="${version#v}"
commit="$(awk -v v="$version" '$1 == v { print $2 }' scripts/releases)"
if [ -z "$commit" ]; then
  echo "build-release: $version is not in scripts/releases" >&2
  exit 1
fi
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
  # A shallow checkout: fetch the one commit.
  git fetch --quiet --depth=1 origin "$commit" >&2
fi
tag="v$version"
major="${2:-$PG_DEFAULT}"
out="$PWD/target/releases/$tag/pg$major"
if [ -f "$out/.built" ]; then
  echo "$out"
  exit 0
fi
src="$PWD/target/releases/$tag/src"
rm -rf "$src" "$out"
mkdir -p "$src"
git archive "$commit" | tar -x -C "$src"
printf 'build-release: building ably_pg %s for PostgreSQL %s\n' "$tag" "$major" >&2
(cd "$src" && CARGO_TARGET_DIR="$PWD/../build" cargo pgrx package \
  --pg-config "$(pg_config_of "$major")" --no-default-features --features "pg$major" \
  --out-dir "$out" >&2)
touch "$out/.built"
echo "$out"
