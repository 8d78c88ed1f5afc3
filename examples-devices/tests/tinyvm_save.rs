//! `tinyvm save` writes a migration stream file — RAM, then the device sections — that our own
//! decoder and QEMU's analyze-migration.py both read, RAM included.
//!
//! The software guest's stream is decoded everywhere. What needs a tool is ignored by default and
//! run by `.ci/run` where the tool is: `needs_qemu` (analyze-migration.py), `needs_kvm` (the KVM
//! guest) and `needs_kvm_and_qemu` (both).

mod tools;

use std::path::PathBuf;
use std::process::Command;

use vmstate_runtime::decode::{decode_stream, DecodedStream, SectionKind};

/// Runs `tinyvm save <mode>` and decodes the file: RAM START and END, at least the 256 guest
/// pages, and a FULL section for each of `devices`.
fn save(mode: &str, devices: &[&str]) -> (PathBuf, DecodedStream) {
    // One file per call: tests of the same mode run in parallel.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out =
        std::env::temp_dir().join(format!("tinyvm-save-{}-{n}-{mode}.mig", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_tinyvm"))
        .args(["save", mode, "--run-ms", "30", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let d = decode_stream(&bytes).unwrap();
    let ram: Vec<_> = d.sections.iter().filter(|s| s.idstr == "ram").collect();
    assert!(
        ram.iter().any(|s| s.kind == SectionKind::Start),
        "{mode}: no RAM START"
    );
    assert!(
        ram.iter().any(|s| s.kind == SectionKind::End),
        "{mode}: no RAM END"
    );
    let pages: u64 = ram
        .iter()
        .filter_map(|s| s.ram.as_ref())
        .map(|r| r.counts.pages + r.counts.zero_pages)
        .sum();
    assert!(pages >= 256, "{mode}: only {pages} pages");
    for dev in devices {
        assert!(
            d.sections
                .iter()
                .any(|s| s.idstr == *dev && s.kind == SectionKind::Full),
            "{mode}: no {dev}"
        );
    }
    (out, d)
}

/// analyze-migration.py reads the file: RAM and every device, exactly as our decoder prints it.
fn analyze_agrees(mode: &str, devices: &[&str]) {
    let (out, d) = save(mode, devices);
    let v = tools::analyze(&out);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().any(|k| k.starts_with("ram (")),
        "{mode}: {keys:?}"
    );
    for dev in devices {
        assert!(
            keys.iter().any(|k| k.starts_with(&format!("{dev} ("))),
            "{mode}: {keys:?}"
        );
    }
    assert_eq!(vmstate_runtime::decode::stream_to_json(&d), v, "{mode}");
}

#[test]
fn software_guest_stream_decodes_with_ram() {
    save("--soft", &["serial"]);
}

mod needs_qemu {
    #[test]
    #[ignore = "needs analyze-migration.py: bash scripts/get-qemu-scripts.sh (or set ANALYZE=)"]
    fn software_guest_stream_analyze_migration_agrees() {
        super::analyze_agrees("--soft", &["serial"]);
    }
}

mod needs_kvm {
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn kvm_guest_stream_decodes_with_ram() {
        super::tools::require_kvm();
        super::save("--kvm", &["serial", "tinyvm-cpu"]);
    }
}

mod needs_kvm_and_qemu {
    #[test]
    #[ignore = "needs /dev/kvm (--features kvm) and analyze-migration.py (bash scripts/get-qemu-scripts.sh)"]
    fn kvm_guest_stream_analyze_migration_agrees() {
        super::tools::require_kvm();
        super::analyze_agrees("--kvm", &["serial", "tinyvm-cpu"]);
    }
}
