#!/bin/sh
# Starts one PostgreSQL server of the local cluster's stand-in for KubeDB (scripts/localcluster/standin.py),
# in the postgresql image (scripts/images.sh). Pod <name>-0 is the primary, the others hot standbys that
# stream from it through the primary Service, as KubeDB's postgres-init-docker sets them up:
# - the superuser and its password come from the stack's auth Secret (/var/run/kubedb/auth/username,
#   password); the primary is initialised with them, standbys stream as that user with the password the
#   Secret holds when they start;
# - the init Secret's scripts (/var/initdb/*.sql) run once, on the new primary, while only local
#   connections are admitted;
# - the config Secret's user.conf is included at every start.
# Environment: POD_NAME, PRIMARY_HOST (the primary Service), CLIENT_AUTH_MODE (scram or md5).
set -eu

data="${PGDATA:-/var/pv/data}"
auth=/var/run/kubedb/auth
run=/var/run/postgresql
superuser="$(cat "$auth/username")"
method=scram-sha-256
[ "${CLIENT_AUTH_MODE:-scram}" = md5 ] && method=md5

# The standby's password file, written at each start from the Secret (':' and '\' escaped as libpq wants).
pgpass="$run/.pgpass"
(umask 077 && printf '*:*:*:%s:%s\n' "$superuser" "$(sed 's/[\\:]/\\&/g' "$auth/password")" > "$pgpass")

configure() {
    cat >> "$data/postgresql.conf" <<EOF
# pgpool-k8s stand-in for KubeDB
listen_addresses = '*'
unix_socket_directories = '$run'
wal_level = replica
max_wal_senders = 10
wal_keep_size = '256MB'
hot_standby = on
password_encryption = '$method'
include_if_exists = '/etc/config/user.conf'
include_if_exists = 'standby.conf'
EOF
    printf 'local all all trust\nhost all all all %s\nhost replication all all %s\n' "$method" "$method" \
        > "$data/pg_hba.conf"
}

initialise_primary() {
    password_file="$run/.initial-password"
    (umask 077 && cat "$auth/password" > "$password_file")
    initdb --pgdata="$data" --username="$superuser" --pwfile="$password_file" --auth-local=trust \
        --auth-host="$method" --encoding=UTF8 --locale=C.UTF-8
    rm -f "$password_file"
    configure
    pg_ctl --pgdata="$data" --options="-c listen_addresses=''" --wait start
    for script in /var/initdb/*.sql; do
        [ -e "$script" ] && psql -X -v ON_ERROR_STOP=1 --host="$run" --username="$superuser" --dbname=postgres \
            --file="$script"
    done
    pg_ctl --pgdata="$data" --mode=fast --wait stop
}

initialise_standby() {
    # A connection that gets no answer (the primary's Service not yet routed) retries after 5 s, not the
    # kernel's two minutes.
    until PGCONNECT_TIMEOUT=5 PGPASSFILE="$pgpass" pg_basebackup --host="$PRIMARY_HOST" --username="$superuser" \
            --pgdata="$data" --wal-method=stream --checkpoint=fast --no-password; do
        echo "waiting for the primary $PRIMARY_HOST"
        rm -rf "$data"
        sleep 2
    done
    touch "$data/standby.signal"
}

if [ ! -s "$data/PG_VERSION" ]; then
    case "$POD_NAME" in
        *-0) initialise_primary ;;
        *) initialise_standby ;;
    esac
fi
if [ -e "$data/standby.signal" ]; then
    echo "primary_conninfo = 'host=$PRIMARY_HOST user=$superuser passfile=$pgpass application_name=$POD_NAME'" \
        > "$data/standby.conf"
fi
exec postgres -D "$data"
