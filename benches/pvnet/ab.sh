#!/usr/bin/env bash
# A/B of two builds of the pvnet bench harness: their own child roles, run directly, in
# interleaved rounds (old then new within every round), copy mode, tx and rx at 64 and
# 65535 bytes. Each run is a backend process on CPU 0 and a frontend process on CPU 1 with a
# 50 us spin on both sides, as `cargo bench --bench pvnet` does. Prints CSV:
# round,version,mode,size,fps (for the ping modes, round trips through an echo backend, the
# median round trip in ns instead; ping0 without spin). Build each side with
# `cargo bench --bench pvnet --no-run`
# (in a worktree of the other commit with its own CARGO_TARGET_DIR) and pass the two
# `target/release/deps/pvnet-*` binaries.
#
#   benches/pvnet/ab.sh OLD_BIN NEW_BIN [ROUNDS] > ab.csv
#   CONFIGS="rx:64:2000000" benches/pvnet/ab.sh OLD_BIN NEW_BIN 100   # one configuration
set -euo pipefail
OLD=$1
NEW=$2
ROUNDS=${3:-30}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
run() { # binary mode size frames
    local bin=$1 mode=$2 size=$3 frames=$4 sock=$dir/s.sock uplink role spin=50 count=--frames
    rm -f "$sock"
    case "$mode" in
        tx) uplink=sink; role=front-tx ;;
        rx) uplink=source; role=front-rx ;;
        # Round trips, one frame at a time through an echo backend; ping0 sleeps on the
        # event channels (no spin), where a notification's cost shows.
        ping) uplink=echo; role=front-ping; count=--trips ;;
        ping0) uplink=echo; role=front-ping; count=--trips; spin=0 ;;
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
echo "round,version,mode,size,fps"
for r in $(seq "$ROUNDS"); do
    for cfg in ${CONFIGS:-tx:64:2000000 rx:64:2000000 tx:65535:40000 rx:65535:40000}; do
        IFS=: read -r mode size frames <<< "$cfg"
        set -- "$mode" "$size" "$frames"
        for v in old new; do
            bin=$OLD
            [ "$v" = new ] && bin=$NEW
            echo "$r,$v,$1,$2,$(run "$bin" "$1" "$2" "$3")"
        done
    done
done
