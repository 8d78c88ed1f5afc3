//! `tinyvm snapshot` → `restore --check` → `snapshot --incremental-from` → `restore --check` →
//! `snapshot-merge` → `restore --check`, run as a user runs it: the software guest everywhere,
//! the KVM guest in `needs_kvm`. The increment records fewer pages than the full snapshot and
//! its chain restores with the same checks.

mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use vmstate_migration::snapshot::Snapshot;

fn tinyvm(args: &[&str], paths: &[&Path]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_tinyvm"))
        .args(args)
        .args(paths)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "tinyvm {args:?}: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn restores(p: &Path) {
    let out = tinyvm(&["restore", "--check", "--run-ms", "20"], &[p]);
    for check in ["memory: ok", "progress: ok", "serial: ok"] {
        assert!(out.contains(check), "{}: {out}", p.display());
    }
}

fn round_trip(mode: &str, mem: &str) {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("tinyvm-snapshot-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (base, inc, merged) = (
        dir.join("base.snap"),
        dir.join("inc.snap"),
        dir.join("merged.snap"),
    );
    tinyvm(
        &["snapshot", mode, "--mem", mem, "--run-ms", "300", "--out"],
        &[&base],
    );
    restores(&base);
    tinyvm(
        &[
            "snapshot",
            "--dirty-rate",
            "2000",
            "--run-ms",
            "20",
            "--incremental-from",
        ],
        &[&base, Path::new("--out"), &inc],
    );
    let (b, i) = (
        Snapshot::open(&base).unwrap(),
        Snapshot::open(&inc).unwrap(),
    );
    assert!(i.manifest.incremental() && !b.manifest.incremental());
    assert_eq!(i.manifest.base, "base.snap");
    assert_eq!(i.manifest.base_id, b.manifest.id);
    let pages = |s: &Snapshot| s.manifest.blocks.iter().map(|k| k.pages).sum::<u64>();
    println!("{mode}: increment {} pages, base {}", pages(&i), pages(&b));
    // At 2,000 pages/s for 20 ms (plus the restore), far fewer than half of the guest's pages.
    let total = b.manifest.blocks[0].page_count();
    assert!(
        pages(&i) > 0 && pages(&i) < total / 2,
        "{} of {total}",
        pages(&i)
    );
    restores(&inc);
    tinyvm(&["snapshot-merge", "--out"], &[&merged, &inc]);
    assert!(!Snapshot::open(&merged).unwrap().manifest.incremental());
    restores(&merged);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn software_guest_snapshot_increment_merge_restore() {
    round_trip("--soft", "16M");
}

mod needs_kvm {
    use super::*;

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn kvm_guest_snapshot_increment_merge_restore() {
        super::tools::require_kvm();
        super::round_trip("--kvm", "16M");
    }

    /// A KVM guest of 4 GiB + 64 MiB (the 64-bit guest: 3 GiB below the hole under 4 GiB,
    /// 1088 MiB from 4 GiB up) snapshots and restores with `--check`. Sparse: at 20,000 pages/s
    /// for 200 ms it touches a few thousand pages (a whole pass would touch all of it), so
    /// progress is "the walk advanced 500 pages" rather than a completed pass; the walk across
    /// the hole is `tinyvm_kvm`'s `long_mode_guest_walks_across_the_hole_and_around`. About 40 s
    /// in a debug build, most of it hashing RAM for the memory checks.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn kvm_guest_above_4_gib_snapshot_restore() {
        super::tools::require_kvm();
        let dir: PathBuf =
            std::env::temp_dir().join(format!("tinyvm-snapshot-{}-4g", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let snap = dir.join("4160m.snap");
        let out = tinyvm(
            &[
                "snapshot",
                "--kvm",
                "--mem",
                "4160M",
                "--dirty-rate",
                "20000",
                "--run-ms",
                "200",
                "--out",
            ],
            &[&snap],
        );
        assert!(out.contains("4259840 KiB of guest RAM"), "{out}");
        let s = Snapshot::open(&snap).unwrap();
        assert_eq!(s.manifest.blocks.len(), 1, "one block, two KVM slots");
        assert_eq!(s.manifest.blocks[0].size, 4160 << 20);
        let out = tinyvm(
            &[
                "restore",
                "--check",
                "--run-ms",
                "100",
                "--progress-pages",
                "500",
            ],
            &[&snap],
        );
        for check in ["memory: ok", "progress: ok", "serial: ok"] {
            assert!(out.contains(check), "{out}");
        }
        println!("{out}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
