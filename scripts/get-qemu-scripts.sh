#!/usr/bin/env bash
# get-qemu-scripts.sh — fetch Debian's QEMU 7.2 source package (matching the
# installed qemu-system-x86 on Debian 12 "bookworm") and expose its scripts/
# directory at a stable path:
#
#     /opt/qemu-src/scripts/analyze-migration.py
#     /opt/qemu-src/scripts/vmstate-static-checker.py
#
# Idempotent: if /opt/qemu-src/scripts/analyze-migration.py already exists it
# does nothing.  Must run as root on Debian 12 (CI does).  Steps:
#   1. add a deb-src sources file (bookworm, bookworm-updates, bookworm-security)
#   2. apt-get update; install dpkg-dev (needed by `apt-get source`)
#   3. cd /opt && apt-get source qemu  (unpacks /opt/qemu-<version>)
#   4. symlink the unpacked tree to /opt/qemu-src
# analyze-migration.py needs only the python3 standard library.
# Override the destination with QEMU_SRC_DIR (default /opt/qemu-src).
set -euo pipefail

DEST="${QEMU_SRC_DIR:-/opt/qemu-src}"
PARENT="$(dirname "$DEST")"

if [ -f "$DEST/scripts/analyze-migration.py" ]; then
    echo "get-qemu-scripts: $DEST/scripts/analyze-migration.py already present"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
SRCLIST=/etc/apt/sources.list.d/debian-src.sources
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/ ; then
    cat > "$SRCLIST" <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    echo "get-qemu-scripts: wrote $SRCLIST"
fi

apt-get update -qq
if ! command -v dpkg-source >/dev/null 2>&1; then
    apt-get install -y -qq dpkg-dev
fi
# xz-utils is needed to unpack the .debian.tar.xz / .orig.tar.xz
command -v xz >/dev/null 2>&1 || apt-get install -y -qq xz-utils

mkdir -p "$PARENT"
cd "$PARENT"
# Prefer the exact version of the installed binary package when known.
VER="$(dpkg-query -W -f='${source:Version}' qemu-system-x86 2>/dev/null || true)"
if [ -n "$VER" ] && apt-get source --only-source -qq "qemu=$VER" >/dev/null 2>&1; then
    echo "get-qemu-scripts: fetched qemu source $VER"
else
    apt-get source --only-source -qq qemu
fi

# Newest unpacked qemu-7.2* directory
SRCDIR="$(ls -1d "$PARENT"/qemu-7.2*/ 2>/dev/null | sort -V | tail -n1)"
SRCDIR="${SRCDIR%/}"
if [ -z "$SRCDIR" ] || [ ! -f "$SRCDIR/scripts/analyze-migration.py" ]; then
    echo "get-qemu-scripts: unpacked source not found under $PARENT" >&2
    exit 1
fi
ln -sfn "$SRCDIR" "$DEST"
python3 "$DEST/scripts/analyze-migration.py" --help >/dev/null
echo "get-qemu-scripts: $DEST -> $SRCDIR"
