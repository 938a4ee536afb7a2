#!/usr/bin/env bash
# The PostgreSQL ledger against a real server (Debian's package): starts a
# throwaway cluster in a temp directory, listening on 127.0.0.1 only, with a
# password role that may create databases (each test makes its own), runs the
# ignored tests in tests/store_postgres.rs and the replicas' test in
# tests/daemon_pacing.rs (then, alone, the outage tests that stop and restart
# it), and removes the cluster on exit.
# The server also has TLS (ssl=on) with a certificate for localhost and
# 127.0.0.1 from a throwaway CA made with the openssl command line: the tests
# get QW_POSTGRES_URL (plain text), QW_POSTGRES_TLS_URL (sslmode=require,
# sslrootcert=that CA) and QW_POSTGRES_OTHER_CA (a CA file that must not work).
#
#   bash ci/postgres.sh            (as root, as CI runs it)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if ! command -v openssl >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends openssl >/dev/null
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

# A free port: no socket at all uses it, not even a client's in TIME-WAIT,
# which would make the server's bind fail (the tests just before this may
# have left one on any port of the ephemeral range, 32768-60999 by default,
# so start below it).
port_busy() {
    awk -v p="$(printf ':%04X' "$1")" \
        'FNR > 1 && substr($2, length($2) - 4) == p { busy = 1 } END { exit !busy }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
port=25432
while port_busy "$port"; do
    port=$((port + 1))
done

# A CA, a server certificate signed by it (ECDSA P-256, valid two days) and
# another CA that did not sign it, for the tests that must be refused.
tls="$dir/tls"
mkdir "$tls"
ossl() { openssl "$@" 2>>"$tls/openssl.log" || { cat "$tls/openssl.log" >&2; return 1; }; }
new_ca() {
    ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -days 2 -subj "/CN=$1" -keyout "$tls/$2.key" -out "$tls/$2.pem" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign"
}
new_ca "quotawatch test CA" ca
new_ca "quotawatch other CA" other-ca
ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr"
printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    >"$tls/server.ext"
ossl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$tls/server.ext" -out "$tls/server.crt"
# PostgreSQL refuses a key that others may read.
chown -R postgres: "$tls"
chmod 600 "$tls"/*.key

password="qw-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --no-sync >/dev/null
# The server's control, also for the outage tests (QW_POSTGRES_CTL stop|start|restart).
cat >"$dir/pgctl" <<CTL
#!/bin/sh
exec runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -m fast "\$1" \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c ssl=on -c ssl_cert_file=$tls/server.crt -c ssl_key_file=$tls/server.key" >/dev/null
CTL
chmod 755 "$dir/pgctl"
"$dir/pgctl" start || { cat "$dir/server.log" >&2; exit 1; }
as_pg "$bin/psql" -h "$dir" -p "$port" -U postgres -qAt -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE qw LOGIN CREATEDB PASSWORD '$password';
CREATE DATABASE qw OWNER qw;
SQL
"$bin/postgres" --version

export QW_POSTGRES_URL="postgres://qw:$password@127.0.0.1:$port/qw?sslmode=disable"
export QW_POSTGRES_TLS_URL="postgres://qw:$password@localhost:$port/qw?sslmode=require&sslrootcert=$tls/ca.pem"
export QW_POSTGRES_OTHER_CA="$tls/other-ca.pem"
cargo test --locked --test store_postgres -- --ignored --skip outage_
# Two daemons that share one account's pacing memory through the server.
cargo test --locked --test daemon_pacing -- --ignored two_replicas
# The outage tests stop and start the server: alone, one at a time.
QW_POSTGRES_CTL="$dir/pgctl" cargo test --locked --test store_postgres -- --ignored --test-threads=1 outage_
