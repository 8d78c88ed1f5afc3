//! Every committed golden snapshot (`tests/golden-snapshots/*.snap`, written by `make.sh` at a
//! release point) restores in this build and its guest continues: `tinyvm restore --check`
//! compares the mapped memory with what the snapshot recorded, runs the guest and checks
//! progress, the pattern invariant and the serial output. A change that breaks old snapshots
//! fails here. Also: a snapshot from a newer build, a truncated file and a device with an
//! ungated field added all fail before the guest runs, naming the cause.

mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use examples_devices::serial::Serial16550;
use examples_devices::SerialSection;
use vmstate_migration::snapshot::Snapshot;
use vmstate_runtime::{Registry, VmState};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-snapshots")
}

/// The golden snapshots whose guest is `mode` (`soft` or `kvm`), by their notes.
fn goldens(mode: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "snap"))
        .filter(|p| Snapshot::open(p).unwrap().manifest.note("tinyvm.mode") == Some(mode))
        .collect();
    v.sort();
    v
}

fn restore(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tinyvm"))
        .args(["restore", "--check", "--run-ms", "20"])
        .arg(path)
        .output()
        .unwrap()
}

fn restores_and_continues(mode: &str) {
    let all = goldens(mode);
    assert!(!all.is_empty(), "no golden {mode} snapshot");
    for p in all {
        let o = restore(&p);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "{}: {out}{}",
            p.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        for check in ["memory: ok", "progress: ok", "serial: ok", "guest running"] {
            assert!(
                out.contains(check),
                "{}: no `{check}` in {out}",
                p.display()
            );
        }
    }
}

#[test]
fn software_guest_goldens_restore_and_continue() {
    restores_and_continues("soft");
}

/// A copy of a golden snapshot in a temporary directory (with its base, for an increment).
fn scratch(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("golden-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join(name);
    std::fs::copy(golden_dir().join(name), &to).unwrap();
    to
}

/// A snapshot whose `serial` section is newer than this build's fails before the guest runs,
/// naming the section, the version and both ranges.
#[test]
fn newer_section_version_fails_before_anything() {
    let p = scratch("v0.1.0-soft-64k.snap", "newer");
    let s = Snapshot::open(&p).unwrap();
    let mut m = s.manifest.clone();
    let e = m.sections.iter_mut().find(|e| e.idstr == "serial").unwrap();
    e.version = 4;
    e.max_version = 4;
    let bytes = m.to_bytes();
    drop(s);
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(&bytes, 0)
        .unwrap();
    let o = restore(&p);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("guest running"),
        "the guest ran"
    );
    for want in [
        "section `serial` instance 0: version 4",
        "knows versions 2..=4",
        "this build loads versions 2..=3",
        "newer build",
    ] {
        assert!(err.contains(want), "{err} lacks {want:?}");
    }
}

/// A truncated snapshot (its memory cut short) fails before the guest runs, naming the block and
/// the file's end.
#[test]
fn truncated_snapshot_fails_cleanly() {
    let p = scratch("v0.1.0-soft-64k.snap", "trunc");
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let o = restore(&p);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("block `pc.ram`") && err.contains("truncated file"),
        "{err}"
    );
}

/// The `serial` section with one field added without a `since`/gate: what a careless change to
/// the device would look like.
#[derive(Debug, Clone, Default, VmState)]
#[vmstate(name = "serial", version = 3, minimum_version = 2)]
struct SerialWithUngatedField {
    state: Serial16550,
    added_field: u32,
}

/// Loading a golden snapshot's devices into the changed device fails, naming the added field;
/// the unchanged device loads the same bytes.
#[test]
fn ungated_field_fails_naming_the_field() {
    let s = Snapshot::open(&golden_dir().join("v0.1.0-soft-64k.snap")).unwrap();
    let machine = examples_devices::tinyvm::machine();
    let mut good = Registry::new();
    good.register(Arc::new(Mutex::new(SerialSection::default())))
        .unwrap();
    s.load_devices(&good, &machine).unwrap();
    let mut changed = Registry::new();
    changed
        .register(Arc::new(Mutex::new(SerialWithUngatedField::default())))
        .unwrap();
    let e = s.load_devices(&changed, &machine).unwrap_err().to_string();
    assert!(
        e.contains("field `added_field` of this build's device is not in the snapshot"),
        "{e}"
    );
    println!("{e}");
}

mod needs_kvm {
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn kvm_guest_goldens_restore_and_continue() {
        super::tools::require_kvm();
        super::restores_and_continues("kvm");
    }
}

mod needs_qemu {
    use super::*;

    /// The device part of every golden snapshot is a stream QEMU's analyze-migration.py reads,
    /// exactly as our decoder prints it.
    #[test]
    #[ignore = "needs analyze-migration.py: bash scripts/get-qemu-scripts.sh (or set ANALYZE=)"]
    fn analyze_migration_reads_the_device_part() {
        for mode in ["soft", "kvm"] {
            for p in goldens(mode) {
                let bytes = Snapshot::open(&p).unwrap().device_state().unwrap();
                let out = std::env::temp_dir().join(format!(
                    "golden-devices-{}-{}",
                    std::process::id(),
                    p.file_name().unwrap().to_string_lossy()
                ));
                std::fs::write(&out, &bytes).unwrap();
                let v = tools::analyze(&out);
                let d = vmstate_runtime::decode::decode_stream(&bytes).unwrap();
                assert_eq!(
                    vmstate_runtime::decode::stream_to_json(&d),
                    v,
                    "{}",
                    p.display()
                );
                assert!(v
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.starts_with("serial (")));
            }
        }
    }
}

/// The restored UART's virtual clock continues from the value the snapshot recorded (its armed
/// timers keep the time they had left).
#[test]
fn restore_resyncs_the_uart_clock() {
    use examples_devices::tinyvm::snapshot::{restore_guest, Guest, NOTE_VCLOCK};
    let p = scratch("v0.1.0-soft-64k.snap", "vclock");
    let s = Snapshot::open(&p).unwrap();
    let mut m = s.manifest.clone();
    m.notes.retain(|(k, _)| k != NOTE_VCLOCK);
    m.notes.push((NOTE_VCLOCK.into(), "123456789".into()));
    let bytes = m.to_bytes();
    assert!(
        bytes.len() as u64 <= m.device_offset,
        "the header still fits"
    );
    drop(s);
    use std::os::unix::fs::FileExt;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .write_all_at(&bytes, 0)
        .unwrap();
    let mut r = restore_guest(&p, false, true, None).unwrap();
    r.guest.stop().unwrap();
    match &r.guest {
        Guest::Soft(g) => assert_eq!(g.serial_clock_ns(), 123_456_789),
        #[allow(unreachable_patterns)]
        _ => panic!("a software guest"),
    }
}

/// A bitmap that claims pages past the block (and so past what the file holds for it) fails
/// before the guest runs, naming the block and the bitmap's offset.
#[test]
fn bitmap_past_the_block_fails_cleanly() {
    let p = scratch("v0.1.0-soft-64k.snap", "bitmap");
    let s = Snapshot::open(&p).unwrap();
    let k = s.manifest.blocks[0].clone();
    assert_eq!(k.page_count(), 16);
    drop(s);
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    let mut w = [0u8; 8];
    f.read_exact_at(&mut w, k.bitmap_offset).unwrap();
    let bits = u64::from_le_bytes(w) | 1 << 40;
    f.write_all_at(&bits.to_le_bytes(), k.bitmap_offset)
        .unwrap();
    let o = restore(&p);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(!String::from_utf8_lossy(&o.stdout).contains("guest running"));
    assert!(
        err.contains("block `pc.ram`: the bitmap marks pages past the block's 16 pages")
            && err.contains(&format!("at offset {:#x}", k.bitmap_offset)),
        "{err}"
    );
}
