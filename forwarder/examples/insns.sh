#!/usr/bin/env bash
# Instructions per established packet of the forwarder in a worktree, under callgrind: for
# IPv4 and IPv6 (SIDESTEP_INSNS_FAMILIES, default "ipv4 ipv6"; a tree without IPv6 takes
# "ipv4"), dsr-l2 and dsr-l3, process_burst and process, the difference between 300 and 100 rounds of 32
# over the 6 400 extra packets (see insns.rs). Noise-free, so it compares trees on a busy machine.
# Usage: forwarder/examples/insns.sh [WORKTREE] [LABEL]
set -euo pipefail
wt="$(cd "${1:-$(dirname "$0")/../..}" && pwd)"
label="${2:-$(git -C "$wt" rev-parse --short HEAD)}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
(cd "$wt" && cargo build -q --release -p forwarder --example insns)
bin="$wt/target/release/examples/insns"
total() { callgrind_annotate --inclusive=yes "$1" 2>/dev/null | awk -v f="insns::$2" '$0 ~ f && !n++ {gsub(",", "", $1); print $1}'; }
for family in ${SIDESTEP_INSNS_FAMILIES:-ipv4 ipv6}; do
    for mode in dsr-l2 dsr-l3; do
        for rounds in 100 300; do
            SIDESTEP_INSNS_FAMILY=$family SIDESTEP_INSNS_MODE=$mode SIDESTEP_INSNS_ROUNDS=$rounds \
                valgrind --tool=callgrind --callgrind-out-file="$out/$family.$mode.$rounds" \
                --toggle-collect='insns::burst' --toggle-collect='insns::single' "$bin" \
                >/dev/null 2>&1
        done
        for fn in burst single; do
            a=$(total "$out/$family.$mode.100" $fn)
            b=$(total "$out/$family.$mode.300" $fn)
            echo "$label $family $mode $fn $(python3 -c "print(round(($b - $a) / 6400, 1))")"
        done
    done
done
