//! `tinyvm save` writes a migration stream file — RAM, then the device sections — that our own
//! decoder and QEMU's analyze-migration.py both read, RAM included.

use std::path::PathBuf;
use std::process::Command;

use vmstate_runtime::decode::{decode_stream, SectionKind};

fn analyze_script() -> Option<PathBuf> {
    let p = std::env::var_os("ANALYZE").map_or_else(
        || PathBuf::from("/opt/qemu-src/scripts/analyze-migration.py"),
        PathBuf::from,
    );
    p.exists().then_some(p)
}

fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn check(mode: &str, devices: &[&str]) {
    let out = std::env::temp_dir().join(format!("tinyvm-save-{}-{mode}.mig", std::process::id()));
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
    let Some(script) = analyze_script() else {
        println!(
            "analyze-migration.py: SKIPPED (run scripts/get-qemu-scripts.sh, or set ANALYZE=)"
        );
        return;
    };
    let o = Command::new("python3")
        .arg(&script)
        .arg("-f")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
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
    // Our decoder prints what the script prints.
    assert_eq!(vmstate_runtime::decode::stream_to_json(&d), v, "{mode}");
}

#[test]
fn software_guest_stream_decodes_with_ram() {
    check("--soft", &["serial"]);
}

#[test]
#[ignore = "requires /dev/kvm"]
fn kvm_guest_stream_decodes_with_ram() {
    if !cfg!(feature = "kvm") || !kvm_opens() {
        println!("kvm: SKIPPED (/dev/kvm not available or built without the kvm feature)");
        return;
    }
    check("--kvm", &["serial", "tinyvm-cpu"]);
}
