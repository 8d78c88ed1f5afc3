#!/usr/bin/env bash
# make-golden.sh — regenerate the golden QEMU 7.2 migration streams in
# tests/golden/qemu72/ (see FACTS.md there for what each stream contains).
#
# For every scenario it starts
#     qemu-system-x86_64 -nodefaults -display none -accel tcg -m 32 -S \
#         -rtc base=2020-01-01T00:00:00,clock=vm -machine <type> <devices>
# (the RTC clock scenarios rtc-host, rtc-host-set, rtc-vm and rtc-rt replace
# that -rtc: none at all, i.e. QEMU's defaults base=utc,clock=host, or
# `-rtc clock=vm` / `-rtc clock=rt`)
# under scripts/qemu-driver.py (QMP on a private unix socket), pokes device
# registers with HMP port writes (`o /b PORT VALUE`), migrates to
# "exec:cat > <name>.mig", waits until `query-migrate` says "completed" and
# quits.  Then it runs QEMU's scripts/analyze-migration.py on each stream
# (<name>.state.json = `-f`, <name>.desc.json = `-d desc`) and our own
# scripts/dump-sections.py (<name>.sections.txt).  The QEMU argv of each
# scenario (without -S/-qmp) is written to <name>.args, one argument per line,
# so scripts/qemu-load-check.sh can start a matching destination.
#
# Determinism: (see also MALLOC_PERTURB_ below) the guest CPU never runs (-S) in the deterministic scenarios,
# so QEMU_CLOCK_VIRTUAL stays at 0, and `-rtc base=...,clock=vm` makes the
# RTC use that clock and a fixed date; these streams are bit-for-bit
# reproducible.  Without `clock=vm` the RTC section differs from run to run
# (CMOS seconds, base_rtc, last_update, update_timer are host-clock based);
# the RTC clock scenarios are such runs on purpose.
# Scenarios marked "(runs)" resume the guest for ~100 ms with a 64 KiB
# "cli; hlt" firmware (hlt-bios.bin, generated here) so that timers fire;
# their timer/clock fields are NOT reproducible.
#
# Scenarios with a pty chardev (`-chardev serial,path=<pty>`) get a
# modem-control-capable backend (=> serial/poll) and, after the driver stops
# the pty's output with tcflow(TCOOFF), a transmitter stuck with tsr_retry=1
# (=> serial/tsr, and serial/xmit_fifo if more bytes are written).
#
# Usage:  scripts/make-golden.sh [SCENARIO ...]     (default: all)
# Needs:  qemu-system-x86_64 7.2 (Debian 12), python3, and for the JSON
#         oracles QEMU's analyze-migration.py (scripts/get-qemu-scripts.sh puts
#         it at /opt/qemu-src/scripts/analyze-migration.py; override with
#         ANALYZE=/path/to/analyze-migration.py).
# Env:    QEMU=qemu-system-x86_64, OUT=<repo>/tests/golden/qemu72
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
OUT="${OUT:-$ROOT/tests/golden/qemu72}"
QEMU="${QEMU:-qemu-system-x86_64}"
ANALYZE="${ANALYZE:-/opt/qemu-src/scripts/analyze-migration.py}"
DRIVER="$HERE/qemu-driver.py"
DUMP="$HERE/dump-sections.py"

mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The "cli; hlt; jmp $-3" firmware for scenarios that let the clock run.
# 64 KiB of zeros with FA F4 EB FD at offset 0xfff0 (the reset vector).
HLT_BIOS="$OUT/hlt-bios.bin"
python3 - "$HLT_BIOS" <<'PY'
import sys
b = bytearray(65536)
b[0xfff0:0xfff4] = bytes([0xfa, 0xf4, 0xeb, 0xfd])
open(sys.argv[1], "wb").write(b)
PY

# QEMU 7.2 allocates Fifo8 buffers with g_new (uninitialised), and the serial
# recv/xmit FIFO subsections send all 16 buffer bytes, including the ones
# outside [head, head+num).  glibc's MALLOC_PERTURB_=255 fills every fresh
# malloc() block with 0x00 (the complement of 255), which makes those bytes
# zero instead of heap garbage.  Without it two-ports and pc-q35-7.2 differ
# from run to run in recv_fifo data[5..15].
export MALLOC_PERTURB_=255

# Every scenario's argv starts with COMMON; RTC_VM follows unless the scenario
# passes --rtc (the rtc-clock scenarios below: QEMU's default host clock,
# clock=rt, clock=vm with the default base).
COMMON=(-nodefaults -display none -accel tcg -m 32)
RTC_VM=(-rtc base=2020-01-01T00:00:00,clock=vm)

# run_scenario NAME [--pty] [--rtc default|SPEC] -- QEMU-ARGS... ; commands are
# read from stdin.  --rtc default: no -rtc argument at all (QEMU's defaults,
# base=utc,clock=host); --rtc SPEC: `-rtc SPEC` instead of RTC_VM.
run_scenario() {
    local name="$1"; shift
    local pty=() rtc=("${RTC_VM[@]}")
    if [ "${1:-}" = "--pty" ]; then pty=(--pty); shift; fi
    if [ "${1:-}" = "--rtc" ]; then
        if [ "$2" = default ]; then rtc=(); else rtc=(-rtc "$2"); fi
        shift 2
    fi
    [ "$1" = "--" ] && shift
    local cmds="$TMP/$name.cmds"
    cat > "$cmds"
    echo "@migrate $OUT/$name.mig" >> "$cmds"
    rm -f "$OUT/$name.mig"
    echo "== $name: $QEMU ${COMMON[*]} ${rtc[*]} $*"
    printf '%s\n' "${COMMON[@]}" "${rtc[@]}" "$@" > "$OUT/$name.args"
    # QEMU runs with cwd=$OUT so that `-bios hlt-bios.bin` is a relative path
    # (the .args files stay valid wherever the repository is checked out).
    (cd "$OUT" && python3 "$DRIVER" --timeout 60 "${pty[@]}" --script "$cmds" -- \
        "$QEMU" "${COMMON[@]}" "${rtc[@]}" -S "$@")
    postprocess "$name"
}

postprocess() {
    local name="$1" f="$OUT/$1.mig"
    local desc_from=()
    if [ -f "$ANALYZE" ]; then
        if python3 "$ANALYZE" -f "$f" > "$OUT/$name.state.json" 2> "$TMP/err"; then
            python3 "$ANALYZE" -f "$f" -d desc > "$OUT/$name.desc.json"
        else
            # e.g. machine types <= 2.2 have no vmdesc; keep the error as the oracle
            rm -f "$OUT/$name.state.json" "$OUT/$name.desc.json"
            tail -n 1 "$TMP/err" > "$OUT/$name.analyze-error.txt"
            echo "   analyze-migration.py failed: $(cat "$OUT/$name.analyze-error.txt")"
        fi
    else
        echo "   (analyze-migration.py not found at $ANALYZE; run scripts/get-qemu-scripts.sh)"
    fi
    case "$name" in
        machine-pc-i440fx-2.2) desc_from=(--desc-from machine-pc-i440fx-2.3.mig) ;;
    esac
    (cd "$OUT" && python3 "$DUMP" "$name.mig" "${desc_from[@]}" \
        --hex serial --hex i8254 --hex mc146818rtc > "$name.sections.txt")
    echo "   $(stat -c %s "$f") bytes"
}

# ---------------------------------------------------------------- UART state
# 16550A at 0x3f8: FIFOs on with RX trigger level 4 (FCR=0x47 -> fcr 0x41),
# 9600 8N1 (DLL=0x0c, DLM=0), IER=0x0f, MCR=0x1b (loopback|OUT2|RTS|DTR),
# five bytes "ABCDE" written to THR: in loopback they land in the receive
# FIFO (=> serial/recv_fifo, fifo timeout timer armed at vclock+4 chars
# => serial/fifo_timeout_timer; IIR=RDI while thr_ipending=1
# => serial/thr_ipending).  Scratch = 0x5a.  Port base is $1.
uart_fifo_cmds() {
    local b=$(( $1 )) w
    # Each write is offset-from-the-base:value.
    for w in 2:0x47 3:0x80 0:0x0c 1:0x00 3:0x03 1:0x0f 4:0x1b \
        0:0x41 0:0x42 0:0x43 0:0x44 0:0x45 7:0x5a; do
        printf 'o /b 0x%x %s\n' $((b + ${w%%:*})) "${w#*:}"
    done
}

scenario_idle() {
    run_scenario idle -- -machine pc-i440fx-7.2 -device isa-serial < /dev/null
}

scenario_uart_fifo() {
    uart_fifo_cmds 0x3f8 | run_scenario uart-fifo -- -machine pc-i440fx-7.2 -device isa-serial
}

# pty backend, no guest execution (deterministic):
# loopback bytes -> recv_fifo + fifo_timeout_timer; then leave loopback,
# stop the pty output and write "abcde": 'a' is stuck in TSR (tsr_retry=1),
# "bcde" stay in the transmit FIFO.  poll_msl=1 (IER.MSI with a tty backend).
scenario_uart_xmit() {
    { uart_fifo_cmds 0x3f8; cat <<'EOF'
o /b 0x3fc 0x0b
@pty-stop
o /b 0x3f8 0x61
o /b 0x3f8 0x62
o /b 0x3f8 0x63
o /b 0x3f8 0x64
o /b 0x3f8 0x65
EOF
    } | run_scenario uart-xmit --pty -- -machine pc-i440fx-7.2 \
        -chardev serial,id=c0,path=@PTY@ -device isa-serial,chardev=c0
}

# (runs) pty backend + hlt firmware: loopback bytes, run 100 ms so the FIFO
# timeout fires (timeout_ipending=1), stop, one more loopback byte re-arms
# the timeout timer, leave loopback, stop the pty output and write one byte:
# it sits in TSR (tsr_retry=1) with the FIFO empty, so THRE=1 and
# thr_ipending=1 while IIR shows the timeout => serial/thr_ipending.
scenario_uart_timeout() {
    { uart_fifo_cmds 0x3f8; cat <<'EOF'
@cont-ms 100
o /b 0x3f8 0x46
o /b 0x3fc 0x0b
@pty-stop
o /b 0x3f8 0x61
EOF
    } | run_scenario uart-timeout --pty -- -machine pc-i440fx-7.2 -bios hlt-bios.bin \
        -chardev serial,id=c0,path=@PTY@ -device isa-serial,chardev=c0
}

# COM1 as uart-fifo; COM2 (index=1 -> 0x2f8, irq 3): FIFOs off, 115200 8E1
# (DLL=1, LCR=0x1b), IER=0x01, loopback bytes 0x31,0x32 (overrun: rbr=0x32,
# LSR.OE|DR), then MCR=0x03, scratch 0xa5.
scenario_two_ports() {
    { uart_fifo_cmds 0x3f8; cat <<'EOF'
o /b 0x2fb 0x80
o /b 0x2f8 0x01
o /b 0x2f9 0x00
o /b 0x2fb 0x1b
o /b 0x2f9 0x01
o /b 0x2fc 0x13
o /b 0x2f8 0x31
o /b 0x2f8 0x32
o /b 0x2fc 0x03
o /b 0x2ff 0xa5
EOF
    } | run_scenario two-ports -- -machine pc-i440fx-7.2 \
        -device isa-serial,index=0 -device isa-serial,index=1
}

# PIT: ch0 mode 2 lo/hi 0x2e9c; ch2 mode 3 lo/hi 0x1234 with the speaker gate
# (port 0x61 bit 0) on; ch1 mode 0 lsb-only 0x77; then latch ch0's count
# (0x43=0x00) and read-back-latch ch1's status (0x43=0xe4).
scenario_pit() {
    cat <<'EOF' | run_scenario pit -- -machine pc-i440fx-7.2 -device isa-serial
o /b 0x43 0x34
o /b 0x40 0x9c
o /b 0x40 0x2e
o /b 0x43 0xb6
o /b 0x42 0x34
o /b 0x42 0x12
o /b 0x61 0x01
o /b 0x43 0x50
o /b 0x41 0x77
o /b 0x43 0x00
o /b 0x43 0xe4
EOF
}

# RTC: register A = 0x2a (32.768 kHz base, rate 10 = 64 Hz), register B =
# 0x42 (PIE | 24h) => periodic timer armed; CMOS RAM 0x40..0x4f = 0x40..0x4f;
# leave the index register at 0x4f.
scenario_rtc() {
    {
        echo "o /b 0x70 0x0a"; echo "o /b 0x71 0x2a"
        echo "o /b 0x70 0x0b"; echo "o /b 0x71 0x42"
        for i in $(seq 64 79); do
            printf 'o /b 0x70 0x%x\no /b 0x71 0x%x\n' "$i" "$i"
        done
    } | run_scenario rtc -- -machine pc-i440fx-7.2 -device isa-serial
}

# (runs) RTC with lost_tick_policy=slew: periodic interrupt at 1024 Hz, the
# CPU sits in "cli; hlt" so ticks are not delivered via the APIC and get
# coalesced; reading register C then re-injects one
# (irq_reinject_on_ack_count=1 => mc146818rtc/irq_reinject_on_ack_count).
scenario_rtc_slew() {
    cat <<'EOF' | run_scenario rtc-slew -- -machine pc-i440fx-7.2 -bios hlt-bios.bin \
        -global mc146818rtc.lost_tick_policy=slew -device isa-serial
o /b 0x70 0x0a
o /b 0x71 0x26
o /b 0x70 0x0b
o /b 0x71 0x42
@cont-ms 100
o /b 0x70 0x0c
i /b 0x71
EOF
}

# ------------------------------------------------------- RTC clock sources
# QEMU's RTC keeps time as base_rtc (guest seconds) at last_update (ns on the
# RTC's clock, chosen with -rtc clock=host|rt|vm; host is the default), so
# these streams carry timestamps on three different clocks.  None of them is
# reproducible: the host and rt clocks run while the VM is paused, and the
# default base (utc) is the host's date when QEMU starts.

# The guest sets its own date, 2031-07-04 12:34:56 (a Friday), in SET mode:
# register B = 0x82 (SET | 24h), the BCD time registers and the century,
# then B = 0x02 (SET cleared: the new time starts counting).
rtc_set_date_cmds() {
    cat <<'EOF2'
o /b 0x70 0x0b
o /b 0x71 0x82
o /b 0x70 0x00
o /b 0x71 0x56
o /b 0x70 0x02
o /b 0x71 0x34
o /b 0x70 0x04
o /b 0x71 0x12
o /b 0x70 0x06
o /b 0x71 0x06
o /b 0x70 0x07
o /b 0x71 0x04
o /b 0x70 0x08
o /b 0x71 0x07
o /b 0x70 0x09
o /b 0x71 0x31
o /b 0x70 0x32
o /b 0x71 0x20
o /b 0x70 0x0b
o /b 0x71 0x02
EOF2
}

# QEMU's defaults: no -rtc argument (base=utc, clock=host).  Nothing touched:
# the RTC holds the host's UTC date; last_update is host-clock nanoseconds.
scenario_rtc_host() {
    run_scenario rtc-host --rtc default -- -machine pc-i440fx-7.2 -device isa-serial < /dev/null
}

# Defaults, and the guest sets its own date; 1.2 s pass on the host clock
# before the save (the VM stays paused), so the saved seconds are 57 or 58.
scenario_rtc_host_set() {
    { rtc_set_date_cmds; echo "@sleep-ms 1200"; } |
        run_scenario rtc-host-set --rtc default -- -machine pc-i440fx-7.2 -device isa-serial
}

# -rtc clock=vm (default base): the guest sets its date at virtual time 0,
# then runs ~1.5 s of "cli; hlt", so the saved time is about 12:34:57.5.
scenario_rtc_vm() {
    { rtc_set_date_cmds; echo "@cont-ms 1500"; } |
        run_scenario rtc-vm --rtc clock=vm -- -machine pc-i440fx-7.2 -bios hlt-bios.bin \
            -device isa-serial
}

# -rtc clock=rt: timestamps on QEMU's realtime (host monotonic) clock; the
# guest sets its date, 1.2 s pass before the save.
scenario_rtc_rt() {
    { rtc_set_date_cmds; echo "@sleep-ms 1200"; } |
        run_scenario rtc-rt --rtc clock=rt -- -machine pc-i440fx-7.2 -device isa-serial
}

# Framing variants: the uart-fifo state on other machine types (uart-fifo
# itself is the pc-i440fx-7.2 member; a separate run gave identical bytes).
scenario_machines() {
    local m
    for m in pc-q35-7.2 pc-i440fx-2.3 pc-i440fx-2.2; do
        uart_fifo_cmds 0x3f8 | run_scenario "machine-$m" -- -machine "$m" -device isa-serial
    done
}

# FACTS.md: keep the hand-written part above the marker line, regenerate the
# per-stream part below it with dump-sections.py --facts.
write_facts() {
    local facts="$OUT/FACTS.md" marker="<!-- GENERATED BELOW by scripts/make-golden.sh; do not edit below -->"
    local head="$TMP/facts.head" n d
    if [ -f "$facts" ] && grep -qF "$marker" "$facts"; then
        awk -v m="$marker" '$0 == m { exit } { print }' "$facts" > "$head"
    else
        printf '# Golden QEMU 7.2 streams\n\n' > "$head"
    fi
    {
        cat "$head"
        echo "$marker"
        echo
        for n in idle uart-fifo uart-xmit uart-timeout two-ports pit rtc rtc-slew \
                 rtc-host rtc-host-set rtc-vm rtc-rt machine-pc-q35-7.2 machine-pc-i440fx-2.3 machine-pc-i440fx-2.2; do
            [ -f "$OUT/$n.mig" ] || continue
            d=()
            [ "$n" = machine-pc-i440fx-2.2 ] && d=(--desc-from machine-pc-i440fx-2.3.mig)
            (cd "$OUT" && python3 "$DUMP" "$n.mig" "${d[@]}" --facts serial,i8254,mc146818rtc)
            echo
        done
    } > "$facts.new"
    mv "$facts.new" "$facts"
}

scenario_facts() { :; }   # `make-golden.sh facts` only rewrites FACTS.md

ALL=(idle uart_fifo uart_xmit uart_timeout two_ports pit rtc rtc_slew rtc_host rtc_host_set rtc_vm
     rtc_rt machines)
if [ $# -eq 0 ]; then set -- "${ALL[@]}"; fi
for s in "$@"; do
    "scenario_${s//-/_}"
done
write_facts
echo "done: streams in $OUT"
