//! A migration written to a file: it loads back through `receive`, decodes with the runtime's
//! `decode_stream` (RAM included) and, when QEMU's `analyze-migration.py` is present, with it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{check_pattern, DestVm, SourceVm};
use vmstate_migration::{migrate, receive, FileTransport, ReceiveSettings, Settings};
use vmstate_runtime::decode::{decode_stream, SectionKind};

const ANALYZE: &str = "/opt/qemu-src/scripts/analyze-migration.py";

#[test]
fn file_stream_decodes_and_loads() {
    let dir = std::env::temp_dir().join(format!("vmstate-file-{}", std::process::id()));
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
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(report.bytes, bytes.len() as u64);

    // The runtime's decoder: RAM START/PART…/END with matching ids, then the device.
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

    // The file loads into a destination.
    let mut dst = DestVm::new(2);
    let mut t = FileTransport(std::fs::File::open(&path).unwrap());
    receive(&mut dst, &mut t, &ReceiveSettings::default()).unwrap();
    assert_eq!(dst.ram.snapshot().unwrap(), src.ram.snapshot().unwrap());
    check_pattern(&dst.ram);
    assert_eq!(*dst.dev.lock().unwrap(), *src.dev.lock().unwrap());

    // QEMU's analyze-migration.py.
    if !Path::new(ANALYZE).exists() {
        println!("analyze-migration.py: SKIPPED ({ANALYZE} not found)");
    } else {
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
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
