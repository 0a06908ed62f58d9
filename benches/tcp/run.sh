#!/usr/bin/env bash
# TCP through pvnet against a veth pair, in the same run: iperf3 between two network
# namespaces, one stream and four, with and without offloads, in interleaved rounds (pvnet
# then veth within every round). pvnet: the netback example with a TAP uplink in namespace
# pvtA (the "host"), the netfront example as a TAP in pvtB (the "guest"), two processes
# joined by memfds, doorbells and a Unix socket. veth: a pair between pvtC and pvtD.
# Prints CSV (round,path,offloads,streams,gbit,cpu_s_per_gbit,own_cpu_s_per_gbit,
# sleeps_per_gb) then a summary with the median, quartiles and the per-round pvnet/veth
# ratio; then round-trip latency (ping). CPU is the whole machine's busy time during the
# transfer (/proc/stat: user, system, irq, softirq), per Gbit carried; own CPU is netback's
# and netfront's alone: their user and system time, which includes the kernel work done in
# their context (the TAPs' copies, and the host's stack receiving what netback writes, which
# veth's path pays in softirq). Sleeps are the times netback and netfront blocked
# (voluntary context switches, so each one is a wake-up to pay), per GB carried. The last
# two are pvnet's only. Needs root, iperf3, ping, ethtool.
#
#   benches/tcp/run.sh [ROUNDS] [SECONDS]      # e.g. benches/tcp/run.sh 10 5
#   BACK_ARGS="--spin-us 50" FRONT_ARGS="--spin-us 50" benches/tcp/run.sh   # extra arguments
#   OFFLOADS="on" STREAMS="1" benches/tcp/run.sh                        # fewer configurations
#   BIN=/other/checkout/target/release/examples benches/tcp/run.sh       # another build
#   PIN=0 benches/tcp/run.sh        # netback and netfront both on CPU 0 (a taskset list)
#   REVERSE=1 benches/tcp/run.sh    # the "host" sends to the "guest" (iperf3 -R)
#   CC=cubic benches/tcp/run.sh     # TCP congestion control of both paths (default: the
#                                   # machine's net.ipv4.tcp_congestion_control)
#   PROBE=0 benches/tcp/run.sh      # without the placement probe
#
# The placement probe (the pvnet bench's `--role probe`, benches/pvnet/probe.rs) times a
# cache line's round trip between CPUs 0 and 1 every 100 ms through the whole run: a virtual
# machine's two vCPUs are sometimes under one cache ("near", 50-120 ns here) and sometimes
# not ("far", 400-550 ns). At the end the run prints each transfer's share of near samples
# and the pvnet/veth ratio again over the rounds where both transfers were near, and far.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}
SECS=${2:-5}
[ "$(id -u)" = 0 ] || { echo "benches/tcp/run.sh: needs root (namespaces, TAPs)" >&2; exit 1; }
for t in iperf3 ping ethtool ip; do
    command -v "$t" > /dev/null || { echo "benches/tcp/run.sh: needs $t" >&2; exit 1; }
done
# BIN: the netback and netfront examples to run (another build's, for an A/B); built here
# when not given.
if [ -n "${BIN:-}" ]; then
    bin=$BIN
else
    cargo build --release --quiet --example netback --example netfront
    bin=target/release/examples
fi
# PIN: the CPUs netback and netfront run on (taskset -c); unset, the scheduler places them.
# iperf3 is never pinned, on either path.
pin=()
[ -n "${PIN:-}" ] && pin=(taskset -c "$PIN")
# REVERSE=1: iperf3 -R, the server (the "host") sends.
reverse=()
[ "${REVERSE:-0}" = 1 ] && reverse=(-R)
# CC: the congestion control both paths' connections use (iperf3 -C), printed with the
# results: the ratio depends on it (bbr's window follows the measured round trip, which is
# longer through pvnet than through veth; cubic lets veth run further ahead).
cc=${CC:-$(cat /proc/sys/net/ipv4/tcp_congestion_control)}
dir=$(mktemp -d)
pids=()
# PROBE: the placement probe, from this checkout's pvnet bench (built here), on by default.
probe_bin=
if [ "${PROBE:-1}" = 1 ]; then
    probe_bin=$(cargo bench --bench pvnet --no-run 2>&1 |
        sed -n 's/^ *Executable benches\/pvnet\/main.rs (\(.*\))$/\1/p')
    [ -x "$probe_bin" ] || { echo "benches/tcp/run.sh: no pvnet bench binary: running without the placement probe" >&2; probe_bin=; }
fi
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    wait 2> /dev/null || true
    for ns in pvtA pvtB pvtC pvtD; do ip netns del "$ns" 2> /dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
for ns in pvtA pvtB pvtC pvtD; do
    ip netns del "$ns" 2> /dev/null || true
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done

if [ -n "$probe_bin" ]; then
    "$probe_bin" --role probe > "$dir/probe.txt" 2> /dev/null &
    pids+=($!)
fi

# veth between pvtC (10.91.0.1) and pvtD (10.91.0.2).
ip link add pvtvc type veth peer name pvtvd
ip link set pvtvc netns pvtC
ip link set pvtvd netns pvtD
ip -n pvtC addr add 10.91.0.1/24 dev pvtvc
ip -n pvtD addr add 10.91.0.2/24 dev pvtvd
ip -n pvtC link set pvtvc up
ip -n pvtD link set pvtvd up

# pvnet: the backend's TAP in pvtA (10.90.0.1), the frontend's in pvtB (10.90.0.2).
sock=$dir/b.sock
# shellcheck disable=SC2086 # word splitting of the extra arguments is wanted
"${pin[@]}" "$bin/netback" --socket "$sock" --tap pvtba ${BACK_ARGS:-} > "$dir/back.log" 2>&1 &
backend=$!
pids+=("$backend")
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
ip link set pvtba netns pvtA
ip -n pvtA addr add 10.90.0.1/24 dev pvtba
ip -n pvtA link set pvtba up

frontend=
start_frontend() { # offloads: on | off
    [ -n "$frontend" ] && { kill "$frontend"; wait "$frontend" 2> /dev/null || true; }
    local extra=()
    [ "$1" = off ] && extra=(--no-offloads)
    # shellcheck disable=SC2086
    "${pin[@]}" "$bin/netfront" --socket "$sock" --mode tap --tap pvtfb --mac 2 "${extra[@]}" \
        ${FRONT_ARGS:-} > "$dir/front.log" 2>&1 &
    frontend=$!
    pids+=("$frontend")
    for _ in $(seq 100); do ip link show pvtfb > /dev/null 2>&1 && break; sleep 0.1; done
    ip link set pvtfb address 02:00:00:00:00:02
    ip link set pvtfb netns pvtB
    ip -n pvtB addr add 10.90.0.2/24 dev pvtfb
    ip -n pvtB link set pvtfb up
    for _ in $(seq 50); do ip netns exec pvtB ping -c 1 -W 1 10.90.0.1 > /dev/null 2>&1 && break; done
}

veth_offloads() { # on | off
    local mode=$1 ns dev
    for side in "pvtC pvtvc" "pvtD pvtvd"; do
        read -r ns dev <<< "$side"
        ip netns exec "$ns" ethtool -K "$dev" tx "$mode" tso "$mode" gso "$mode" gro "$mode" \
            sg "$mode" > /dev/null 2>&1 || true
    done
}

busy() { # the machine's busy jiffies so far
    awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat
}

own() { # netback's and netfront's CPU time so far, in jiffies (utime + stime of all threads)
    sed 's/^.*) //' "/proc/$backend/stat" "/proc/$frontend/stat" 2> /dev/null |
        awk '{n += $12 + $13} END {print n + 0}'
}

sleeps() { # how often netback and netfront have blocked so far (voluntary context switches)
    cat "/proc/$backend/task/"*/status "/proc/$frontend/task/"*/status 2> /dev/null |
        awk '/^voluntary_ctxt_switches/{n += $2} END {print n + 0}'
}

# One iperf3 transfer from the "guest" namespace to the "host" one (the other way with
# REVERSE): Gbit/s, CPU s/Gbit, pvnet's own CPU s/Gbit and its sleeps per GB.
transfer() { # client_ns server_ns server_ip streams path
    ip netns exec "$2" iperf3 -s -1 -p 5299 > /dev/null 2>&1 &
    local server=$!
    sleep 0.3
    local b0 t0 b1 t1 gbit s0 s1 o0 o1
    b0=$(busy)
    o0=$(own)
    s0=$(sleeps)
    t0=$(date +%s.%N)
    gbit=$(ip netns exec "$1" iperf3 -c "$3" -p 5299 -t "$SECS" -P "$4" -C "$cc" "${reverse[@]}" -J 2> /dev/null |
        awk -F: '/"sum_received"/{r=1} r && /"bits_per_second"/{gsub(/[ ,]/,"",$2); printf "%.3f", $2/1e9; exit}')
    b1=$(busy)
    o1=$(own)
    s1=$(sleeps)
    t1=$(date +%s.%N)
    echo "$t0 $t1" > "$dir/last_window"
    kill "$server" 2> /dev/null || true
    wait "$server" 2> /dev/null || true
    if [ -z "$gbit" ]; then
        echo "benches/tcp/run.sh: a transfer failed; the processes said:" >&2
        tail -5 "$dir/back.log" "$dir/front.log" >&2
    fi
    local hz
    hz=$(getconf CLK_TCK)
    # Own CPU and sleeps count only on pvnet's path (veth's transfers leave them unchanged).
    awk -v g="${gbit:-0}" -v b="$((b1 - b0))" -v hz="$hz" -v s="$SECS" -v z="$((s1 - s0))" \
        -v o="$((o1 - o0))" -v p="$5" 'BEGIN { cpu = b / hz; gb = g * s / 8; pv = p == "pvnet" && g > 0
            printf "%s,%.3f,%s,%s\n", g, (g > 0 ? cpu / (g * s) : 0),
                (pv ? sprintf("%.3f", o / hz / (g * s)) : ""), (pv ? sprintf("%.0f", z / gb) : "") }'
}

echo "direction: $([ ${#reverse[@]} -gt 0 ] && echo "host to guest" || echo "guest to host"), congestion control: $cc"
echo "round,path,offloads,streams,gbit,cpu_s_per_gbit,own_cpu_s_per_gbit,sleeps_per_gb" |
    tee "$dir/tcp.csv"
for off in ${OFFLOADS:-on off}; do
    start_frontend "$off"
    veth_offloads "$off"
    for r in $(seq "$ROUNDS"); do
        for p in ${STREAMS:-1 4}; do
            echo "$r,pvnet,$off,$p,$(transfer pvtB pvtA 10.90.0.1 "$p" pvnet)" | tee -a "$dir/tcp.csv"
            echo "$r pvnet $off,$p $(cat "$dir/last_window")" >> "$dir/windows"
            echo "$r,veth,$off,$p,$(transfer pvtD pvtC 10.91.0.1 "$p" veth)" | tee -a "$dir/tcp.csv"
            echo "$r veth $off,$p $(cat "$dir/last_window")" >> "$dir/windows"
        done
    done
done

# An insertion sort for the awk programs below (a few dozen values each).
awk_sort='function sort(a, m,   i, j, t) { for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j-1] > a[j]; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t } }'

echo
echo "summary: median Gbit/s (quartiles), median CPU s per Gbit (and pvnet's own CPU s per"
echo "Gbit and sleeps per GB), per-round pvnet/veth median (quartiles)"
awk -F, "$awk_sort"'
NR > 1 {
    k = $3 "," $4; v[$2 "," k, ++n[$2 "," k]] = $5; c[$2 "," k, n[$2 "," k]] = $6
    u[$2 "," k, n[$2 "," k]] = $7; w[$2 "," k, n[$2 "," k]] = $8
    if ($2 == "pvnet") pv[k, $1] = $5; else ve[k, $1] = $5
    keys[k] = 1; rounds[$1] = 1
}
function q(a, m, f) { return a[int(f * (m - 1)) + 1] }
END {
    for (k in keys) {
        for (pth = 0; pth < 2; pth++) {
            p = pth ? "veth" : "pvnet"; m = n[p "," k]
            for (i = 1; i <= m; i++) {
                x[i] = v[p "," k, i]; y[i] = c[p "," k, i]; o[i] = u[p "," k, i]; s[i] = w[p "," k, i]
            }
            sort(x, m); sort(y, m); sort(o, m); sort(s, m)
            printf "  %-5s offloads %-3s %s stream(s): %6.2f Gbit/s (%.2f-%.2f), %.3f CPU s/Gbit%s\n",
                p, substr(k, 1, index(k, ",") - 1), substr(k, index(k, ",") + 1), q(x, m, .5), q(x, m, .25), q(x, m, .75), q(y, m, .5),
                (pth ? "" : sprintf(" (own %.3f), %d sleeps/GB", q(o, m, .5), q(s, m, .5)))
        }
        m = 0
        for (r in rounds) if (ve[k, r] > 0) z[++m] = pv[k, r] / ve[k, r]
        sort(z, m)
        printf "  pvnet/veth, offloads %s: %.3f (%.3f-%.3f)\n", k, q(z, m, .5), q(z, m, .25), q(z, m, .75)
    }
}' "$dir/tcp.csv"

# Placement: the probe's samples split into near and far at their widest gap (the pvnet
# bench's own rule, `--role classify`); a transfer counts as near (far) when at least 90% of
# the samples over it are near (far). Transfers are seconds long and the placement changes
# within them, so the near and far rates of each path are also fitted over all of them.
if [ -s "$dir/probe.txt" ]; then
    echo
    "$probe_bin" --role classify "$dir/probe.txt" "$dir/windows" > "$dir/placed"
    sed -n 's/^# //p' "$dir/placed"
    echo "share of each transfer's samples that were near (round path offloads,streams: share)"
    awk -v csv="$dir/tcp.csv" -v fitted="$dir/fit_points" "$awk_sort"'
    !/^#/ {
        printf "%s%s %s %s: %s", (++j == 1 ? "  " : (j % 4 == 1 ? "\n  " : ";  ")), $1, $2, $3, $6
        share[$1, $2, $3] = $6; keys[$3] = 1; rounds[$1] = 1
    }
    END {
        printf "\n"
        while ((getline line < csv) > 0) { split(line, c, ","); if (c[1] ~ /^[0-9]+$/) g[c[1], c[2], c[3] "," c[4]] = c[5] }
        for (k in keys) for (pl = 0; pl < 2; pl++) {
            z = 0
            for (r in rounds) {
                a = share[r, "pvnet", k]; b = share[r, "veth", k]
                if (a == "-" || b == "-" || g[r, "veth", k] <= 0) continue
                if (pl ? (a <= 0.1 && b <= 0.1) : (a >= 0.9 && b >= 0.9)) x[++z] = g[r, "pvnet", k] / g[r, "veth", k]
            }
            sort(x, z)
            printf "  pvnet/veth, offloads %s, rounds with both transfers %s: ", k, (pl ? "far" : "near")
            if (z) printf "%.3f (%.3f-%.3f, n=%d)\n", x[int((z - 1) / 2) + 1], x[1], x[z], z
            else print "none"
        }
        # Every transfer as (share, rate) for the fit.
        for (k in keys) for (pth = 0; pth < 2; pth++) {
            p = pth ? "veth" : "pvnet"
            for (r in rounds) {
                sh = share[r, p, k]; y = g[r, p, k]
                if (sh != "-" && y != "") print k, p, sh, y > fitted
            }
        }
    }' "$dir/placed"
    # A transfer of share s near carries s x (the near rate) + (1 - s) x (the far rate): a
    # least-squares line through every transfer of a path gives both rates, with errors.
    if [ -s "$dir/fit_points" ]; then
        "$probe_bin" --role fit "$dir/fit_points"
    fi
fi

echo
echo "round trips (ping -c 1000 -i 0.001, 56 bytes, offloads off):"
for pair in "pvnet pvtB 10.90.0.1" "veth pvtD 10.91.0.1"; do
    read -r name ns to <<< "$pair"
    printf "  %-5s " "$name"
    ip netns exec "$ns" ping -q -c 1000 -i 0.001 "$to" |
        awk '/^rtt/{print}'
done
