#!/usr/bin/env bash
# Fails when the extension's SQL changed since the last release without a
# new version and an upgrade script (run by `make test`, so CI catches it):
# - same version as the last release tag: the generated install script must
#   equal the release's (ALTER EXTENSION ... UPDATE would not see a change);
# - a newer version: sql/ably_pg--<released>--<version>.sql must exist.
# The scripts compared are the ones `cargo pgrx package` generates (for the
# release: scripts/build-release.sh), without their comments. Releases are
# listed in scripts/releases (a checkout need not have the git tags).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/pgversions.sh

released="$(awk '!/^#/ && NF { print $1 }' scripts/releases | sort -V | tail -1)"
if [ -z "$released" ]; then
  echo "check-upgrade: no release in scripts/releases, nothing to compare"
  exit 0
fi
tag="v$released"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
share=share/postgresql/15/extension

if [ "$version" = "$released" ]; then
  bash scripts/pgtree.sh "$PG_DEFAULT" >/dev/null
  old="$(bash scripts/build-release.sh "$released" "$PG_DEFAULT")/usr/$share/ably_pg--$released.sql"
  new="target/pg/$PG_DEFAULT/$share/ably_pg--$version.sql"
  if ! diff -q <(grep -v '^\s*--' "$old") <(grep -v '^\s*--' "$new") >/dev/null; then
    echo "check-upgrade: the extension's SQL changed since $tag, but the version is still $version." >&2
    echo "  Bump the version in Cargo.toml and add sql/ably_pg--$released--<new version>.sql." >&2
    diff <(grep -v '^\s*--' "$old") <(grep -v '^\s*--' "$new") | head -20 >&2
    exit 1
  fi
  echo "check-upgrade: version $version, SQL unchanged since $tag"
  exit 0
fi

newest="$(printf '%s\n%s\n' "$released" "$version" | sort -V | tail -1)"
if [ "$newest" != "$version" ]; then
  echo "check-upgrade: version $version in Cargo.toml is older than the release $tag" >&2
  exit 1
fi
script="sql/ably_pg--$released--$version.sql"
if [ ! -f "$script" ]; then
  echo "check-upgrade: version $version has no upgrade script from $tag: add $script" >&2
  exit 1
fi
echo "check-upgrade: $script upgrades $tag to $version"
