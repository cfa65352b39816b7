# pgpool-k8s: the commands of the README. Everything runs offline from the package registries.
STACK ?= dev
SHELL := /bin/bash

.PHONY: up test init unit bench destroy

## Deploy the stack (render manifests when no cluster is configured): bootstrap, init secrets, pulumi up.
up:
	scripts/up.sh $(STACK)

## Every test: unit, policy pack, data plane on real Pgpool-II/PostgreSQL, the real Pulumi engine.
test:
	scripts/test.sh

## Validate the stack's config and generate its missing secrets into encrypted stack config.
init:
	scripts/bootstrap.sh >&2 && source scripts/env.sh && .venv/bin/python scripts/init_stack.py --stack $(STACK)

## Unit tests only (mocks, renderers, policies): fast.
unit:
	scripts/bootstrap.sh >&2 && .venv/bin/python -m pytest -q tests --ignore=tests/dataplane --ignore=tests/engine

## Three tables (not a test): read scaling over two standbys on CPU budgets, proxy CPU per query, proxy-bound
## throughput; Pgpool-II vs PostgreSQL vs PgBouncer. Needs root (cgroup v1 cpu and cpuacct).
bench:
	scripts/bootstrap.sh >&2 && scripts/install_test_packages.sh && .venv/bin/python scripts/benchmark.py

destroy:
	scripts/bootstrap.sh >&2 && source scripts/env.sh && pulumi destroy --yes --stack $(STACK)
