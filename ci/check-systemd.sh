#!/usr/bin/env bash
# Checks systemd/quotawatch.service the way systemd will read it:
#   - `systemd-analyze verify` must say nothing about the unit, alone and with
#     the log-file-access drop-in example applied;
#   - `systemd-analyze security --offline=true` must rate its exposure at
#     MAX_EXPOSURE (2.0) or lower.
#
# Usage: ci/check-systemd.sh [BINARY]
#   BINARY defaults to target/release/quotawatch, else target/debug/quotawatch.
#   verify fails when ExecStart= does not exist, so the binary is installed
#   at /usr/bin/quotawatch for the duration of the check; whatever was there
#   before is put back on exit.
#
# Needs root (apt-get, /usr/bin). Installs the `systemd` package if
# systemd-analyze is missing.
set -euo pipefail

MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
INSTALLED_BINARY=/usr/bin/quotawatch

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
unit=systemd/quotawatch.service
dropin_example=systemd/log-file-access.conf.example

fail() {
    echo "check-systemd: FAIL: $*" >&2
    exit 1
}

if [[ $(id -u) -ne 0 ]]; then
    fail "run as root: it may apt-get install systemd and writes $INSTALLED_BINARY"
fi

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check-systemd: installing systemd (for systemd-analyze)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi
echo "check-systemd: $(systemd-analyze --version | head -n 1)"

binary=${1:-}
if [[ -z $binary ]]; then
    for candidate in target/release/quotawatch target/debug/quotawatch; do
        if [[ -x $candidate ]]; then
            binary=$candidate
            break
        fi
    done
fi
[[ -n $binary ]] || fail "no binary given and none built (run cargo build first)"
[[ -x $binary ]] || fail "$binary is not an executable file"

workdir=$(mktemp -d)
backup=""
if [[ -e $INSTALLED_BINARY || -L $INSTALLED_BINARY ]]; then
    backup="$workdir/quotawatch.previous"
    cp -a "$INSTALLED_BINARY" "$backup"
fi
restore() {
    if [[ -n $backup ]]; then
        cp -a "$backup" "$INSTALLED_BINARY"
    else
        rm -f "$INSTALLED_BINARY"
    fi
    rm -rf "$workdir"
}
trap restore EXIT
install -m 0755 "$binary" "$INSTALLED_BINARY"
echo "check-systemd: installed $binary at $INSTALLED_BINARY"

# verify exits 0 on unknown keys and bad values (it only warns), so its
# output is the verdict: any line naming our unit fails the check. Lines about
# other units on this machine are shown but do not fail it. --man=no because
# the man page named in Documentation= is only present once the package is
# installed.
verify() {
    local label=$1 unit_path=$2 output status=0
    output=$(systemd-analyze verify --man=no "$unit_path" 2>&1) || status=$?
    if [[ -n $output ]]; then
        # shellcheck disable=SC2001 # indenting every line reads best with sed
        sed 's/^/    /' <<<"$output"
    fi
    if [[ $status -ne 0 ]]; then
        fail "systemd-analyze verify ($label) exited with $status"
    fi
    if grep -q 'quotawatch' <<<"$output"; then
        fail "systemd-analyze verify ($label) reported problems with the unit"
    fi
    echo "check-systemd: verify ($label): clean"
}

# The exposure scale is 0.0 (locked down) to 10.0 (unprotected).
security() {
    local label=$1 unit_path=$2 report rating
    report=$(systemd-analyze security --offline=true --no-pager "$unit_path" 2>&1) \
        || { echo "$report"; fail "systemd-analyze security ($label) failed"; }
    rating=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' <<<"$report")
    [[ -n $rating ]] || { echo "$report"; fail "no overall exposure level in the security report ($label)"; }
    echo "check-systemd: security ($label): exposure $rating (limit $MAX_EXPOSURE)"
    if ! awk -v r="$rating" -v max="$MAX_EXPOSURE" 'BEGIN { exit !(r <= max) }'; then
        echo "$report" | grep '✗' || true
        fail "exposure $rating is above $MAX_EXPOSURE ($label)"
    fi
}

verify "unit" "$unit"
security "unit" "$unit"

# The drop-in example, applied the way `systemctl edit` would apply it.
mkdir -p "$workdir/units/quotawatch.service.d"
cp "$unit" "$workdir/units/quotawatch.service"
cp "$dropin_example" "$workdir/units/quotawatch.service.d/log-file-access.conf"
verify "unit + log-file-access drop-in" "$workdir/units/quotawatch.service"
security "unit + log-file-access drop-in" "$workdir/units/quotawatch.service"

echo "check-systemd: OK"
