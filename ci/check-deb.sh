#!/usr/bin/env bash
# Builds the Debian package with cargo-deb and checks what is in it: the
# binary, the systemd unit, the config as a conffile, the docs, completions
# and man page, and maintainer scripts that enable the unit without starting it.
#
# Usage: ci/check-deb.sh
#   Installs cargo-deb with `cargo install cargo-deb --locked` when missing
#   (about a minute on 2 cores). Prints the path of the .deb on success.
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"
target_dir=${CARGO_TARGET_DIR:-target}
binary="$target_dir/release/quotawatch"
# Fixed path: packaging/deb-metadata.toml names target/assets/ literally.
assets_dir=target/assets

fail() {
    echo "check-deb: FAIL: $*" >&2
    exit 1
}

command -v dpkg-deb >/dev/null 2>&1 || fail "dpkg-deb not found (Debian's dpkg package)"
if ! cargo deb --version >/dev/null 2>&1; then
    echo "check-deb: installing cargo-deb"
    cargo install cargo-deb --locked
fi
echo "check-deb: $(cargo deb --version)"

grep -q '^\[package\.metadata\.deb\]' Cargo.toml \
    || fail "Cargo.toml has no [package.metadata.deb]; paste packaging/deb-metadata.toml at its end"

cargo build --release
rm -rf "$assets_dir"
"$binary" generate-assets "$assets_dir"
for asset in quotawatch.bash _quotawatch quotawatch.fish quotawatch.1; do
    [[ -s $assets_dir/$asset ]] || fail "generate-assets did not write $assets_dir/$asset"
done

# cargo-deb prints the path of the package on stdout, progress on stderr.
deb=$(cargo deb --no-build | tail -n 1)
[[ -f $deb ]] || fail "cargo deb did not report a package path (got '$deb')"
echo "check-deb: built $deb"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

dpkg-deb -c "$deb" >"$workdir/contents"
# `dpkg-deb -c` lists "./path"; keep the path and the mode.
awk '{ sub(/^\./, "", $6); print $1, $6 }' "$workdir/contents" >"$workdir/files"

expect_file() {
    local path=$1 mode=${2:-}
    local line
    line=$(awk -v p="$path" '$2 == p' "$workdir/files")
    [[ -n $line ]] || { cat "$workdir/contents"; fail "$path is not in the package"; }
    if [[ -n $mode && ${line%% *} != "$mode" ]]; then
        fail "$path has mode ${line%% *}, expected $mode"
    fi
}

expect_file /usr/bin/quotawatch -rwxr-xr-x
# cargo-deb installs units to /usr/lib/systemd/system (= /lib/systemd/system
# on merged-/usr systems); accept either.
if ! awk '$2 == "/usr/lib/systemd/system/quotawatch.service" || $2 == "/lib/systemd/system/quotawatch.service" { found = 1 } END { exit !found }' "$workdir/files"; then
    cat "$workdir/contents"
    fail "the systemd unit is not in the package"
fi
expect_file /etc/quotawatch/quotawatch.toml -rw-r--r--
expect_file /usr/share/doc/quotawatch/README.md
expect_file /usr/share/doc/quotawatch/BENCHMARKS.md
expect_file /usr/share/doc/quotawatch/copyright
expect_file /usr/share/bash-completion/completions/quotawatch
expect_file /usr/share/zsh/vendor-completions/_quotawatch
expect_file /usr/share/fish/vendor_completions.d/quotawatch.fish
expect_file /usr/share/man/man1/quotawatch.1.gz

dpkg-deb -I "$deb" >"$workdir/info"
grep -qw conffiles "$workdir/info" || { cat "$workdir/info"; fail "dpkg-deb -I lists no conffiles"; }
dpkg-deb -I "$deb" conffiles >"$workdir/conffiles"
grep -qx '/etc/quotawatch/quotawatch.toml' "$workdir/conffiles" \
    || { cat "$workdir/conffiles"; fail "/etc/quotawatch/quotawatch.toml is not a conffile"; }

# First install: enable, never start (the operator reviews the config first).
dpkg-deb -I "$deb" postinst >"$workdir/postinst" || fail "the package has no postinst"
grep -q 'deb-systemd-helper enable quotawatch.service' "$workdir/postinst" \
    || { cat "$workdir/postinst"; fail "postinst does not enable quotawatch.service"; }
# cargo-deb's start snippets: a plain start, or `_dh_action=start` on install.
if grep -Eq 'deb-systemd-invoke start|_dh_action=start' "$workdir/postinst"; then
    cat "$workdir/postinst"
    fail "postinst starts the service on install"
fi

echo "check-deb: package contents:"
sed 's/^/    /' "$workdir/files"
echo "check-deb: OK $deb"
