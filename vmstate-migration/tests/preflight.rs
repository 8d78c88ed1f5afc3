//! Preflight: the source's configuration manifest is checked by the destination before any page
//! or device byte moves; a mismatch fails on both sides with the source's guest never stopped.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::{dest_sentinel, DestVm, SourceVm};
use vmstate_migration::preflight::manifest_of;
use vmstate_migration::{migrate, receive, MigrationError, Origin, ReceiveSettings, Settings};
use vmstate_runtime::manifest::{CpuModel, Manifest, Severity};
use vmstate_runtime::Registry;

/// Runs a migration of a running 8 MiB guest into `dst` with preflight as `src_pre` /
/// `dst_pre` say; returns (source, its result, how long `migrate` took, destination, its result).
fn run(dst: DestVm, src_pre: bool, dst_pre: bool) -> Outcome {
    run_with(dst, src_pre, dst_pre, |m| m)
}

type Outcome = (
    SourceVm,
    vmstate_migration::Result<vmstate_migration::Report>,
    Duration,
    DestVm,
    vmstate_migration::Result<vmstate_migration::Report>,
);

/// [`run`], with the source's manifest changed by `edit`.
fn run_with(
    dst: DestVm,
    src_pre: bool,
    dst_pre: bool,
    edit: impl FnOnce(Manifest) -> Manifest,
) -> (
    SourceVm,
    vmstate_migration::Result<vmstate_migration::Report>,
    Duration,
    DestVm,
    vmstate_migration::Result<vmstate_migration::Report>,
) {
    let (mut a, mut b) = UnixStream::pair().unwrap();
    let mut src = SourceVm::new(8, true);
    src.wait_progress(2000);
    let own = manifest_of(&dst).unwrap();
    let dest = std::thread::spawn(move || {
        let mut dst = dst;
        let settings = ReceiveSettings {
            preflight: dst_pre.then_some(own),
            read_timeout: Some(Duration::from_secs(10)),
            ..ReceiveSettings::default()
        };
        let r = receive(&mut dst, &mut b, &settings);
        (dst, r)
    });
    let settings = Settings {
        preflight: src_pre.then(|| edit(manifest_of(&src).unwrap())),
        downtime: Duration::from_millis(20),
        ack_timeout: Duration::from_secs(10),
        ..Settings::default()
    };
    let t0 = Instant::now();
    let r = migrate(&mut src, &mut a, &settings);
    let took = t0.elapsed();
    drop(a);
    let (dst, dr) = dest.join().unwrap();
    (src, r, took, dst, dr)
}

/// The guest keeps running: it makes progress after the failed attempt.
fn assert_still_running(src: &SourceVm) {
    let before = src.ctl.progress.load(std::sync::atomic::Ordering::SeqCst);
    src.wait_progress(before + 500);
}

#[test]
fn matching_configurations_migrate() {
    let (src, r, _, dst, dr) = run(DestVm::new(8), true, true);
    let (r, dr) = (r.expect("source"), dr.expect("destination"));
    assert!(r.preflight.is_empty() && dr.preflight.is_empty());
    assert!(r.preflight_time > Duration::ZERO);
    assert_eq!((src.stops, src.resumes), (1, 0));
    assert!(dst.resumed);
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
}

#[test]
fn a_ram_size_mismatch_fails_before_anything_moves() {
    let (src, r, took, dst, dr) = run(DestVm::new(16), true, true);
    let err = r.unwrap_err();
    let MigrationError::Preflight { mismatches, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(mismatches.len(), 1, "{err}");
    assert_eq!(
        mismatches[0].to_string(),
        "RAM block `pc.ram`: source 0x800000 bytes, destination 0x1000000 — start the \
         destination with the same memory size (-m) and devices"
    );
    assert!(
        err.to_string().starts_with(
            "preflight: the destination refused the migration before any guest state was sent \
             (1 mismatch): RAM block `pc.ram`"
        ),
        "{err}"
    );
    // The destination says the same, applied nothing and did not start.
    let derr = dr.unwrap_err().to_string();
    assert!(derr.contains("RAM block `pc.ram`"), "{derr}");
    assert!(!dst.resumed);
    assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel());
    // The source's guest never stopped and keeps running.
    assert_eq!((src.stops, src.resumes), (0, 0));
    assert_still_running(&src);
    eprintln!("preflight refusal took {took:?}");
}

#[test]
fn a_device_missing_on_the_destination_is_named() {
    let mut dst = DestVm::new(8);
    dst.registry = Registry::new(); // no device
    let (src, r, _, dst, _) = run(dst, true, true);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains(
            "section `testdev` instance 0: the source sends it, the destination has no such \
             device"
        ),
        "{err}"
    );
    assert_eq!(src.stops, 0);
    assert!(!dst.resumed);
}

#[test]
fn a_section_only_the_destination_has_refuses() {
    // The destination has a device the source sends nothing for: it would run with its reset
    // state under a guest that configured no such device, so the destination refuses.
    let mut dst = DestVm::new(8);
    #[derive(vmstate_runtime::VmState, Clone, Default)]
    #[vmstate(name = "extra-led", version = 1)]
    struct Led {
        on: bool,
    }
    dst.registry
        .register(std::sync::Arc::new(std::sync::Mutex::new(Led::default())))
        .unwrap();
    let (src, r, took, dst, dr) = run(dst, true, true);
    let err = r.unwrap_err();
    let MigrationError::Preflight { mismatches, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(mismatches.len(), 1, "{err}");
    assert_eq!(mismatches[0].severity, Severity::Error);
    assert!(
        mismatches[0].to_string().starts_with(
            "section `extra-led` instance 0: the destination has this device, the source \
             sends no state for it"
        ),
        "{err}"
    );
    assert_eq!(err.origin(), Origin::Configuration);
    assert_eq!(dr.unwrap_err().origin(), Origin::Configuration);
    assert!(!dst.resumed);
    assert_eq!((src.stops, src.resumes), (0, 0));
    eprintln!("refused in {took:?}");
    assert_still_running(&src);
}

#[test]
fn warnings_do_not_refuse() {
    // The source states its vCPU model, the destination's manifest has none: not compared, a
    // warning, and the migration goes ahead.
    let cpu = CpuModel {
        name: "test".into(),
        features: ["x2apic".to_owned()].into(),
        msrs: [0x10u32].into(),
    };
    let (_, r, _, dst, dr) = run_with(DestVm::new(8), true, true, |m| m.with_cpu(cpu));
    let r = r.expect("source");
    assert_eq!(r.preflight.len(), 1);
    assert_eq!(r.preflight[0].severity, Severity::Warning);
    assert!(r.preflight[0]
        .to_string()
        .starts_with("vCPU: the source states its model (`test`), the destination does not"));
    assert_eq!(dr.expect("destination").preflight, r.preflight);
    assert!(dst.resumed);
}

#[test]
fn a_ram_block_only_the_destination_has_refuses() {
    let mut dst = DestVm::new(8);
    let mut layout = common::layout(8);
    layout.insert(2, ("extra.rom", 0xd000_0000, 64 << 10)); // by address, before pc.bios
    dst.ram = vmstate_migration::GuestRam::new(&layout).unwrap();
    let (src, r, _, _, _) = run(dst, true, true);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains(
            "RAM block `extra.rom`: destination 0x10000 bytes, the source has no such block"
        ),
        "{err}"
    );
    assert_eq!(src.stops, 0);
}

#[test]
fn both_sides_must_agree_on_preflight() {
    // Destination expects a manifest, the source sends QEMU's stream: both say why.
    let (src, r, _, dst, dr) = run(DestVm::new(8), false, true);
    let derr = dr.unwrap_err().to_string();
    assert!(
        derr.contains("the source sent no configuration manifest"),
        "{derr}"
    );
    // The source learns why from the return path, not only that its write failed.
    let err = r.unwrap_err().to_string();
    assert!(
        err.starts_with("destination failed: ")
            && err.contains("the source sent no configuration manifest"),
        "{err}"
    );
    assert_eq!(src.resumes, src.stops, "the source runs again");
    assert!(!dst.resumed);
    // The source sends a manifest, the destination expects QEMU's stream.
    let (src, r, _, dst, dr) = run(DestVm::new(8), true, false);
    assert!(dr.is_err() && r.is_err());
    assert_eq!(src.stops, 0);
    assert!(!dst.resumed);
}

#[test]
fn a_version_the_destination_does_not_load_is_named() {
    // An older destination build: its `testdev` loads version 1 only; the source writes 2.
    #[derive(vmstate_runtime::VmState, Clone, Default)]
    #[vmstate(name = "testdev", version = 1)]
    struct OldTestDev {
        ticks: u64,
    }
    let mut dst = DestVm::new(8);
    dst.registry = Registry::new();
    dst.registry
        .register(std::sync::Arc::new(std::sync::Mutex::new(
            OldTestDev::default(),
        )))
        .unwrap();
    let (src, r, _, dst, _) = run(dst, true, true);
    let err = r.unwrap_err().to_string();
    assert!(
        err.contains(
            "section `testdev` instance 0: the source writes version 2, the destination loads \
             1..=1 — the destination's build is older"
        ),
        "{err}"
    );
    assert_eq!(src.stops, 0);
    assert!(!dst.resumed);
}

#[test]
fn a_compat_property_the_two_builds_set_differently_is_named() {
    // Both sides have a NIC with property `x-mq`; the source's build turns it off for
    // pc-i440fx-7.2 in its compat table, the destination's does not.
    #[derive(vmstate_runtime::VmState, Clone, Default)]
    #[vmstate(name = "nic", version = 1, prop(name = "x-mq", default = true))]
    struct Nic {
        #[vmstate(when = prop("x-mq"), default)]
        queues: u8,
    }
    let nic = || std::sync::Arc::new(std::sync::Mutex::new(Nic::default()));
    let mut dst = DestVm::new(8);
    dst.registry.register(nic()).unwrap();
    let (a, mut b) = UnixStream::pair().unwrap();
    let mut src = SourceVm::new(8, true);
    src.registry.register(nic()).unwrap();
    src.machine = vmstate_runtime::MachineCatalog::qemu_pc()
        .with_compat([vmstate_runtime::machine::CompatEntry {
            upto: "7.2".into(),
            driver: "nic".into(),
            property: "x-mq".into(),
            value: false,
        }])
        .resolve("pc-i440fx-7.2")
        .unwrap();
    let own = manifest_of(&dst).unwrap();
    let dest = std::thread::spawn(move || {
        let settings = ReceiveSettings {
            preflight: Some(own),
            ..ReceiveSettings::default()
        };
        let r = receive(&mut dst, &mut b, &settings);
        (dst, r)
    });
    let settings = Settings {
        preflight: Some(manifest_of(&src).unwrap()),
        ..Settings::default()
    };
    let mut a = a;
    let err = migrate(&mut src, &mut a, &settings)
        .unwrap_err()
        .to_string();
    drop(a);
    let (dst, _) = dest.join().unwrap();
    assert!(
        err.contains(
            "compat property `nic.x-mq`: source off, destination on on machine type \
             `pc-i440fx-7.2` — the two builds define this machine type differently"
        ),
        "{err}"
    );
    assert_eq!(src.stops, 0);
    assert!(!dst.resumed);
}
