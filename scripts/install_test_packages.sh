#!/bin/sh
# Install the Debian packages the data-plane tests and the benchmark run for real:
# PostgreSQL 15 (server, pgbench, pg_basebackup), Pgpool-II, PgBouncer, Prometheus and
# postgres_exporter (bookworm: 0.11.1, binary /usr/bin/prometheus-postgres-exporter), HAProxy (the
# Service in front of two Pgpool-II pods in the shutdown test, and in front of the standbys in the
# benchmark), debootstrap (scripts/pgpool_image_root.sh makes the Debian 13 roots of the
# pgpool/pgpool image's Pgpool-II 4.6 and 4.7 with it) and memcached (the query cache's memcached mode,
# on a Pgpool-II built with it). For the local cluster's real node (scripts/cluster.py):
# iptables (kube-proxy and the CNI plugins), the CNI plugins, umoci (packs the images), busybox-static (the
# shell of the images whose upstream base is busybox), and gcc, libc6-dev and libseccomp-dev (the static pause
# binary, and runc built with seccomp).
# Idempotent: does nothing when all are installed; runs `apt-get update` only when an
# install fails for want of package lists.
set -eu

PACKAGES="postgresql-15 postgresql-client-15 pgpool2 pgbouncer prometheus prometheus-postgres-exporter haproxy debootstrap
memcached iptables containernetworking-plugins umoci busybox-static gcc libc6-dev libseccomp-dev"

missing=""
for package in $PACKAGES; do
    status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $package"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1; then
    as_root="sudo"
else
    echo "install_test_packages: missing:$missing; run this script as root (or install sudo)" >&2
    exit 1
fi

# Wait for another apt/dpkg run to release its lock instead of failing at once.
apt_get() {
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

echo "install_test_packages: installing$missing" >&2
# The packaged services are not wanted: the tests start their own servers on free ports.
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $as_root tee "$policy" >/dev/null
    $as_root chmod 755 "$policy"
    created_policy=yes
fi
trap 'if [ -n "$created_policy" ]; then $as_root rm -f "$policy"; fi' EXIT

# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! apt_get install -y --no-install-recommends $missing; then
    apt_get update
    apt_get install -y --no-install-recommends $missing
fi

# An existing policy-rc.d may have let a packaged service start: stop those of the packages
# installed here (and only those), so no daemon holds a default port or reads /etc defaults.
for package in $missing; do
    for script in $(dpkg-query -L "$package" | grep '^/etc/init\.d/' || true); do
        if [ -d /run/systemd/system ]; then
            $as_root systemctl stop "${script##*/}"
        elif "$script" status >/dev/null 2>&1; then
            $as_root "$script" stop
        fi
    done
done
