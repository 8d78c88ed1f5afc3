//! The library entry point as a plain `cargo test` uses it: the example devices, exported
//! in-process from the runtime's registry, against the committed baselines in `compat/`.

use std::path::Path;

use compat_checker::schema::Export;

#[test]
fn example_devices_match_their_baselines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let baselines = root.join("compat");
    // The baselines are committed: without them there is nothing to check, which is a failure.
    assert!(
        baselines.is_dir(),
        "{} is missing: the committed baselines (`cargo compat-check freeze` writes them)",
        baselines.display()
    );
    let export = Export::from_registry("examples-devices", &examples_devices::catalog()).unwrap();
    // Every typed QEMU section (serial, i8254 and mc146818rtc among them) and the demo watchdog.
    assert_eq!(
        export.devices().count(),
        examples_devices::qemu::SECTIONS.len() + 1,
        "{:?}",
        export.devices().map(|(_, d)| &d.name).collect::<Vec<_>>()
    );
    compat_checker::assert_compatible(&baselines, &export);
}

#[test]
fn a_leak_fails_assert_compatible() {
    let fixtures =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/field-leaks-into-old-machine");
    let dir = std::env::temp_dir().join(format!("compat-check-lib-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut old = Export::default();
    old.add_file(&fixtures.join("old.json")).unwrap();
    let machines = old.machine_names();
    compat_checker::freeze(&old, &machines, &dir, false).unwrap();
    let mut new = Export::default();
    new.add_file(&fixtures.join("new.json")).unwrap();
    let report = compat_checker::check(&compat_checker::load_baselines(&dir).unwrap(), &new);
    assert!(report.failed());
    let panic = std::panic::catch_unwind(|| compat_checker::assert_compatible(&dir, &new));
    let _ = std::fs::remove_dir_all(&dir);
    let msg = panic.unwrap_err();
    let msg = msg.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("--- failure field-leaks-into-old-machine"),
        "{msg}"
    );
}
