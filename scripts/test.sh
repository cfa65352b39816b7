#!/usr/bin/env bash
# The test command: every suite, on real tools, installing what a fresh machine lacks. The tools built
# from the Go module proxy and the local cluster's images are built first (once; cached), so their progress
# and times show.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --tests
scripts/install_test_packages.sh
for release in 4.6.1 4.7.2; do  # the pgpool/pgpool image's root per release, for the data plane: built once, cached
    scripts/pgpool_image_root.sh "$release" >/dev/null
done
for tool in promtool etcd kwok kubernetes kubernetes-node containerd runc coredns; do
    scripts/tools.sh "$tool" >/dev/null
done
# Built from ../shared/vendor; without it (exit 3, said on stderr) the tests that run it skip.
scripts/tools.sh pgpool2_exporter >/dev/null || [[ $? == 3 ]]
scripts/images.sh all >/dev/null || [[ $? == 3 ]]  # the local cluster's images, for tests/e2e's real node
source scripts/env.sh
.venv/bin/python -m pytest tests -ra "$@"
