# The project's task runner. Every target bootstraps a fresh machine first
# (idempotent and quick when already done).

.PHONY: demo test bench bootstrap install

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bootstrap:
	bash scripts/bootstrap.sh

install: bootstrap
	cargo pgrx install --pg-config /usr/lib/postgresql/15/bin/pg_config
