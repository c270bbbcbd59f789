#!/usr/bin/env python3
"""Guest instructions per function from a qemu/tbprof dump.

    qemu/tbprof/report.py KERNEL_ELF DUMP FRAMES [--base 0x10000000000] [--top 25]

DUMP has one line per translation block: guest address (hex), instructions in the block,
executions. Each block is charged to the kernel symbol that contains its first instruction,
and every figure is divided by FRAMES (e.g. the frames forwarded while the dump was taken).
The bootloader loads the (position-independent) kernel at 0x100_0000_0000; --base changes it.
"""
import argparse
import bisect
import collections
import subprocess


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kernel")
    ap.add_argument("dump")
    ap.add_argument("frames", type=int)
    ap.add_argument("--base", default="0x10000000000")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    base = int(a.base, 16)
    nm = subprocess.run(["nm", "-C", "--defined-only", a.kernel],
                        capture_output=True, text=True, check=True).stdout
    syms = []
    for line in nm.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    syms.sort()
    starts = [s for s, _ in syms]
    per_fn = collections.Counter()
    total = 0
    for line in open(a.dump):
        vaddr, insns, runs = line.split()
        addr = int(vaddr, 16) - base
        count = int(insns) * int(runs)
        i = bisect.bisect_right(starts, addr) - 1
        name = syms[i][1] if i >= 0 else "(outside the kernel)"
        per_fn[name[:100]] += count
        total += count
    frames = max(a.frames, 1)
    print(f"guest instructions: {total}, per frame: {total / frames:.0f}")
    for name, count in per_fn.most_common(a.top):
        print(f"{count / frames:9.1f} {100 * count / max(total, 1):5.1f}%  {name}")


if __name__ == "__main__":
    main()
