#!/usr/bin/env python3
"""Counts the cache lines that cross between the frontend's and the backend's core.

Reads valgrind lackey's trace (`--trace-mem=yes`) of benches/lines/probe.rs on standard
input, with the probe's own line naming its marker words and its stack in it; argv: the
number of counted frames, the binary (for symbols) and its load base.

A two-core model of coherence per 64-byte line: each side holds a copy or not; a load of a
line only the other side holds is a transfer to this side ("fetch"); a store to a line the
other side holds is a transfer too if this side had no copy ("fetch for write") or an
invalidation of the other's copy if it had one ("upgrade"). Lines only one side touches,
the probe's stack and its markers cost nothing. The single thread steps the sides in
whole phases, so the count is the floor of what two cores working concurrently pay: a
concurrent peer can take a line back in the middle of a batch.

Prints per frame: fetches, fetches for write and upgrades, by side, and the instructions
(symbolised with addr2line) that caused them.
"""

import collections
import os
import re
import subprocess
import sys

LINE = 64
# PVNET_LINES_DEBUG=N prints the first N transfers.
DEBUG = [int(os.environ.get("PVNET_LINES_DEBUG", "0"))]


def main():
    frames = int(sys.argv[1])
    binary, base = sys.argv[2], int(sys.argv[3], 16)
    marks = {}
    stack_lo = stack_hi = 0

    holders = {}  # line -> set of sides holding a copy
    counting = False
    side = None
    last_instr = 0
    by_kind = collections.Counter()  # (side, kind) -> count
    by_instr = collections.Counter()  # (side, kind, instr) -> count
    lines_seen = collections.Counter()  # (side, kind) -> distinct lines (for the record)

    def access(line, store):
        held = holders.get(line)
        if held is None:
            holders[line] = {side}
            return
        other = "B" if side == "F" else "F"
        kind = None
        if store:
            if other in held:
                kind = "upgrade" if side in held else "fetch for write"
            held.clear()
            held.add(side)
        elif side not in held:
            if other in held:
                kind = "fetch"
            held.add(side)
        if kind and counting:
            if DEBUG[0] > 0:
                DEBUG[0] -= 1
                print(f"debug: {side} {kind} line {line * LINE:#x} by {last_instr:#x}")
            by_kind[(side, kind)] += 1
            by_instr[(side, kind, last_instr)] += 1

    for raw in sys.stdin:
        try:
            if raw.startswith("I"):
                last_instr = int(raw[3:].split(",", 1)[0], 16)
                continue
        except ValueError:
            continue  # a trace line cut by the probe's own output
        if raw.startswith("MARKS "):
            w = raw.split()
            front, back, begin, end, stack = (int(w[i], 16) for i in (1, 2, 3, 4, 6))
            marks = {front: "F", back: "B", begin: "begin", end: "end"}
            stack_lo, stack_hi = stack - (64 << 20), stack + (1 << 20)
            continue
        if not raw.startswith(" "):
            continue
        op = raw[1]
        try:
            addr_s, size_s = raw[3:].split(",", 1)
            addr, size = int(addr_s, 16), int(size_s)
        except ValueError:
            continue  # a trace line cut by the probe's own output
        if op in "SM" and addr in marks:
            m = marks[addr]
            if m == "begin":
                counting = True
            elif m == "end":
                counting = False
            else:
                side = m
            continue
        if side is None or stack_lo <= addr < stack_hi:
            continue
        first, last = addr // LINE, (addr + size - 1) // LINE
        for line in range(first, last + 1):
            if op == "M":
                access(line, False)
                access(line, True)
            else:
                access(line, op == "S")

    names = symbolise(binary, base, {k[2] for k in by_instr})
    total = sum(by_kind.values())
    print(f"cache lines crossing cores per frame ({frames} frames counted): {total / frames:.3f}")
    for (s, kind), n in sorted(by_kind.items()):
        who = "frontend" if s == "F" else "backend"
        print(f"  {who:8} {kind:15} {n / frames:7.3f}")
    print("by instruction (>= 0.01 per frame):")
    grouped = collections.Counter()
    for (s, kind, ins), n in by_instr.items():
        grouped[("frontend" if s == "F" else "backend", kind, names.get(ins, hex(ins)))] += n
    for (who, kind, name), n in grouped.most_common():
        if n / frames < 0.01:
            break
        print(f"  {n / frames:7.3f}  {who:8} {kind:15} {name}")


# Frames skipped for the caller: the atomics and the shared-memory accessors every access
# goes through.
LIBRARY = re.compile(r"^<?core::|^<?pvnet_shared_mem::|^<pvnet_io_ring::shared::")


def symbolise(binary, base, addrs):
    """The innermost function outside `core` and the shared-memory accessors (and its
    source line) of each instruction address, via addr2line with inlined frames."""
    inside = sorted(a for a in addrs if a >= base)
    if not inside:
        return {}
    try:
        out = subprocess.run(
            ["addr2line", "-a", "-f", "-C", "-i", "-e", binary] + [hex(a - base) for a in inside],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {}
    groups, cur = [], None
    i = 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = []
            groups.append(cur)
            i += 1
            continue
        cur.append((out[i], out[i + 1] if i + 1 < len(out) else "?"))
        i += 2
    names = {}
    for a, frames in zip(inside, groups):
        pick = next((f for f in frames if not LIBRARY.search(f[0])), frames[0])
        func, loc = pick
        func = func.split("<")[0] if len(func) > 90 else func
        names[a] = f"{func} ({loc.rsplit('/', 1)[-1].split(' ')[0]})"
    return names


if __name__ == "__main__":
    main()
