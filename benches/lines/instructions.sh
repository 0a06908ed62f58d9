#!/usr/bin/env bash
# Instructions per frame, counted exactly by valgrind's callgrind.
#
#   benches/lines/instructions.sh pvnet tx|rx [SIZE]   the cache-line probe (both sides in
#       one thread), 10,000 and 30,000 frames; the difference divided by 20,000, in total
#       and for the functions that cost the most (inclusive).
#   benches/lines/instructions.sh memif tx|rx [SIZE]   one dpdk-testpmd (txonly client or
#       rxonly server) under callgrind against a native other one, for 60 and 120 s; the
#       difference of instructions divided by the difference of frames it sent or received
#       (so start-up cancels). Needs dpdk-testpmd (apt-get install dpdk).
set -euo pipefail
cd "$(dirname "$0")/../.."
what="${1:?pvnet or memif}" dir="${2:?tx or rx}" size="${3:-64}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# Per-function inclusive instruction counts of two callgrind outputs, the difference divided
# by $3 (frames), largest first.
diff_profiles() {
    python3 - "$1" "$2" "$3" <<'EOF'
import re, subprocess, sys
def load(path):
    out = subprocess.run(["callgrind_annotate", "--auto=no", "--inclusive=yes",
                          "--threshold=100", path], capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*)", line)
        if m:
            d[m.group(2).strip()] = int(m.group(1).replace(",", ""))
    return d
a, b, frames = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
total = (b.get("PROGRAM TOTALS", 0) - a.get("PROGRAM TOTALS", 0)) / frames
print(f"instructions per frame: {total:.1f}")
# A function inlined into several files appears once per file: keep its largest count.
best = {}
for k in b:
    if k.startswith("PROGRAM") or "???" in k or "(below" in k:
        continue
    name = re.sub(r"\s*\[.*\]$", "", k.split(":", 1)[-1])
    if re.search(r"lang_start|backtrace|::main$|^main$|libc_start", name):
        continue
    best[name] = max(best.get(name, 0), (b[k] - a.get(k, 0)) / frames)
for name, v in sorted(best.items(), key=lambda x: -x[1]):
    if v >= 0.03 * total:
        print(f"  {v:8.1f}  {name[:110]}")
EOF
}

case "$what" in
pvnet)
    bin="$(cargo bench --bench lines --no-run --message-format=json 2>/dev/null \
        | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
    for n in 10000 30000; do
        valgrind --tool=callgrind --callgrind-out-file="$scratch/cg.$n" \
            "$bin" "$dir" "$size" "$n" 2> /dev/null
    done
    diff_profiles "$scratch/cg.10000" "$scratch/cg.30000" 20000
    ;;
memif)
    sock="$scratch/memif.sock"
    eal="--no-huge -m 1024 --no-pci"
    app="--total-num-mbufs=16384 --stats-period=1 --auto-start"
    server=(dpdk-testpmd -l 0,1 --main-lcore 1 $eal --file-prefix "pvs$$"
        "--vdev=net_memif0,role=server,socket=$sock" -- $app --forward-mode=rxonly)
    client=(dpdk-testpmd -l 0,1 --main-lcore 0 $eal --file-prefix "pvc$$"
        "--vdev=net_memif0,role=client,socket=$sock" -- $app --forward-mode=txonly
        "--txpkts=$size")
    counted=()
    for secs in 60 120; do
        rm -f "$sock"
        log="$scratch/counted.$secs.log"
        if [ "$dir" = tx ]; then
            "${server[@]}" > "$scratch/other.log" 2>&1 &
            other=$!
            sleep 3
            timeout -s INT "$secs" valgrind --tool=callgrind \
                --callgrind-out-file="$scratch/cg.$secs" "${client[@]}" > "$log" 2>&1 || true
            field=TX-packets
        else
            timeout -s INT "$((secs + 5))" valgrind --tool=callgrind \
                --callgrind-out-file="$scratch/cg.$secs" "${server[@]}" > "$log" 2>&1 &
            counted_pid=$!
            sleep 5
            timeout -s INT "$secs" "${client[@]}" > "$scratch/other.log" 2>&1 || true
            wait "$counted_pid" || true
            other=
            field=RX-packets
        fi
        [ -n "${other:-}" ] && { kill -INT "$other" 2>/dev/null || true; wait "$other" 2>/dev/null || true; }
        # The largest count testpmd printed: its total at exit.
        counted+=("$(grep -oE "$field: *[0-9]+" "$log" | awk '{print $2}' | sort -n | tail -1)")
    done
    echo "frames: ${counted[0]} in 60 s, ${counted[1]} in 120 s (under callgrind)"
    diff_profiles "$scratch/cg.60" "$scratch/cg.120" "$((counted[1] - counted[0]))"
    ;;
*)
    echo "usage: $0 pvnet|memif tx|rx [SIZE]" >&2
    exit 2
    ;;
esac
