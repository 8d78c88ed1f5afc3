#!/usr/bin/env bash
# qemu-load-check.sh — does QEMU 7.2 accept (load) a migration stream?
#
# Usage:
#   scripts/qemu-load-check.sh MACHINE "EXTRA QEMU ARGS" FILE [TIMEOUT_SECS]
#   scripts/qemu-load-check.sh --args NAME.args [FILE] [TIMEOUT_SECS]
#
# First form starts
#   qemu-system-x86_64 -nodefaults -display none -accel tcg -m 32 -S \
#       -machine MACHINE EXTRA... -incoming "exec:cat FILE" -qmp unix:<tmp>
# (EXTRA is word-split, e.g. "-device isa-serial"; the destination must have
# the same devices, the same -m and the same firmware sizes (RAMBlocks) as the
# source) and polls QMP `query-migrate` until the incoming migration reports
# "completed".  Second form takes the whole argv from a golden NAME.args file
# (as written by make-golden.sh, one argument per line), runs QEMU in that
# file's directory (so `-bios hlt-bios.bin` resolves) and defaults FILE to
# NAME.mig.  An argument containing @PTY@ gets a fresh pty (see
# qemu-driver.py).
#
# Exit status: 0 iff QEMU loaded the stream (migration status "completed");
# 1 if the load failed (QEMU prints e.g. "load of migration failed: ..." on
# stderr and exits 1; that stderr is echoed); 2 on timeout (default 30 s).
# The paused destination is then told to quit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
QEMU="${QEMU:-qemu-system-x86_64}"
DRIVER="$HERE/qemu-driver.py"

usage() { sed -n '2,25p' "$0" >&2; exit 64; }

args=()
pty=()
workdir="$PWD"
if [ "${1:-}" = "--args" ]; then
    [ $# -ge 2 ] || usage
    argsfile="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
    workdir="$(dirname "$argsfile")"
    file="${3:-${argsfile%.args}.mig}"
    timeout="${4:-30}"
    mapfile -t args < "$argsfile"
else
    [ $# -ge 3 ] || usage
    machine="$1"; extra="$2"; file="$3"; timeout="${4:-30}"
    # shellcheck disable=SC2206  # word splitting of EXTRA is intended
    args=(-nodefaults -display none -accel tcg -m 32 -machine "$machine" $extra)
fi
file="$(cd "$(dirname "$file")" && pwd)/$(basename "$file")"
[ -r "$file" ] || { echo "qemu-load-check: cannot read $file" >&2; exit 1; }
for a in "${args[@]}"; do
    case "$a" in *@PTY@*) pty=(--pty) ;; esac
done

cd "$workdir"
python3 "$DRIVER" --timeout "$timeout" "${pty[@]}" -c "@expect-incoming" -- \
    "$QEMU" "${args[@]}" -S -incoming "exec:cat '$file'"
