#!/usr/bin/env bash
# Writes the golden snapshots of this release point into this directory: a 64 KiB software guest
# (full, and an increment over it) and a 64 KiB KVM guest. Run from anywhere, on a host where
# /dev/kvm opens; commit the new files with the release tag in their names and never change old
# ones: tests/golden_snapshots.rs restores every *.snap here and checks that the guest continues.
#   bash examples-devices/tests/golden-snapshots/make.sh v0.1.0
set -euo pipefail
tag=${1:?usage: make.sh <release tag, e.g. v0.1.0>}
dir=$(cd "$(dirname "$0")" && pwd)
cd "$dir/../../.."
cargo build -q -p examples-devices --features kvm --bin tinyvm
tinyvm=target/debug/tinyvm
cd "$dir"
"$OLDPWD/$tinyvm" snapshot --soft --mem 64K --run-ms 30 --out "$tag-soft-64k.snap"
"$OLDPWD/$tinyvm" snapshot --incremental-from "$tag-soft-64k.snap" --run-ms 5 --dirty-rate 1000 \
    --out "$tag-soft-64k-inc.snap"
"$OLDPWD/$tinyvm" snapshot --kvm --mem 64K --run-ms 30 --out "$tag-kvm-64k.snap"
ls -l "$tag"-*.snap
