# pgpool-k8s: the commands of the README. Everything runs offline from the package registries.
STACK ?= dev
POLICY_CONFIG ?=
SHELL := /bin/bash
ENGINE := scripts/bootstrap.sh && source scripts/env.sh && .venv/bin/python scripts/engine.py
ALLOW_DATABASE_REPLACEMENT ?=
POLICY_FLAGS := $(if $(POLICY_CONFIG),--policy-config $(POLICY_CONFIG)) \
	$(if $(filter yes,$(ALLOW_DATABASE_REPLACEMENT)),--allow-database-replacement)

.PHONY: up preview refresh destroy test init unit bench cluster-start cluster-stop

## The main job: bootstrap, create or select the stack, generate its missing secrets, preview with the policy
## pack (stop on a mandatory violation, or on a plan that takes over an object the stack did not create or
## deletes its namespace or database: ALLOW_DATABASE_REPLACEMENT=yes allows the latter once), update; renders
## the manifests when no cluster is configured.
up:
	$(ENGINE) up --stack $(STACK) $(POLICY_FLAGS)

## Preview with the policy pack: what CI runs on a change.
preview:
	$(ENGINE) preview --stack $(STACK) $(POLICY_FLAGS)

## Compare the state with what is really there.
refresh:
	$(ENGINE) refresh --stack $(STACK)

## Delete everything the stack created (and its rendered files).
destroy:
	$(ENGINE) destroy --stack $(STACK)

## Every test: unit, policy pack, data plane on real Pgpool-II/PostgreSQL, the real Pulumi engine.
test:
	scripts/test.sh

## Validate the stack's config and generate its missing secrets into encrypted stack config.
init:
	scripts/bootstrap.sh && source scripts/env.sh && pulumi stack select --create --non-interactive $(STACK) && \
		.venv/bin/python scripts/init_stack.py --stack $(STACK)

## Unit tests only (mocks, renderers, policies): fast.
unit:
	scripts/bootstrap.sh && source scripts/env.sh && \
		.venv/bin/python -m pytest -q tests --ignore=tests/dataplane --ignore=tests/engine --ignore=tests/cluster --ignore=tests/e2e

## Four tables (not a test): read scaling over two standbys on CPU budgets, proxy CPU per query, proxy-bound
## throughput, Pgpool-II vs PostgreSQL vs PgBouncer; the query cache's gain and cost. Needs root (cgroup v1 cpu and cpuacct).
bench:
	scripts/bootstrap.sh && scripts/install_test_packages.sh && .venv/bin/python scripts/benchmark.py

## The local Kubernetes cluster, a control plane and one real node (scripts/cluster.py); `make up STACK=local`
## starts it by itself.
cluster-start:
	scripts/bootstrap.sh && source scripts/env.sh && .venv/bin/python scripts/cluster.py start

cluster-stop:
	scripts/bootstrap.sh && source scripts/env.sh && .venv/bin/python scripts/cluster.py stop
