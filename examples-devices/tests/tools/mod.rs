//! The external tools some tests need: `/dev/kvm`, QEMU and QEMU's `analyze-migration.py`.
//!
//! Those tests live in modules named after what they need (`needs_kvm`, `needs_qemu`,
//! `needs_kvm_and_qemu`) and are `#[ignore = "needs …"]`, so a plain `cargo test` lists them as
//! ignored. They run only when asked for (`-- --ignored needs_qemu::`, as `.ci/run` does where the
//! tool is installed), so a missing tool is a failure here, never a quiet pass.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Fails the test unless this build has the `kvm` feature and `/dev/kvm` opens read-write.
pub fn require_kvm() {
    if !cfg!(feature = "kvm") {
        panic!("built without the `kvm` feature: run cargo test -p examples-devices --features kvm -- --ignored needs_kvm::");
    }
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        panic!(
            "/dev/kvm does not open read-write ({e}); run the needs_kvm tests only where it does"
        );
    }
}

/// `$ANALYZE`, else `/opt/qemu-src/scripts/analyze-migration.py`; fails the test when it is not
/// there.
pub fn analyze_script() -> PathBuf {
    let p = std::env::var_os("ANALYZE").map_or_else(
        || PathBuf::from("/opt/qemu-src/scripts/analyze-migration.py"),
        PathBuf::from,
    );
    assert!(
        p.exists(),
        "{} not found: run `bash scripts/get-qemu-scripts.sh` (or set ANALYZE=)",
        p.display()
    );
    p
}

/// Runs `analyze-migration.py -f file` and returns its JSON output; fails the test if the script
/// is missing or fails.
pub fn analyze(file: &std::path::Path) -> serde_json::Value {
    let o = Command::new("python3")
        .arg(analyze_script())
        .arg("-f")
        .arg(file)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "analyze-migration.py -f {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("analyze-migration.py prints JSON")
}

/// Fails the test unless `qemu-system-x86_64 --version` runs.
pub fn require_qemu() {
    let ok = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "qemu-system-x86_64 not found: apt-get install qemu-system-x86"
    );
}
