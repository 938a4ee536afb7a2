#!/usr/bin/env bash
# The `prometheus` source against a real Prometheus (Debian's package): the
# ignored test `real_prometheus` serves a tiny text-format endpoint on
# 127.0.0.1, starts `prometheus` on loopback scraping it every second, and runs
# the source's query against it. Then `simulate --prometheus` against a real
# one: the ignored test of the same name in cli_simulate_prometheus backfills
# 8 days with `promtool` (same package) and reads them back in range queries.
# Everything stays on 127.0.0.1.
#
#   bash ci/prometheus-real.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package's service is not wanted: the test starts its own instance.
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi
prometheus --version 2>&1 | head -1

cargo test --locked --test sources_prometheus -- --ignored real_prometheus --nocapture
cargo test --locked --test cli_simulate_prometheus -- --ignored real_prometheus --nocapture
