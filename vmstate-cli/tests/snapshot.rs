//! `vmstate analyze` and `vmstate diff` read snapshot files (`tinyvm snapshot`): their device
//! part, the same bytes the snapshot's device state holds.

use std::path::{Path, PathBuf};
use std::process::Command;

use vmstate_cli::{EXIT_FOUND, EXIT_OK};
use vmstate_migration::snapshot::Snapshot;

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-devices/tests/golden-snapshots")
        .join(name)
}

fn vmstate(args: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmstate"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn analyze_reads_the_device_part_of_a_snapshot() {
    let p = golden("v0.1.0-kvm-64k.snap");
    let o = vmstate(&[Path::new("analyze"), &p]);
    assert_eq!(
        o.status.code(),
        Some(i32::from(EXIT_OK)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    for dev in ["serial (", "tinyvm-cpu ("] {
        assert!(keys.iter().any(|k| k.starts_with(dev)), "{keys:?}");
    }
    assert!(!keys.iter().any(|k| k.starts_with("ram (")), "{keys:?}");
    // Exactly the snapshot's device state, decoded.
    let bytes = Snapshot::open(&p).unwrap().device_state().unwrap();
    let d = vmstate_runtime::decode::decode_stream(&bytes).unwrap();
    assert_eq!(vmstate_runtime::decode::stream_to_json(&d), v);
}

#[test]
fn diff_compares_snapshots() {
    let (soft, kvm) = (
        golden("v0.1.0-soft-64k.snap"),
        golden("v0.1.0-kvm-64k.snap"),
    );
    let same = vmstate(&[Path::new("diff"), &soft, &soft]);
    assert_eq!(same.status.code(), Some(i32::from(EXIT_OK)));
    let o = vmstate(&[Path::new("diff"), &soft, &kvm]);
    assert_eq!(o.status.code(), Some(i32::from(EXIT_FOUND)));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("tinyvm-cpu"), "{out}");
}

#[test]
fn a_corrupt_snapshot_header_is_a_tool_error_naming_the_offset() {
    let mut bytes = std::fs::read(golden("v0.1.0-soft-64k.snap")).unwrap();
    bytes[40..48].copy_from_slice(&u64::MAX.to_be_bytes());
    let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bad-{}.snap", std::process::id()));
    std::fs::write(&p, &bytes).unwrap();
    let o = vmstate(&[Path::new("analyze"), &p]);
    assert_eq!(o.status.code(), Some(i32::from(vmstate_cli::EXIT_ERROR)));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("at offset 0x28") && e.contains("device state"),
        "{e}"
    );
}
