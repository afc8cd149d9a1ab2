#!/usr/bin/env bash
# Copies an input written by the Flink anchor's gen.py (CSV without a header
# row) and adds the header that eddy's FileSource::csv needs to name fields:
#
#   benches/anchor-csv.sh SRC DST
#
# SRC is a file (DST becomes a file) or a directory of part files (DST
# becomes a directory with each part, header added; files starting with '_'
# or '.' are skipped, as both file sources skip them).
set -euo pipefail
HEADER="auction,bidder,price,channel,url,ts,extra"
if [ $# -ne 2 ]; then
  echo "usage: $0 SRC DST" >&2
  exit 2
fi
src=$1 dst=$2
with_header() { { echo "$HEADER"; cat "$1"; } > "$2"; }
if [ -d "$src" ]; then
  mkdir -p "$dst"
  for f in "$src"/*; do
    name=$(basename "$f")
    case "$name" in _* | .*) continue ;; esac
    with_header "$f" "$dst/$name"
  done
else
  with_header "$src" "$dst"
fi
echo "$dst"
