#!/usr/bin/env bash
# Every figure of the "Proof" sections of BENCHMARKS.md, in one run, with the
# machine it ran on. About 6 minutes (two 60 s idle measurements included).
#
#   bench/run_all.sh 2>&1 | tee target/bench-all.txt
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== machine"
echo "nproc: $(nproc)"
lscpu | grep 'Model name'
free -h | sed -n 1,2p
uname -sr
echo
echo "== webhook ingestion (wrk)"
bench/webhook_ingest.sh
echo
echo "== reaction time, start-up, footprint"
cargo bench --quiet --bench daemon 2>/dev/null
echo
echo "== ledger (criterion)"
cargo bench --quiet --bench ledger 2>/dev/null | grep -E '^[a-z+]+/|time:|thrpt:'
