//! Generic decoding (`decode_stream`) of streams we write and of real QEMU 7.2 streams.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use common::{be32, counted, machine, Devices, Pit, Rtc, Uart, ALL_FRAMING};
use vmstate_runtime::decode::{find_vmdesc, stream_to_json, value_to_json};
use vmstate_runtime::stream::{self, analyze_locator};
use vmstate_runtime::{decode_stream, decode_stream_with, ErrorKind, Registry, SectionKind, Value};

use vmstate_runtime::stream::StreamWriter;

fn registry() -> Registry {
    let mut u = Uart::sample();
    u.tsr_retry = 5;
    u.lsr = 0x21;
    Devices::new(u, Pit::sample(), Rtc::sample()).reg
}

fn int(size: u8, signed: bool, value: u64) -> Value {
    Value::Int {
        size,
        signed,
        value,
    }
}

#[test]
fn decodes_what_the_registry_writes() {
    let (s, save) = registry().save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let d = decode_stream(&s).unwrap();
    assert_eq!(d.machine.as_deref(), Some("pc-i440fx-7.2"));
    assert!(d.footers);
    assert_eq!(d.sections.len(), 3);
    for (sec, info) in d.sections.iter().zip(&save.sections) {
        assert_eq!(sec.kind, SectionKind::Full);
        assert_eq!(sec.idstr, info.key.idstr);
        assert_eq!(sec.section_id, info.section_id);
        assert_eq!(sec.version, info.version);
        assert_eq!(sec.full_range.start as u64, info.offset);
        assert_eq!(sec.payload_range.len() as u64, info.payload_len);
        assert_eq!(sec.full_range.end, sec.payload_range.end + 5);
    }
    let rtc = d.sections[0].value.as_ref().unwrap();
    assert_eq!(
        rtc,
        &Value::Struct {
            fields: vec![
                (
                    "cmos_data".into(),
                    Value::Bytes(vec![0, 0, 0, 0, 0, 0, 4, 1])
                ),
                ("cmos_index".into(), int(1, false, 0x0d)),
                ("unused".into(), Value::Bytes(vec![0; 4])),
                (
                    "periodic_timer".into(),
                    Value::Bytes(vec![0, 0, 0, 0, 0x3b, 0x9a, 0xca, 0])
                ),
            ],
            subsections: vec![],
        }
    );
    let uart = d.sections[1].value.as_ref().unwrap();
    assert_eq!(uart.get("divider"), Some(&int(2, false, 0x0c)));
    assert_eq!(
        uart.get("serial/tsr").and_then(|t| t.get("tsr_retry")),
        Some(&int(4, false, 5))
    );
    let pit = d.sections[2].value.as_ref().unwrap();
    let Some(Value::Array(channels)) = pit.get("channels") else {
        panic!("channels is not an array: {pit:?}");
    };
    assert_eq!(channels.len(), 2);
    assert_eq!(channels[1].get("count").and_then(Value::int), Some(-1));

    let json = stream_to_json(&d);
    assert_eq!(
        json["serial (1)"],
        serde_json::json!({
            "divider": "0x000c", "rbr": "0x00", "ier": "0x0f", "lsr": "0x21",
            "fcr_vmstate": "0x41", "serial/tsr": {"tsr_retry": "0x00000005"}
        })
    );
    assert_eq!(
        json["i8254 (2)"]["channels"][1],
        serde_json::json!({"count": "0xffffffff (-1)", "mode": "0x02", "next_transition_time": "0x0000000000000000"})
    );
    assert_eq!(
        json["mc146818rtc (0)"]["periodic_timer"],
        serde_json::json!("00 00 00 00 3b 9a ca 00")
    );

    // Header + sections + EOF reproduce the stream up to the vmdesc.
    let (vrange, vmdesc) = d.vmdesc.as_ref().unwrap();
    assert_eq!(vmdesc.devices.len(), 3);
    assert_eq!(rebuild(&s, &d), &s[..vrange.start]);
    assert_eq!(vrange.end, s.len());
}

/// Header, configuration, every section and the EOF byte, from the decoded ranges.
fn rebuild(s: &[u8], d: &vmstate_runtime::DecodedStream) -> Vec<u8> {
    let mut out = s[d.header_range.clone()].to_vec();
    if let Some((r, _)) = &d.configuration {
        out.extend_from_slice(&s[r.clone()]);
    }
    for sec in &d.sections {
        out.extend_from_slice(&s[sec.full_range.clone()]);
    }
    out.push(s[d.eof_offset]);
    out
}

#[test]
fn old_machine_types() {
    // 2.3: no configuration, no footers, vmdesc present.
    let (s, _) = registry().save_to_vec(&machine("pc-i440fx-2.3")).unwrap();
    let d = decode_stream(&s).unwrap();
    assert!(!d.footers);
    assert!(d.configuration.is_none());
    assert_eq!(d.sections[1].version, 2);
    assert!(d.sections[1]
        .value
        .as_ref()
        .unwrap()
        .get("fcr_vmstate")
        .is_none());
    assert_eq!(
        d.sections[1].full_range.end,
        d.sections[1].payload_range.end
    );

    // 2.2: no vmdesc, so FULL sections cannot be decoded.
    let (s, save) = registry().save_to_vec(&machine("pc-i440fx-2.2")).unwrap();
    let err = decode_stream(&s).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::MissingVmdesc);
    assert_eq!(err.offset(), Some(save.sections[0].offset));
    assert_eq!(err.section().unwrap().idstr, "mc146818rtc");

    // Without FULL sections no vmdesc is needed.
    let (s, _) = Registry::new()
        .save_to_vec(&machine("pc-i440fx-2.2"))
        .unwrap();
    let d = decode_stream(&s).unwrap();
    assert!(d.sections.is_empty() && d.vmdesc.is_none());
    assert_eq!(d.eof_offset, 8);
}

#[test]
fn vmdesc_found_even_when_analyze_migration_would_not() {
    // A vmdesc whose be32 length ends in 0x7b, written without padding.
    let (s, save) = registry().save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let n = save.vmdesc_len.unwrap() as usize;
    let json = &s[s.len() - n..];
    let body = &json[..json.len() - 1];
    let mut target = 0x17b_usize;
    while target < json.len() {
        target += 0x100;
    }
    let mut padded = body.to_vec();
    padded.resize(target - 1, b' ');
    padded.push(b'}');
    let mut raw = s[..s.len() - n - 5].to_vec();
    raw.push(0x06);
    raw.extend_from_slice(&be32(u32::try_from(target).unwrap()));
    raw.extend_from_slice(&padded);
    assert!(!stream::vmdesc_len_is_safe(u32::try_from(target).unwrap()));
    assert_eq!(analyze_locator(&raw), None);
    let at = raw.len() - target;
    assert_eq!(find_vmdesc(&raw), Some((at - 5, at..raw.len())));
    let d = decode_stream(&raw).unwrap();
    assert_eq!(d.sections.len(), 3);
    // The padded stream our writer produces is found by both.
    assert_eq!(analyze_locator(&s), Some(s.len() - n));
}

#[test]
fn vmdesc_that_does_not_match_the_bytes() {
    let (s, save) = registry().save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let n = save.vmdesc_len.unwrap() as usize;
    let json = std::str::from_utf8(&s[s.len() - n..]).unwrap().to_owned();
    let with = |json: &str| {
        let mut raw = s[..s.len() - n].to_vec();
        raw.truncate(raw.len() - 5);
        StreamWriter::new(&mut raw, ALL_FRAMING)
            .vmdesc(json)
            .unwrap();
        raw
    };
    // The subsection listed under another name.
    let err = decode_stream(&with(&json.replace(
        r#""vmsd_name": "serial/tsr""#,
        r#""vmsd_name": "serial/xyz""#,
    )))
    .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::BadVmdesc { .. }), "{err}");
    assert!(err.to_string().contains("serial/xyz"), "{err}");
    assert_eq!(err.section().unwrap().idstr, "serial");
    // A device missing from the list.
    let err = decode_stream(&with(
        &json.replace(r#""name": "i8254""#, r#""name": "i8255""#),
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("not described in the vmdesc"),
        "{err}"
    );
    // A field size that runs the payload past its footer.
    let err = decode_stream(&with(&json.replace(
        r#""type": "buffer", "size": 8"#,
        r#""type": "buffer", "size": 9"#,
    )))
    .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::MissingFooter { .. }),
        "{err}"
    );
    // Not JSON.
    let err = decode_stream(&with("{not json}")).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::BadVmdesc { .. }), "{err}");
    // A huge compressed array of empty structs is capped.
    let hostile = json.replace(
        r#""array_len": 2, "type": "struct", "struct": {"vmsd_name": "pit channel", "version": 2, "fields": [{"name": "count", "type": "int32", "size": 4}, {"name": "mode", "type": "uint8", "size": 1}, {"name": "next_transition_time", "type": "int64", "size": 8}]}"#,
        r#""array_len": 100000000000, "type": "struct", "struct": {"vmsd_name": "pit channel", "version": 2, "fields": []}"#,
    );
    assert_ne!(hostile, json);
    let err = decode_stream(&with(&hostile)).unwrap_err();
    assert!(err.to_string().contains("more than"), "{err}");
    // Trailing bytes after the vmdesc hide it.
    let mut t = s.clone();
    t.push(0);
    assert!(decode_stream(&t).is_err());
}

#[test]
fn commands_and_ram_sections() {
    let (s, save) = registry().save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let first = usize::try_from(save.sections[0].offset).unwrap();
    let framing = machine("pc-i440fx-7.2").framing();
    let mut raw = s[..first].to_vec();
    StreamWriter::new(&mut raw, ALL_FRAMING)
        .start_header(7, "ram", 0, 4)
        .unwrap();
    raw.extend_from_slice(&(0x1000u64 | 0x04).to_be_bytes());
    raw.extend_from_slice(&counted("pc.ram"));
    raw.extend_from_slice(&0x1000u64.to_be_bytes());
    raw.extend_from_slice(&0x10u64.to_be_bytes());
    StreamWriter::new(&mut raw, framing).footer(7).unwrap();
    StreamWriter::new(&mut raw, ALL_FRAMING)
        .command(0x0b, &[])
        .unwrap();
    StreamWriter::new(&mut raw, ALL_FRAMING)
        .chunk_header(7, true)
        .unwrap();
    raw.extend_from_slice(&0x02u64.to_be_bytes());
    raw.extend_from_slice(&counted("pc.ram"));
    raw.push(0);
    raw.extend_from_slice(&0x10u64.to_be_bytes());
    StreamWriter::new(&mut raw, framing).footer(7).unwrap();
    raw.extend_from_slice(&s[first..]);
    let d = decode_stream(&raw).unwrap();
    let kinds: Vec<SectionKind> = d.sections.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            SectionKind::Start,
            SectionKind::Command { cmd: 0x0b },
            SectionKind::End,
            SectionKind::Full,
            SectionKind::Full,
            SectionKind::Full
        ]
    );
    assert_eq!(d.sections[2].idstr, "ram");
    assert_eq!(d.sections[2].ram.as_ref().unwrap().counts.zero_pages, 1);
    let json = stream_to_json(&d);
    assert_eq!(
        json["ram (7)"],
        serde_json::json!({"section sizes": {"pc.ram": "0x0000000000001000"}})
    );
    assert_eq!(
        rebuild(&raw, &d),
        &raw[..d.vmdesc.as_ref().unwrap().0.start]
    );

    // An iterative section other than RAM cannot be stepped.
    let mut bad = s[..first].to_vec();
    StreamWriter::new(&mut bad, ALL_FRAMING)
        .start_header(7, "block", 0, 1)
        .unwrap();
    let err = decode_stream(&bad).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::UnknownSection { .. }),
        "{err}"
    );
}

#[test]
fn value_printing() {
    assert_eq!(
        value_to_json(&int(1, true, 0x80)),
        serde_json::json!("0x80 (-128)")
    );
    assert_eq!(
        value_to_json(&int(8, false, 1)),
        serde_json::json!("0x0000000000000001")
    );
    assert_eq!(
        value_to_json(&int(2, true, 0x7fff)),
        serde_json::json!("0x7fff")
    );
    assert_eq!(value_to_json(&Value::Bool(true)), serde_json::json!(true));
    assert_eq!(value_to_json(&Value::Bytes(vec![])), serde_json::json!(""));
    assert_eq!(
        value_to_json(&Value::Array(vec![Value::Bytes(vec![1, 0xab])])),
        serde_json::json!(["01 ab"])
    );
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/qemu72")
}

#[test]
fn real_qemu_7_2_streams() {
    let dir = golden_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "mig"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    // The golden streams are committed: none found is a broken checkout, not a pass.
    assert!(
        !files.is_empty(),
        "no QEMU golden streams in {}",
        dir.display()
    );
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let name = path.display();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let d = match decode_stream(&bytes) {
            Ok(d) => d,
            Err(e) if e.kind() == &ErrorKind::MissingVmdesc => {
                // pc-i440fx-2.2 sends no vmdesc: decode it with the 2.3 one (same devices, same
                // section versions), as dump-sections.py --desc-from does.
                let other = stem.replace("-2.2", "-2.3");
                let desc = dir.join(format!("{other}.desc.json"));
                let Ok(json) = std::fs::read(&desc) else {
                    panic!("{name}: {e}, and no {} to decode it with", desc.display());
                };
                let v = vmstate_runtime::vmdesc::parse_vmdesc(&json).unwrap();
                let d =
                    decode_stream_with(&bytes, Some(&v)).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(d.vmdesc.is_none());
                d
            }
            Err(e) => panic!("{name}: {e}"),
        };
        let machine = d.machine.as_deref();
        if stem.starts_with("machine-") {
            assert_eq!(machine.is_some(), !stem.contains("-2."), "{name}");
            if let Some(m) = machine {
                assert!(stem.ends_with(m), "{name}: {m}");
            }
        } else {
            assert_eq!(machine, Some("pc-i440fx-7.2"), "{name}");
        }
        assert_eq!(d.footers, machine.is_some(), "{name}");
        for idstr in ["serial", "i8254", "mc146818rtc"] {
            assert!(
                d.sections
                    .iter()
                    .any(|s| s.kind == SectionKind::Full && s.idstr == idstr),
                "{name}: no `{idstr}` section"
            );
        }
        let end = d.vmdesc.as_ref().map_or(bytes.len(), |(r, _)| r.start);
        assert_eq!(rebuild(&bytes, &d), &bytes[..end], "{name}");
        if let Some((vrange, _)) = &d.vmdesc {
            assert_eq!(analyze_locator(&bytes), Some(vrange.start + 5), "{name}");
        }

        // The i8254 payload is 108 bytes; the RTC payload 245, plus 45 with its
        // `irq_reinject_on_ack_count` subsection.
        let len = |idstr: &str| {
            let s = d.sections.iter().find(|s| s.idstr == idstr).unwrap();
            s.payload_range.len()
        };
        assert_eq!(len("i8254"), 108, "{name}");
        let rtc = d
            .sections
            .iter()
            .find(|s| s.idstr == "mc146818rtc")
            .unwrap();
        let sub = rtc
            .value
            .as_ref()
            .unwrap()
            .get("mc146818rtc/irq_reinject_on_ack_count");
        assert_eq!(
            len("mc146818rtc"),
            if sub.is_some() { 290 } else { 245 },
            "{name}"
        );

        // analyze-migration.py's output, where the generator committed it, is our oracle.
        let oracle = path.with_extension("state.json");
        if let Ok(text) = std::fs::read_to_string(&oracle) {
            let want: serde_json::Value = serde_json::from_str(&text).unwrap();
            let got = stream_to_json(&d);
            if got != want {
                let (gm, wm) = (got.as_object().unwrap(), want.as_object().unwrap());
                for (k, v) in wm {
                    assert_eq!(gm.get(k), Some(v), "{name}: section {k}");
                }
                assert_eq!(gm.len(), wm.len(), "{name}");
            }
        } else {
            println!("note: {} has no analyze-migration oracle", oracle.display());
        }
    }
}

#[test]
fn real_qemu_ram_counts() {
    let path = golden_dir().join("idle.mig");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{} (committed golden stream): {e}", path.display()));
    let d = decode_stream(&bytes).unwrap();
    let ram: Vec<_> = d.sections.iter().filter(|s| s.idstr == "ram").collect();
    assert_eq!(ram[0].kind, SectionKind::Start);
    let blocks = &ram[0].ram.as_ref().unwrap().blocks;
    assert_eq!(blocks[0].idstr, "pc.ram");
    assert_eq!(blocks[0].used_length, 32 << 20);
    let (pages, zero) = ram.iter().fold((0, 0), |(p, z), s| {
        let c = s.ram.as_ref().unwrap().counts;
        (p + c.pages, z + c.zero_pages)
    });
    // Every page of every block is sent once in a precopy stream.
    let total: u64 = blocks.iter().map(|b| b.used_length / 4096).sum();
    assert_eq!(pages + zero, total);
}

/// A custom section handle without a vmsd description: the vmdesc gets QEMU's legacy entry
/// (`data` buffer of the payload size) and the decoder reads it as such.
#[test]
fn legacy_sections_without_description() {
    use vmstate_runtime::registry::{ErasedReader, SectionSnapshot, Staged};
    use vmstate_runtime::{GateCtx, LoadCx, Reader, RegisterOptions, SaveCx, SectionHandle};

    struct Blob(Mutex<[u8; 3]>);
    struct Snap([u8; 3]);
    struct Loaded;
    impl Staged for Loaded {
        fn commit(self: Box<Self>) {}
    }
    impl SectionSnapshot for Snap {
        fn section_needed(&self, _: &GateCtx<'_>) -> bool {
            true
        }
        fn save(
            &mut self,
            w: &mut Vec<u8>,
            _: u32,
            _: &mut SaveCx<'_>,
        ) -> vmstate_runtime::Result<()> {
            w.extend_from_slice(&self.0);
            Ok(())
        }
        fn describes_vmdesc(&self) -> bool {
            false
        }
    }
    impl SectionHandle for Blob {
        fn schema(&self) -> &'static vmstate_runtime::schema::StructSchema {
            <Uart as vmstate_runtime::VmState>::SCHEMA
        }
        fn snapshot(&self) -> vmstate_runtime::Result<Box<dyn SectionSnapshot + '_>> {
            Ok(Box::new(Snap(*self.0.lock().unwrap())))
        }
        fn stage_load(
            &self,
            r: &mut dyn ErasedReader,
            _: u32,
            _: &mut LoadCx<'_>,
        ) -> vmstate_runtime::Result<Box<dyn Staged>> {
            r.take(3)?;
            Ok(Box::new(Loaded))
        }
    }
    let mut reg = Registry::new();
    reg.register_handle(
        Arc::new(Blob(Mutex::new([1, 2, 0xff]))),
        RegisterOptions::new().bus_path("legacy"),
    )
    .unwrap();
    let m = machine("pc-i440fx-7.2");
    let (s, save) = reg.save_to_vec(&m).unwrap();
    let n = save.vmdesc_len.unwrap() as usize;
    let json = std::str::from_utf8(&s[s.len() - n..]).unwrap();
    assert!(
        json.contains(r#""fields": [{"name": "data", "size": 3, "type": "buffer"}]"#),
        "{json}"
    );
    let d = decode_stream(&s).unwrap();
    assert_eq!(
        stream_to_json(&d),
        serde_json::json!({"legacy/serial (0)": {"data": "01 02 ff"}})
    );
    reg.load(&m, &s).unwrap();
}

/// The streams `needs_qemu::analyze_migration_py_agrees` hands to analyze-migration.py: two
/// registry saves and one whose vmdesc needed padding.
fn analyze_streams() -> Vec<Vec<u8>> {
    let mut streams = Vec::new();
    for m in ["pc-i440fx-7.2", "pc-i440fx-2.3"] {
        streams.push(registry().save_to_vec(&machine(m)).unwrap().0);
    }
    // A vmdesc whose unpadded length would be 0x0001847b.
    let target = 0x0001_847b_usize;
    let head = r#"{"page_size": 4096, "devices": [], "x": ""#;
    let json = format!("{head}{}\"}}", "y".repeat(target - head.len() - 2));
    assert_eq!(json.len(), target);
    let mut padded = Vec::new();
    StreamWriter::new(&mut padded, ALL_FRAMING)
        .header()
        .unwrap();
    StreamWriter::new(&mut padded, ALL_FRAMING).eof().unwrap();
    assert_eq!(
        StreamWriter::new(&mut padded, ALL_FRAMING)
            .vmdesc(&json)
            .unwrap(),
        0x0001_847c
    );
    streams.push(padded);
    streams
}

/// What the script is compared with decodes here, padded vmdesc included.
#[test]
fn analyze_streams_decode() {
    for (i, s) in analyze_streams().iter().enumerate() {
        let d = decode_stream(s).unwrap_or_else(|e| panic!("stream {i}: {e}"));
        assert!(stream_to_json(&d).is_object(), "stream {i}");
    }
}

mod needs_qemu {
    use std::path::PathBuf;

    use vmstate_runtime::decode::stream_to_json;
    use vmstate_runtime::decode_stream;

    /// QEMU's own `analyze-migration.py` reads the streams we write (including one whose vmdesc
    /// needed padding) and prints exactly what `stream_to_json` prints.
    #[test]
    #[ignore = "needs analyze-migration.py: bash scripts/get-qemu-scripts.sh (or set ANALYZE=)"]
    fn analyze_migration_py_agrees() {
        let script = std::env::var_os("ANALYZE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/opt/qemu-src/scripts/analyze-migration.py"));
        assert!(
            script.exists(),
            "{} not found: run `bash scripts/get-qemu-scripts.sh` (or set ANALYZE=)",
            script.display()
        );
        let dir = std::env::temp_dir().join(format!("vmstate-analyze-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in super::analyze_streams().iter().enumerate() {
            let file = dir.join(format!("s{i}.mig"));
            std::fs::write(&file, s).unwrap();
            let out = std::process::Command::new("python3")
                .arg(&script)
                .arg("-f")
                .arg(&file)
                .output()
                .expect("run python3");
            assert!(
                out.status.success(),
                "stream {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(
                theirs,
                stream_to_json(&decode_stream(s).unwrap()),
                "stream {i}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
