#!/usr/bin/env bash
# A/B of two builds of the pvnet bench harness: their own child roles, run directly, in
# interleaved rounds (old, new, then old again within every round), copy mode, tx and rx at
# 64 and 65535 bytes. Each run is a backend process on CPU 0 and a frontend process on CPU 1
# with a 50 us spin on both sides, as `cargo bench --bench pvnet` does. Prints CSV:
# round,version,mode,size,fps (version old, new or old2; for the ping modes, round trips
# through an echo backend, the median round trip in ns instead; ping0 without spin). Build
# each side with `cargo bench --bench pvnet --no-run` (in a worktree of the other commit with
# its own CARGO_TARGET_DIR) and pass the two `target/release/deps/pvnet-*` binaries.
#
# The second old run is the noise floor: at the end (on stderr) every configuration gets
# new / old, where old is the mean of the round's two old runs (so drift within a round
# cancels), and old / old (the A/A ratio, the second run over the first), each as a median
# and quartiles over the rounds. A change is told apart from noise only where both new / old
# quartiles lie further from 1, on one side, than either A/A quartile does (the A/A ratio
# also carries the order within a round); otherwise the summary says "within noise". The
# summary is the harness's `--role ab-summary` (of NEW, or of the binary SUMMARY names), whose
# rule `tests/bench_stats.rs` tests.
#
# The placement probe (`--role probe` of NEW, or of the binary PROBE names; PROBE=none for
# none) times a cache line's round trip between CPUs 0 and 1 all through the run: a virtual
# machine's two vCPUs are sometimes under one cache ("near") and sometimes not ("far"), which
# moves a 64 B run's rate by up to 2x. The summary is then given again over the rounds whose
# three runs were all near, and all far (each run's placement as the harness decides it).
#
#   benches/pvnet/ab.sh OLD_BIN NEW_BIN [ROUNDS] > ab.csv
#   CONFIGS="rx:64:2000000" benches/pvnet/ab.sh OLD_BIN NEW_BIN 100   # one configuration
#
# One build against itself with a setting changed: a wrapper script as OLD or NEW, e.g. the
# frontend's receive buffers (PVNET_RX_BUFFERS=256: one per ring slot, each posted again as
# soon as it is read, as Linux netfront does; unset, netfront's default):
#   printf '#!/bin/sh\nPVNET_RX_BUFFERS=256 exec %s "$@"\n' "$BIN" > /tmp/rb; chmod +x /tmp/rb
#   benches/pvnet/ab.sh "$BIN" /tmp/rb 10
# The backend's grant claims the same way (PVNET_PERSISTENT=0: none kept between copies, as a
# guest that grants per packet needs; unset, kept), or glibc's choices (GLIBC_TUNABLES).
set -euo pipefail
OLD=$1
NEW=$2
ROUNDS=${3:-30}
dir=$(mktemp -d)
probe=${PROBE:-$NEW}
prober=
cleanup() {
    if [ -n "$prober" ]; then kill "$prober" 2> /dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
if [ "$probe" != none ]; then
    "$probe" --role probe > "$dir/probe.txt" 2> /dev/null &
    prober=$!
fi
run() { # binary mode size frames
    local bin=$1 mode=$2 size=$3 frames=$4 sock=$dir/s.sock uplink role spin=50 count=--frames
    rm -f "$sock"
    case "$mode" in
        tx) uplink=sink; role=front-tx ;;
        rx) uplink=source; role=front-rx ;;
        # Round trips, one frame at a time through an echo backend; ping0 sleeps on the
        # event channels (no spin), where a notification's cost shows.
        ping) uplink="echo"; role=front-ping; count=--trips ;;
        ping0) uplink="echo"; role=front-ping; count=--trips; spin=0 ;;
    esac
    "$bin" --role backend --cpu 0 --socket "$sock" --size "$size" --spin-us "$spin" \
        --uplink "$uplink" --tx-mode copy > "$dir/b.out" &
    local backend=$!
    if ! "$bin" --role "$role" --cpu 1 --socket "$sock" --size "$size" --spin-us "$spin" \
        "$count" "$frames" --rx-mode copy > "$dir/f.out" 2> "$dir/f.err"; then
        # A frontend that failed (an older build's connect could race the backend's listen)
        # leaves a backend waiting: stop it, and report no number for this run.
        kill "$backend" 2> /dev/null || true
        wait "$backend" 2> /dev/null || true
        echo ""
        return
    fi
    wait "$backend"
    # Frames per second, or for round trips the median latency (as the harness prints it).
    awk '/^RESULT /{printf "%.0f\n", $2/$3} /^LAT /{print $2}' "$dir/f.out"
}
echo "round,version,mode,size,fps" | tee "$dir/ab.csv"
for r in $(seq "$ROUNDS"); do
    for cfg in ${CONFIGS:-tx:64:2000000 rx:64:2000000 tx:65535:40000 rx:65535:40000}; do
        IFS=: read -r mode size frames <<< "$cfg"
        set -- "$mode" "$size" "$frames"
        for v in old new old2; do
            bin=$OLD
            [ "$v" = new ] && bin=$NEW
            t0=$(date +%s.%N)
            echo "$r,$v,$1,$2,$(run "$bin" "$1" "$2" "$3")" | tee -a "$dir/ab.csv"
            echo "$r,$v,$1,$2 $t0 $(date +%s.%N)" >> "$dir/windows"
        done
    done
done

# Each run's placement, if the probe ran: "round,version,mode,size placement" lines.
if [ -s "$dir/probe.txt" ]; then
    "$probe" --role classify "$dir/probe.txt" "$dir/windows" > "$dir/classified"
    sed -n 's/^# //p' "$dir/classified" >&2
    awk '!/^#/ { print $1, $NF }' "$dir/classified" > "$dir/placed"
else
    : > "$dir/placed"
fi

# The summary (the harness's `--role ab-summary`, of NEW or of the binary SUMMARY names): per
# configuration, new / old and the A/A ratio over the rounds that have all three numbers;
# then, if the probe ran, over the rounds whose three runs were all near, and all far. For
# round trips (ping modes) a smaller number is better: their ratios are old / new, so that
# above 1 means "new is better" everywhere.
summary=${SUMMARY:-$NEW}
if ! "$summary" --role ab-summary "$dir/ab.csv" "$dir/placed" >&2; then
    echo "ab.sh: $summary has no --role ab-summary (set SUMMARY to a newer harness binary);" \
        "the CSV above is complete" >&2
fi
