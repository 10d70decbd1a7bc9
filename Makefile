# The project's task runner. Every target bootstraps a fresh machine first
# (idempotent and quick when already done).
#
#   make demo                  the chat demo on embedded defaults
#   make test [PG=16]          the whole suite (PostgreSQL 15, 16 and 18, or one)
#   make bench                 benchmarks (bench/RESULTS.md)
#   make install [PG_CONFIG=…] build and install into a PostgreSQL (default:
#                              the Debian PostgreSQL 15 on this machine)

.PHONY: demo test bench bootstrap install

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bootstrap:
	bash scripts/bootstrap.sh

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
install: bootstrap
	major=$$($(PG_CONFIG) --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'); \
	cargo pgrx install --pg-config $(PG_CONFIG) --no-default-features --features pg$$major
