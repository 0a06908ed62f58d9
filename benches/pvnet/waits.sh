#!/usr/bin/env bash
# Which side bounds a pvnet copy-mode stream: runs the harness's child roles (backend on CPU
# 0, frontend on CPU 1, 50 us spin, as `cargo bench --bench pvnet` does) under `perf record`,
# several times with the placement probe running, and prints per run the frame rate, the
# share of each side's samples spent waiting for work (its spin loop, ring checks and sleep),
# the run's share of near samples and its placement. The side that seldom waits is the bound.
#
#   benches/pvnet/waits.sh BIN tx|rx [SIZE] [RUNS]
#
# BIN is a harness binary (`cargo bench --bench pvnet --no-run`, then
# `target/release/deps/pvnet-*`). Needs perf.
set -euo pipefail
bin=${1:?harness binary}
dir=${2:?tx or rx}
size=${3:-64}
runs=${4:-6}
case "$dir" in
    tx) uplink=sink; role=front-tx ;;
    rx) uplink=source; role=front-rx ;;
    *) echo "usage: $0 BIN tx|rx [SIZE] [RUNS]" >&2; exit 2 ;;
esac
frames=$((size < 1500 ? 20000000 : 4000000))
d=$(mktemp -d)
prober=
cleanup() {
    if [ -n "$prober" ]; then kill "$prober" 2> /dev/null || true; fi
    rm -rf "$d"
}
trap cleanup EXIT
"$bin" --role probe > "$d/probe.txt" 2> /dev/null &
prober=$!
# The share of a profile's samples in the functions that wait for work.
waiting() {
    perf report -i "$1" --no-children --stdio 2> /dev/null |
        awk '/^ +[0-9.]+%/ && /wait_for_work|wait_with|has_work|final_check/ {s += $1} END {printf "%.1f", s}'
}
for i in $(seq "$runs"); do
    sock=$d/s.sock
    rm -f "$sock"
    t0=$(date +%s.%N)
    perf record -q -o "$d/back.data" -F 2999 -- "$bin" --role backend --cpu 0 --socket "$sock" \
        --size "$size" --spin-us 50 --uplink "$uplink" --tx-mode copy > /dev/null &
    backend=$!
    sleep 0.3
    perf record -q -o "$d/front.data" -F 2999 -- "$bin" --role "$role" --cpu 1 --socket "$sock" \
        --size "$size" --spin-us 50 --frames "$frames" --rx-mode copy > "$d/f.out" 2> /dev/null
    wait "$backend"
    t1=$(date +%s.%N)
    mpps=$(awk '/^RESULT /{printf "%.2f", $2 / $3 / 1e6}' "$d/f.out")
    echo "$i $mpps Mpps, waiting: backend $(waiting "$d/back.data")%" \
        "frontend $(waiting "$d/front.data")% $t0 $t1" >> "$d/windows"
done
sleep 1.2
echo "run, Mpps, waiting, window (Unix s), share of near samples, placement"
"$bin" --role classify "$d/probe.txt" "$d/windows"
