//! A migration written to a file: it loads back through `receive` and decodes with the runtime's
//! `decode_stream` (RAM included); `needs_qemu` checks it with QEMU's `analyze-migration.py` and
//! has QEMU 7.2 load a RAM stream of ours with `-incoming` (ignored by default; `.ci/run` runs
//! them where QEMU and the script are installed).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{check_pattern, DestVm, SourceVm};
use vmstate_migration::preflight::manifest_of;
use vmstate_migration::{
    migrate, receive, FileTransport, MigrationError, ReceiveSettings, Report, Settings,
};
use vmstate_runtime::decode::{decode_stream, DecodedStream, SectionKind};

/// Migrates a running software guest into `<tmp>/vmstate-file-<pid>-<tag>/migration.bin`,
/// with its configuration manifest stored in the vmdesc when `manifest`. (Tests run in
/// parallel: each passes its own tag.)
fn migrate_to_file(tag: &str, manifest: bool) -> (PathBuf, SourceVm, Report) {
    let dir = std::env::temp_dir().join(format!("vmstate-file-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("migration.bin");
    let mut src = SourceVm::new(2, true);
    src.wait_progress(1000);
    let settings = Settings {
        downtime: Duration::from_millis(50),
        max_passes: 3,
        preflight: manifest.then(|| manifest_of(&src).unwrap()),
        ..Settings::default()
    };
    let mut t = FileTransport(std::fs::File::create(&path).unwrap());
    let report = migrate(&mut src, &mut t, &settings).unwrap();
    drop(t);
    (path, src, report)
}

/// The runtime's decoder: RAM START/PART…/END with matching ids, then the device.
fn decode_file(path: &Path, report: &Report) -> DecodedStream {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(report.bytes, bytes.len() as u64);
    let d = decode_stream(&bytes).unwrap();
    let kinds: Vec<_> = d
        .sections
        .iter()
        .map(|s| (s.kind, s.idstr.as_str()))
        .collect();
    assert_eq!(kinds.first(), Some(&(SectionKind::Start, "ram")));
    assert_eq!(kinds.last(), Some(&(SectionKind::Full, "testdev")));
    assert_eq!(kinds[kinds.len() - 2], (SectionKind::End, "ram"));
    let start = d.sections[0].ram.as_ref().unwrap();
    let names: Vec<_> = start.blocks.iter().map(|b| b.idstr.as_str()).collect();
    assert_eq!(names, ["pc.ram", "pc.rom", "pc.bios"]);
    let pages: u64 = d
        .sections
        .iter()
        .filter_map(|s| s.ram.as_ref())
        .map(|r| r.counts.pages + r.counts.zero_pages)
        .sum();
    let sent: u64 = report
        .passes
        .iter()
        .map(|p| p.pages + p.zero_pages)
        .sum::<u64>()
        + report.final_pages.pages
        + report.final_pages.zero_pages;
    assert_eq!(pages, sent);
    let vmdesc = &d.vmdesc.as_ref().unwrap().1;
    assert_eq!(vmdesc.page_size, 4096);
    assert!(vmdesc.devices.iter().all(|dev| dev.name != "ram"));
    d
}

#[test]
fn file_stream_decodes_and_loads() {
    let (path, src, report) = migrate_to_file("load", false);
    assert!(decode_file(&path, &report)
        .vmdesc
        .unwrap()
        .1
        .manifest
        .is_none());

    // The file loads into a destination.
    let mut dst = DestVm::new(2);
    let mut t = FileTransport(std::fs::File::open(&path).unwrap());
    receive(&mut dst, &mut t, &ReceiveSettings::default()).unwrap();
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    check_pattern(&dst.ram);
    assert_eq!(*dst.dev.lock().unwrap(), *src.dev.lock().unwrap());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

/// A saved stream carries its writer's configuration manifest in the vmdesc: a destination that
/// fits loads it; one that does not is refused before any of the stream is read.
#[test]
fn a_saved_stream_is_checked_against_its_manifest_before_it_is_read() {
    let (path, src, report) = migrate_to_file("manifest", true);
    let stored = decode_file(&path, &report)
        .vmdesc
        .unwrap()
        .1
        .manifest
        .unwrap();
    assert_eq!(
        stored,
        serde_json::to_value(manifest_of(&src).unwrap()).unwrap()
    );
    let load = |dst: &mut DestVm| {
        let settings = ReceiveSettings {
            preflight: Some(manifest_of(&*dst).unwrap()),
            ..ReceiveSettings::default()
        };
        let mut t = FileTransport(std::fs::File::open(&path).unwrap());
        receive(dst, &mut t, &settings)
    };
    // A destination with the source's configuration.
    let mut dst = DestVm::new(2);
    let r = load(&mut dst).unwrap();
    assert!(r.preflight.is_empty());
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    // One with twice the RAM: refused from the manifest, nothing read or applied.
    let mut dst = DestVm::new(4);
    let err = load(&mut dst).unwrap_err();
    let MigrationError::Preflight { mismatches, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        mismatches[0].to_string(),
        "RAM block `pc.ram`: source 0x200000 bytes, destination 0x400000 — start the \
         destination with the same memory size (-m) and devices"
    );
    assert!(
        err.to_string()
            .contains("the destination (this side), from the saved stream's manifest refused"),
        "{err}"
    );
    assert!(dst
        .ram
        .snapshot()
        .unwrap()
        .iter()
        .all(|(_, b)| b.iter().all(|&x| x == 0)));
    assert_eq!(*dst.dev.lock().unwrap(), common::dest_sentinel());
    assert!(!dst.resumed);
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

    // A stream saved without a manifest cannot be checked: refused when preflight is asked for.
    let (path, _, _) = migrate_to_file("no-manifest", false);
    let mut dst = DestVm::new(2);
    let settings = ReceiveSettings {
        preflight: Some(manifest_of(&dst).unwrap()),
        ..ReceiveSettings::default()
    };
    let mut t = FileTransport(std::fs::File::open(&path).unwrap());
    let err = receive(&mut dst, &mut t, &settings)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("the saved stream carries no configuration manifest"),
        "{err}"
    );
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

mod needs_qemu {
    use std::path::Path;
    use std::process::Command;

    /// QEMU 7.2 loads a RAM stream written by our writer (zero-checked in place, page data sent
    /// from guest memory with vectored writes) and its guest memory then holds our bytes.
    #[test]
    #[ignore = "needs qemu-system-x86_64 (QEMU 7.2)"]
    fn qemu_loads_our_ram_stream() {
        use std::io::{BufRead, BufReader, Write};
        use vm_memory::{Bytes, GuestAddress};
        use vmstate_migration::{migrate, FileTransport, GuestRam, Settings};
        use vmstate_runtime::{MachineCatalog, MachineType, Registry};

        struct Vm {
            ram: GuestRam,
            registry: Registry,
            machine: MachineType,
        }
        vmstate_migration::impl_vm_parts!(Vm);
        impl vmstate_migration::MigrationSource for Vm {
            fn stop_vcpus(&mut self) {}
            fn resume_vcpus(&mut self) {}
        }
        const MIB: usize = 128;
        let dir = std::env::temp_dir().join(format!("vmstate-qemu-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stream = dir.join("stream.bin");
        let dump = dir.join("dump.bin");
        let mut vm = Vm {
            ram: GuestRam::new(&[("pc.ram", 0, MIB << 20)]).unwrap(),
            registry: Registry::new(),
            machine: MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap(),
        };
        // Every other 4 KiB page patterned, the rest zero (ZERO records).
        for p in (0..(MIB << 20) as u64 / 4096).step_by(2) {
            let v: Vec<u8> = (0..4096u64).map(|i| (p * 31 + i * 7) as u8 | 1).collect();
            vm.ram
                .memory()
                .write_slice(&v, GuestAddress(p * 4096))
                .unwrap();
        }
        let mut t = FileTransport(std::fs::File::create(&stream).unwrap());
        // With the configuration manifest in the vmdesc: QEMU ignores it.
        let settings = Settings {
            preflight: Some(vmstate_migration::preflight::manifest_of(&vm).unwrap()),
            ..Settings::default()
        };
        migrate(&mut vm, &mut t, &settings).unwrap();
        drop(t);
        let mut q = Command::new("qemu-system-x86_64")
            .args(["-machine", "pc-i440fx-7.2", "-m", &format!("{MIB}M")])
            .args(["-nodefaults", "-display", "none", "-S", "-qmp", "stdio"])
            .arg("-incoming")
            .arg(format!("exec:cat '{}'", stream.display()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64");
        let mut w = q.stdin.take().unwrap();
        let mut r = BufReader::new(q.stdout.take().unwrap());
        let mut cmd = |c: String| -> String {
            writeln!(w, "{c}").unwrap();
            loop {
                let mut l = String::new();
                assert!(r.read_line(&mut l).unwrap() > 0, "QEMU exited");
                if l.contains("\"return\"") || l.contains("\"error\"") {
                    return l;
                }
            }
        };
        cmd(r#"{"execute":"qmp_capabilities"}"#.into());
        let t0 = std::time::Instant::now();
        loop {
            let st = cmd(r#"{"execute":"query-migrate"}"#.into());
            if st.contains("\"completed\"") {
                break;
            }
            assert!(!st.contains("\"failed\""), "QEMU failed to load: {st}");
            assert!(
                t0.elapsed().as_secs() < 60,
                "QEMU did not finish loading: {st}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let r = cmd(format!(
            r#"{{"execute":"pmemsave","arguments":{{"val":0,"size":{},"filename":"{}"}}}}"#,
            MIB << 20,
            dump.display()
        ));
        assert!(r.contains("\"return\""), "{r}");
        cmd(r#"{"execute":"quit"}"#.into());
        let _ = q.wait();
        let got = std::fs::read(&dump).unwrap();
        let want = vm.ram.snapshot().unwrap().remove(0).1;
        assert_eq!(got.len(), want.len());
        // QEMU maps BIOS/VGA windows over low memory in pmemsave's view: compare above 1 MiB.
        assert!(got[1 << 20..] == want[1 << 20..], "guest memory differs");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const ANALYZE: &str = "/opt/qemu-src/scripts/analyze-migration.py";

    /// QEMU's analyze-migration.py reads the file: RAM block sizes and the device section.
    #[test]
    #[ignore = "needs analyze-migration.py: bash scripts/get-qemu-scripts.sh"]
    fn analyze_migration_reads_the_file() {
        assert!(
            Path::new(ANALYZE).exists(),
            "{ANALYZE} not found: run `bash scripts/get-qemu-scripts.sh`"
        );
        // With the manifest in the vmdesc: QEMU's script ignores the key.
        let (path, _src, report) = super::migrate_to_file("analyze", true);
        let d = super::decode_file(&path, &report);
        let out = Command::new("python3")
            .arg(ANALYZE)
            .arg("-f")
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "analyze-migration.py failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let ram_id = d.sections[0].section_id;
        let ram = &json[format!("ram ({ram_id})")];
        assert_eq!(
            ram["section sizes"]["pc.ram"], "0x0000000000200000",
            "{stdout}"
        );
        let dev_id = d.sections.last().unwrap().section_id;
        assert!(
            json.get(format!("testdev ({dev_id})")).is_some(),
            "{stdout}"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
