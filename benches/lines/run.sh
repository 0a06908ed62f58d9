#!/usr/bin/env bash
# The cache-line budget: runs benches/lines/probe.rs under valgrind's lackey and counts, with
# count.py, the cache lines that would cross between the frontend's and the backend's core
# per frame. Usage: benches/lines/run.sh [tx|rx] [SIZE] [FRAMES] [BATCH] (tx 64 20000 64).
# Needs valgrind and addr2line (binutils); about a minute for 20,000 frames of 64 bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir="${1:-tx}" size="${2:-64}" frames="${3:-20000}" batch="${4:-64}"
bin="$(cargo bench --bench lines --no-run --message-format=json 2>/dev/null \
    | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
# The probe's own lines (its markers, its stack) and lackey's trace share standard error, in
# program order. valgrind loads a position-independent executable at 0x108000.
valgrind --tool=lackey --trace-mem=yes --log-fd=2 "$bin" "$dir" "$size" "$frames" "$batch" \
    2>&1 >/dev/null | python3 benches/lines/count.py "$frames" "$bin" 0x108000
