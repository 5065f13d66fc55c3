#!/usr/bin/env bash
# scripts/bench.sh: the benchmarks whose figures the README reports, against
# the same real servers the test command starts, built without -race.
#
#   scripts/bench.sh                 # all of them
#   scripts/bench.sh EndToEnd        # a -bench pattern
#   scripts/bench.sh 'Rebuild|Memory' # rebuild from the ledger, Redis memory on the mix
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# wrk (a load generator outside the measured process) for BenchmarkCheckHTTP.
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } </dev/null >/dev/null
pattern=${1:-Benchmark} # not ".": scripts/test.sh would take it for a package
SUPPRESSD_RACE=0 exec bash scripts/test.sh -p 1 -run '^$' -bench "$pattern" \
	./store/redisstore/ ./consumer/ ./index/ ./schemas/ ./ledger/ ./api/ ./cmd/suppressd/
