#!/usr/bin/env bash
# Enforces the direction of dependencies between Eddy's crates (DESIGN.md §1):
# the engine depends on no other Eddy crate and on no connector library;
# operators and connectors depend on the engine only, never on each other.
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
forbid() {
    local crate=$1
    shift
    local tree
    tree=$(cargo tree -p "$crate" -e normal --prefix none --locked 2>/dev/null | sed 's/ .*//' | sort -u)
    for banned in "$@"; do
        if grep -qx "$banned" <<<"$tree"; then
            echo "error: $crate must not depend on $banned (see DESIGN.md section 1)"
            fail=1
        fi
    done
}

forbid eddy-engine eddy eddy-operators eddy-connectors rdkafka redis clickhouse
forbid eddy-operators eddy eddy-connectors rdkafka redis clickhouse
forbid eddy-connectors eddy eddy-operators

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "dependency rules hold"
