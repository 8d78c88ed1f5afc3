#!/usr/bin/env bash
# make-qemu-dumps.sh — regenerate the QEMU `-dump-vmstate` fixtures used by
# compat-checker/tests/qemu.rs (`cargo compat-check qemu-dump`).
#
# Needs qemu-system-x86_64 (Debian 12 ships 7.2) and python3 (standard library
# only).  For each machine type it runs
#
#     qemu-system-x86_64 -M <machine> -nodefaults -display none -dump-vmstate <file>
#
# (QEMU writes the file and exits) and writes into
# compat-checker/tests/qemu-fixtures/:
#
#   pc-i440fx-7.2.json   the FULL dump (about 0.8 MB, 215 device classes), kept
#                        whole because it is under 1 MB and lets the tests run
#                        every section of a real dump through the checker;
#   pc-i440fx-2.3.json   FILTERED to the sections in $SECTIONS below (small);
#   pc-q35-7.2.json      FILTERED the same way.
#
# A full dump does not depend on the machine type (only vmschkmachine.Name
# differs; qemu-wire-format.md §6).  The script checks that on the unfiltered
# dumps before filtering and fails if it is not so.  Filtering keeps the key
# order and QEMU's layout (2-space indentation).
#
# Override the binary with QEMU=/path/to/qemu-system-x86_64.
set -euo pipefail

QEMU="${QEMU:-qemu-system-x86_64}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/compat-checker/tests/qemu-fixtures"
SECTIONS="isa-serial,isa-pit,kvm-pit,pit-common,mc146818rtc,e1000,PIIX4_PM,ICH9-LPC,fw_cfg_io,fw_cfg_mem,hpet,PIIX3"
FULL="pc-i440fx-7.2"
FILTERED="pc-i440fx-2.3 pc-q35-7.2"

command -v "$QEMU" >/dev/null || { echo "make-qemu-dumps: $QEMU not found" >&2; exit 1; }
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "make-qemu-dumps: $("$QEMU" --version | head -n1)"
for m in $FULL $FILTERED; do
    "$QEMU" -M "$m" -nodefaults -display none -dump-vmstate "$TMP/$m.json"
done

# Same device set and contents in every dump, apart from the machine name.
python3 - "$TMP" $FULL $FILTERED <<'EOF'
import json, sys
d, names = sys.argv[1], sys.argv[2:]
dumps = {n: json.load(open(f"{d}/{n}.json")) for n in names}
for n, v in dumps.items():
    if v.pop("vmschkmachine") != {"Name": n}:
        sys.exit(f"make-qemu-dumps: {n}: unexpected vmschkmachine")
ref = dumps[names[0]]
for n, v in dumps.items():
    if v != ref:
        sys.exit(f"make-qemu-dumps: {n} differs from {names[0]} beyond the machine name")
print(f"make-qemu-dumps: {len(ref)} sections; dumps differ only in vmschkmachine.Name")
EOF

cp "$TMP/$FULL.json" "$OUT/$FULL.json"
for m in $FILTERED; do
    python3 -c '
import json, sys
src, dst, keep = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
d = json.load(open(src))
missing = [k for k in keep if k not in d]
if missing:
    sys.exit("make-qemu-dumps: sections not in dump: " + ", ".join(missing))
out = {"vmschkmachine": d["vmschkmachine"]}
out.update((k, d[k]) for k in keep)
open(dst, "w").write(json.dumps(out, indent=2) + "\n")
' "$TMP/$m.json" "$OUT/$m.json" "$SECTIONS"
done
ls -l "$OUT"/*.json
