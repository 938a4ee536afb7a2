#!/usr/bin/env bash
# The PostgreSQL ledger against a real server (Debian's package): starts a
# throwaway cluster in a temp directory, listening on 127.0.0.1 only, with a
# password role that may create databases (each test makes its own), runs the
# ignored tests in tests/store_postgres.rs, and removes the cluster on exit.
#
#   bash ci/postgres.sh            (as root, as CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

dir=$(mktemp -d /tmp/qw-postgres.XXXXXX)
chown postgres: "$dir"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
    as_pg "$bin/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

# A free loopback port: nothing answers on it.
port=55432
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
    port=$((port + 1))
done

password="qw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-sync >/dev/null
as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" >/dev/null
as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -qAt -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE qw LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE qw OWNER qw;
SQL
"$bin/postgres" --version

export QW_POSTGRES_URL="postgres://qw:$password@127.0.0.1:$port/qw?sslmode=disable"
cargo test --locked --test store_postgres -- --ignored
