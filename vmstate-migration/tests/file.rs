//! A migration written to a file: it loads back through `receive` and decodes with the runtime's
//! `decode_stream` (RAM included); `needs_qemu` checks it with QEMU's `analyze-migration.py`
//! (ignored by default; `.ci/run` runs it where the script is installed).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{check_pattern, DestVm, SourceVm};
use vmstate_migration::{migrate, receive, FileTransport, ReceiveSettings, Report, Settings};
use vmstate_runtime::decode::{decode_stream, DecodedStream, SectionKind};

/// Migrates a running software guest into `<tmp>/vmstate-file-<pid>-<tag>/migration.bin`.
/// (Tests run in parallel: each passes its own tag.)
fn migrate_to_file(tag: &str) -> (PathBuf, SourceVm, Report) {
    let dir = std::env::temp_dir().join(format!("vmstate-file-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("migration.bin");
    let mut src = SourceVm::new(2, true);
    src.wait_progress(1000);
    let settings = Settings {
        downtime: Duration::from_millis(50),
        max_passes: 3,
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
    let (path, src, report) = migrate_to_file("load");
    decode_file(&path, &report);

    // The file loads into a destination.
    let mut dst = DestVm::new(2);
    let mut t = FileTransport(std::fs::File::open(&path).unwrap());
    receive(&mut dst, &mut t, &ReceiveSettings::default()).unwrap();
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    check_pattern(&dst.ram);
    assert_eq!(*dst.dev.lock().unwrap(), *src.dev.lock().unwrap());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

mod needs_qemu {
    use std::path::Path;
    use std::process::Command;

    const ANALYZE: &str = "/opt/qemu-src/scripts/analyze-migration.py";

    /// QEMU's analyze-migration.py reads the file: RAM block sizes and the device section.
    #[test]
    #[ignore = "needs analyze-migration.py: bash scripts/get-qemu-scripts.sh"]
    fn analyze_migration_reads_the_file() {
        assert!(
            Path::new(ANALYZE).exists(),
            "{ANALYZE} not found: run `bash scripts/get-qemu-scripts.sh`"
        );
        let (path, _src, report) = super::migrate_to_file("analyze");
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
