//! Whole-stream framing: exact bytes per machine type, round trips, all-or-nothing loads and
//! every framing error of `Registry::load`.

mod common;

use std::sync::{Arc, Mutex};

use common::{be32, counted, machine, Devices, Pit, Rtc, Uart, ALL_FRAMING};
use vmstate_runtime::registry::SectionKey;
use vmstate_runtime::stream::{self, analyze_locator};
use vmstate_runtime::{ErrorKind, RegisterOptions, Registry};

use vmstate_runtime::stream::StreamWriter;

const UART_JSON_V3: &str = r#"{"page_size": 4096, "devices": [{"name": "serial", "instance_id": 0, "vmsd_name": "serial", "version": 3, "fields": [{"name": "divider", "type": "uint16", "size": 2}, {"name": "rbr", "type": "uint8", "size": 1}, {"name": "ier", "type": "uint8", "size": 1}, {"name": "lsr", "type": "uint8", "size": 1}, {"name": "fcr_vmstate", "type": "uint8", "size": 1}]}]}"#;
const UART_JSON_V2: &str = r#"{"page_size": 4096, "devices": [{"name": "serial", "instance_id": 0, "vmsd_name": "serial", "version": 2, "fields": [{"name": "divider", "type": "uint16", "size": 2}, {"name": "rbr", "type": "uint8", "size": 1}, {"name": "ier", "type": "uint8", "size": 1}, {"name": "lsr", "type": "uint8", "size": 1}]}]}"#;

fn uart_registry(u: Uart) -> (Registry, Arc<Mutex<Uart>>) {
    let dev = Arc::new(Mutex::new(u));
    let mut reg = Registry::new();
    reg.register(dev.clone()).unwrap();
    (reg, dev)
}

fn vmdesc_bytes(json: &str) -> Vec<u8> {
    let mut v = vec![0x06];
    v.extend_from_slice(&be32(u32::try_from(json.len()).unwrap()));
    v.extend_from_slice(json.as_bytes());
    v
}

#[test]
fn exact_bytes_pc_i440fx_7_2() {
    let (reg, dev) = uart_registry(Uart::sample());
    let mut out = Vec::new();
    let report = reg.save(&machine("pc-i440fx-7.2"), &mut out).unwrap();
    let mut expected = Vec::new();
    expected.extend_from_slice(b"QEVM\x00\x00\x00\x03");
    expected.extend_from_slice(b"\x07\x00\x00\x00\x0dpc-i440fx-7.2");
    expected.extend_from_slice(&[0x04, 0, 0, 0, 0]);
    expected.extend_from_slice(&counted("serial"));
    expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 3]);
    expected.extend_from_slice(&[0x00, 0x0c, 0x00, 0x0f, 0x60, 0x41]);
    expected.extend_from_slice(&[0x7e, 0, 0, 0, 0]);
    expected.push(0x00);
    assert!(stream::vmdesc_len_is_safe(UART_JSON_V3.len() as u32));
    expected.extend_from_slice(&vmdesc_bytes(UART_JSON_V3));
    assert_eq!(out, expected);
    assert_eq!(report.total_bytes, expected.len() as u64);
    assert_eq!(report.sections.len(), 1);
    assert_eq!(report.sections[0].offset, 26);
    assert_eq!(report.sections[0].payload_len, 6);
    assert_eq!(report.vmdesc_len, Some(UART_JSON_V3.len() as u32));
    // pre_save ran on a copy: the live device is untouched.
    assert_eq!(*dev.lock().unwrap(), Uart::sample());
    // analyze-migration.py's locator finds the JSON.
    assert_eq!(analyze_locator(&out), Some(out.len() - UART_JSON_V3.len()));
}

/// Machines older than 2.4: no configuration section, no footers, the UART pinned to version 2
/// (so `fcr_vmstate`, since 3, is absent); the vmdesc only from 2.3 on.
#[test]
fn exact_bytes_pc_i440fx_2_3_and_2_2_no_config_no_footers() {
    for (name, vmdesc) in [
        ("pc-i440fx-2.3", Some(UART_JSON_V2)),
        ("pc-i440fx-2.2", None),
    ] {
        let (reg, _) = uart_registry(Uart::sample());
        let mut out = Vec::new();
        let report = reg.save(&machine(name), &mut out).unwrap();
        let mut expected = Vec::new();
        expected.extend_from_slice(b"QEVM\x00\x00\x00\x03");
        expected.extend_from_slice(&[0x04, 0, 0, 0, 0]);
        expected.extend_from_slice(&counted("serial"));
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        expected.extend_from_slice(&[0x00, 0x0c, 0x00, 0x0f, 0x60]);
        expected.push(0x00);
        if let Some(json) = vmdesc {
            expected.extend_from_slice(&vmdesc_bytes(json));
        }
        assert_eq!(out, expected, "{name}");
        assert_eq!(
            report.vmdesc_len,
            vmdesc.map(|json| u32::try_from(json.len()).unwrap()),
            "{name}"
        );
    }
}

#[test]
fn subsection_in_stream_and_vmdesc() {
    let mut u = Uart::sample();
    u.tsr_retry = 2;
    u.lsr = 0x20;
    let (reg, _) = uart_registry(u.clone());
    let (out, report) = reg.save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let payload_start = usize::try_from(report.sections[0].offset).unwrap() + 20;
    let mut payload = vec![0x00, 0x0c, 0x00, 0x0f, 0x20, 0x41, 0x05];
    payload.extend_from_slice(&counted("serial/tsr"));
    payload.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(
        &out[payload_start..payload_start + payload.len()],
        &payload[..]
    );
    let json =
        std::str::from_utf8(&out[out.len() - report.vmdesc_len.unwrap() as usize..]).unwrap();
    assert!(json.contains(r#""subsections": [{"vmsd_name": "serial/tsr", "version": 1, "fields": [{"name": "tsr_retry", "type": "uint32", "size": 4}]}]"#), "{json}");

    let (reg2, dev2) = uart_registry(Uart::default());
    reg2.load(&machine("pc-i440fx-7.2"), &out).unwrap();
    let mut want = u;
    want.fcr_vmstate = want.fcr;
    assert_eq!(*dev2.lock().unwrap(), want);
}

fn sample_machine() -> Devices {
    Devices::with_aliases(Uart::sample(), Pit::sample(), Rtc::sample())
}

fn empty_machine() -> Devices {
    Devices::with_aliases(Uart::default(), Pit::default(), Rtc::default())
}

#[test]
fn round_trip_all_machine_types() {
    for name in [
        "pc-i440fx-7.2",
        "pc-i440fx-2.4",
        "pc-i440fx-2.3",
        "pc-i440fx-2.2",
        "pc-q35-5.0",
    ] {
        let m = machine(name);
        let src = sample_machine();
        let (stream, save) = src.reg.save_to_vec(&m).unwrap();
        // Priority: the RTC (priority 1) first, then registration order.
        let order: Vec<&str> = save.sections.iter().map(|s| s.key.idstr.as_str()).collect();
        assert_eq!(order, ["mc146818rtc", "serial", "i8254"], "{name}");
        let ids: Vec<u32> = save.sections.iter().map(|s| s.section_id).collect();
        assert_eq!(ids, [0, 1, 2]);

        let dst = empty_machine();
        let report = dst.reg.load(&m, &stream).unwrap();
        assert_eq!(report.sections.len(), 3);
        assert!(report.missing.is_empty());
        assert_eq!(report.total_bytes, stream.len() as u64);
        assert_eq!(*dst.pit.lock().unwrap(), Pit::sample());
        assert_eq!(*dst.rtc.lock().unwrap(), Rtc::sample());
        let mut want = Uart::sample();
        if m.version() >= vmstate_runtime::schema::MachineVersion::new(2, 4) {
            want.fcr_vmstate = want.fcr;
        } else {
            want.fcr = 0;
        }
        assert_eq!(*dst.uart.lock().unwrap(), want, "{name}");

        // Streaming load gives the same result.
        let dst2 = empty_machine();
        let report2 = dst2.reg.load_io(&m, &stream[..]).unwrap();
        assert_eq!(report2, report);
        assert_eq!(*dst2.pit.lock().unwrap(), Pit::sample());
    }
}

#[test]
fn vmdesc_of_nested_array_is_compressed() {
    let src = sample_machine();
    let (stream, save) = src.reg.save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let n = save.vmdesc_len.unwrap() as usize;
    let json = std::str::from_utf8(&stream[stream.len() - n..]).unwrap();
    assert!(json.contains(r#"{"name": "channels", "array_len": 2, "type": "struct", "struct": {"vmsd_name": "pit channel", "version": 2, "fields": [{"name": "count", "type": "int32", "size": 4}, {"name": "mode", "type": "uint8", "size": 1}, {"name": "next_transition_time", "type": "int64", "size": 8}]}, "size": 13}"#), "{json}");
    assert!(json.contains(r#"{"name": "cmos_data", "type": "buffer", "size": 8}, {"name": "cmos_index", "type": "uint8", "size": 1}, {"name": "unused", "type": "unused_buffer", "size": 4}, {"name": "periodic_timer", "type": "timer", "size": 8}"#), "{json}");
}

#[test]
fn all_or_nothing() {
    // Source: the UART (second section) fails its post_load validation on the destination.
    let mut bad_uart = Uart::sample();
    bad_uart.tsr_retry = 1; // with LSR.TEMT (0x40) set in sample(): rejected on load
    let src = Devices::with_aliases(bad_uart, Pit::sample(), Rtc::sample());
    let m = machine("pc-i440fx-7.2");
    let (stream, save) = src.reg.save_to_vec(&m).unwrap();
    assert_eq!(save.sections[0].key.idstr, "mc146818rtc");

    let before = Rtc {
        cmos_index: 7,
        ..Rtc::default()
    };
    let dst = Devices::with_aliases(Uart::default(), Pit::default(), before.clone());
    let err = dst.reg.load(&m, &stream).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ValidationFailed { .. }),
        "{err}"
    );
    let sec = err.section().unwrap();
    assert_eq!(
        (sec.idstr.as_str(), sec.instance_id, sec.version),
        ("serial", 0, Some(3))
    );
    assert_eq!(err.field_path().as_deref(), Some("lsr"));
    // The RTC section (first in the stream) loaded fine but was not committed.
    assert_eq!(*dst.rtc.lock().unwrap(), before);
    assert_eq!(*dst.uart.lock().unwrap(), Uart::default());
    assert_eq!(*dst.pit.lock().unwrap(), Pit::default());

    // A failure after all sections (trailing bytes) also commits nothing.
    let good = sample_machine();
    let (mut stream, _) = good.reg.save_to_vec(&m).unwrap();
    stream.push(0xaa);
    let err = dst.reg.load(&m, &stream).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TrailingBytes { count: 1 });
    assert_eq!(err.offset(), Some(stream.len() as u64 - 1));
    assert_eq!(*dst.rtc.lock().unwrap(), before);
}

#[test]
fn failing_save_names_section_and_writes_nothing() {
    // A custom handle whose pre_save fails after writing a byte.
    struct Broken;
    impl vmstate_runtime::SectionHandle for Broken {
        fn schema(&self) -> &'static vmstate_runtime::schema::StructSchema {
            <Uart as vmstate_runtime::VmState>::SCHEMA
        }
        fn snapshot(
            &self,
        ) -> vmstate_runtime::Result<Box<dyn vmstate_runtime::registry::SectionSnapshot + '_>>
        {
            struct S;
            impl vmstate_runtime::registry::SectionSnapshot for S {
                fn section_needed(&self, _: &vmstate_runtime::GateCtx<'_>) -> bool {
                    true
                }
                fn save(
                    &mut self,
                    w: &mut Vec<u8>,
                    _: u32,
                    _: &mut vmstate_runtime::SaveCx<'_>,
                ) -> vmstate_runtime::Result<()> {
                    w.push(1);
                    vmstate_runtime::__private::save_hook(Err("register stuck"), "pre_save")
                }
            }
            Ok(Box::new(S))
        }
        fn stage_load(
            &self,
            _: &mut dyn vmstate_runtime::registry::ErasedReader,
            _: u32,
            _: &mut vmstate_runtime::LoadCx<'_>,
        ) -> vmstate_runtime::Result<Box<dyn vmstate_runtime::registry::Staged>> {
            unreachable!()
        }
    }
    let mut reg = Registry::new();
    reg.register(Arc::new(Mutex::new(Rtc::sample()))).unwrap();
    reg.register_handle(
        Arc::new(Broken),
        RegisterOptions::new().bus_path("0000:00:1f.0"),
    )
    .unwrap();
    let mut out = Vec::new();
    let err = reg.save(&machine("pc-i440fx-7.2"), &mut out).unwrap_err();
    assert!(out.is_empty());
    assert!(matches!(err.kind(), ErrorKind::SaveFailed { .. }));
    assert_eq!(err.section().unwrap().idstr, "0000:00:1f.0/serial");
    assert!(err.to_string().contains("register stuck"), "{err}");
}

#[test]
fn section_needed_false_and_missing_devices() {
    let mut rtc = Rtc::sample();
    rtc.cmos_index = 0xff;
    let src = Devices::with_aliases(Uart::sample(), Pit::sample(), rtc);
    let m = machine("pc-i440fx-7.2");
    let (stream, save) = src.reg.save_to_vec(&m).unwrap();
    assert_eq!(
        save.skipped,
        [SectionKey {
            idstr: "mc146818rtc".into(),
            instance_id: 0
        }]
    );
    let before = Rtc {
        cmos_data: [9, 0, 0, 0, 0, 0, 0, 0],
        ..Rtc::default()
    };
    let dst = Devices::with_aliases(Uart::default(), Pit::default(), before.clone());
    let report = dst.reg.load(&m, &stream).unwrap();
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].idstr, "mc146818rtc");
    assert_eq!(*dst.rtc.lock().unwrap(), before);
    assert_eq!(*dst.pit.lock().unwrap(), Pit::sample());
}

#[test]
fn instance_ids_aliases_and_bus_paths() {
    let mut reg = Registry::new();
    let a = reg.register(Arc::new(Mutex::new(Uart::sample()))).unwrap();
    let b = reg.register(Arc::new(Mutex::new(Uart::sample()))).unwrap();
    let c = reg
        .register_with(
            Arc::new(Mutex::new(Uart::sample())),
            RegisterOptions::new().bus_path("0000:00:05.0"),
        )
        .unwrap();
    assert_eq!((a.instance_id, b.instance_id), (0, 1));
    assert_eq!(c.idstr, "0000:00:05.0/serial");
    assert_eq!(c.instance_id, 0);
    let dup = reg
        .register_with(
            Arc::new(Mutex::new(Uart::sample())),
            RegisterOptions::new().instance_id(1),
        )
        .unwrap_err();
    assert_eq!(
        dup.kind(),
        &ErrorKind::DuplicateSection {
            idstr: "serial".into(),
            instance_id: 1
        }
    );
    let nested = reg
        .register(Arc::new(Mutex::new(common::Channel::default())))
        .unwrap_err();
    assert!(matches!(nested.kind(), ErrorKind::ValidationFailed { .. }));

    // A stream that names the UART by its legacy alias (0x3f8) loads into instance 0.
    let src = sample_machine();
    let m = machine("pc-i440fx-7.2");
    let (mut stream, save) = src.reg.save_to_vec(&m).unwrap();
    let s = save
        .sections
        .iter()
        .find(|s| s.key.idstr == "serial")
        .unwrap();
    let inst = usize::try_from(s.offset).unwrap() + 1 + 4 + 7;
    stream[inst..inst + 4].copy_from_slice(&be32(0x3f8));
    let dst = empty_machine();
    let report = dst.reg.load(&m, &stream).unwrap();
    let s = report
        .sections
        .iter()
        .find(|s| s.key.idstr == "serial")
        .unwrap();
    assert_eq!((s.key.instance_id, s.stream_instance_id), (0, 0x3f8));
}

/// Saves the sample machine for 7.2 and returns the stream and the offset of the UART section.
fn sample_stream() -> (Vec<u8>, usize, usize) {
    let src = sample_machine();
    let (stream, save) = src.reg.save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let s = save
        .sections
        .iter()
        .find(|s| s.key.idstr == "serial")
        .unwrap();
    let start = usize::try_from(s.offset).unwrap();
    let end = start + 20 + usize::try_from(s.payload_len).unwrap() + 5;
    (stream, start, end)
}

fn load72(stream: &[u8]) -> vmstate_runtime::Error {
    empty_machine()
        .reg
        .load(&machine("pc-i440fx-7.2"), stream)
        .unwrap_err()
}

#[test]
fn bad_magic_and_file_version_2() {
    let (mut stream, _, _) = sample_stream();
    stream[3] = b'X';
    let err = load72(&stream);
    assert_eq!(err.kind(), &ErrorKind::BadMagic { found: 0x5145_5658 });
    assert_eq!(err.offset(), Some(0));

    let (mut stream, _, _) = sample_stream();
    stream[7] = 2;
    let err = load72(&stream);
    assert_eq!(err.kind(), &ErrorKind::UnsupportedFileVersion { found: 2 });
    assert_eq!(err.offset(), Some(4));
}

#[test]
fn unknown_section_type_byte() {
    let (mut stream, start, _) = sample_stream();
    stream[start] = 0x09;
    let err = load72(&stream);
    assert_eq!(
        err.kind(),
        &ErrorKind::UnexpectedSectionType { found: 0x09 }
    );
    assert_eq!(err.offset(), Some(start as u64));
}

#[test]
fn unknown_section() {
    let (stream, start, _) = sample_stream();
    let mut reg = Registry::new();
    reg.register(Arc::new(Mutex::new(Rtc::default()))).unwrap();
    reg.register(Arc::new(Mutex::new(Pit::default()))).unwrap();
    let err = reg.load(&machine("pc-i440fx-7.2"), &stream).unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::UnknownSection {
            idstr: "serial".into(),
            instance_id: 0
        }
    );
    assert_eq!(err.offset(), Some(start as u64));
    assert_eq!(err.section().unwrap().idstr, "serial");
    assert!(
        err.to_string()
            .contains("unknown section `serial` instance 0"),
        "{err}"
    );

    // Unknown instance id of a known idstr.
    let (mut stream, start, _) = sample_stream();
    stream[start + 12..start + 16].copy_from_slice(&be32(1));
    let err = load72(&stream);
    assert_eq!(
        err.kind(),
        &ErrorKind::UnknownSection {
            idstr: "serial".into(),
            instance_id: 1
        }
    );
}

#[test]
fn duplicate_section() {
    let (stream, start, end) = sample_stream();
    let mut dup = stream[..end].to_vec();
    dup.extend_from_slice(&stream[start..]);
    let err = load72(&dup);
    assert_eq!(
        err.kind(),
        &ErrorKind::DuplicateSection {
            idstr: "serial".into(),
            instance_id: 0
        }
    );
    assert_eq!(err.offset(), Some(end as u64));
}

#[test]
fn section_versions() {
    let (mut stream, start, _) = sample_stream();
    stream[start + 19] = 4;
    let err = load72(&stream);
    assert_eq!(err.kind(), &ErrorKind::VersionTooNew { found: 4, max: 3 });
    assert_eq!(err.section().unwrap().version, Some(4));
    stream[start + 19] = 1;
    let err = load72(&stream);
    assert_eq!(err.kind(), &ErrorKind::VersionTooOld { found: 1, min: 2 });
}

#[test]
fn footer_mismatch_and_missing_footer() {
    let (mut stream, _, end) = sample_stream();
    stream[end - 1] ^= 0x10;
    let err = load72(&stream);
    assert_eq!(
        err.kind(),
        &ErrorKind::FooterMismatch {
            expected: 1,
            found: 0x11
        }
    );
    assert_eq!(err.offset(), Some(end as u64 - 5));
    assert_eq!(err.section().unwrap().idstr, "serial");

    let (stream, _, end) = sample_stream();
    let mut cut = stream[..end - 5].to_vec();
    cut.extend_from_slice(&stream[end..]);
    let err = load72(&cut);
    assert_eq!(err.kind(), &ErrorKind::MissingFooter { found: 0x04 });
    assert_eq!(err.offset(), Some(end as u64 - 5));
}

#[test]
fn machine_type_mismatch_and_prefix_rule() {
    let (stream, _, _) = sample_stream();
    let err = empty_machine()
        .reg
        .load(&machine("pc-i440fx-7.1"), &stream)
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::MachineTypeMismatch {
            expected: "pc-i440fx-7.1".into(),
            found: "pc-i440fx-7.2".into()
        }
    );
    assert_eq!(err.offset(), Some(8));

    // QEMU compares only over the received length: "pc-i440fx-7" is accepted by 7.2.
    let mut short = stream[..8].to_vec();
    short.extend_from_slice(b"\x07\x00\x00\x00\x0bpc-i440fx-7");
    short.extend_from_slice(&stream[26..]);
    let report = empty_machine()
        .reg
        .load(&machine("pc-i440fx-7.2"), &short)
        .unwrap();
    assert_eq!(report.configuration.unwrap().machine, "pc-i440fx-7");

    // A stream without configuration section for a machine type that expects one.
    let m23 = sample_machine();
    let (s23, _) = m23.reg.save_to_vec(&machine("pc-i440fx-2.3")).unwrap();
    let err = load72(&s23);
    assert_eq!(err.kind(), &ErrorKind::MissingConfiguration { found: 0x04 });
    assert_eq!(err.offset(), Some(8));
}

#[test]
fn configuration_subsections_on_load() {
    let (stream, _, _) = sample_stream();
    let with = |config: &stream::Configuration| {
        let mut s = stream[..8].to_vec();
        StreamWriter::new(&mut s, ALL_FRAMING)
            .configuration(config)
            .unwrap();
        s.extend_from_slice(&stream[26..]);
        s
    };
    let mut c = stream::Configuration::new("pc-i440fx-7.2");
    c.target_page_bits = Some(12);
    c.uuid = Some([0xab; 16]);
    c.capabilities = Some(Vec::new());
    let report = empty_machine()
        .reg
        .load(&machine("pc-i440fx-7.2"), &with(&c))
        .unwrap();
    assert_eq!(report.configuration, Some(c.clone()));

    c.target_page_bits = Some(16);
    let err = load72(&with(&c));
    assert!(
        matches!(err.kind(), ErrorKind::ValidationFailed { .. }),
        "{err}"
    );

    c.target_page_bits = None;
    c.capabilities = Some(vec!["x-ignore-shared".into()]);
    let err = load72(&with(&c));
    assert!(err.to_string().contains("x-ignore-shared"), "{err}");
}

#[test]
fn trailing_bytes() {
    let (mut stream, _, _) = sample_stream();
    stream.extend_from_slice(b"junk");
    let err = load72(&stream);
    assert_eq!(err.kind(), &ErrorKind::TrailingBytes { count: 4 });
    assert_eq!(err.offset(), Some(stream.len() as u64 - 4));

    // After EOF without vmdesc (2.2): anything that is not a vmdesc is trailing.
    let src = sample_machine();
    let m = machine("pc-i440fx-2.2");
    let (mut s22, _) = src.reg.save_to_vec(&m).unwrap();
    let eof = s22.len();
    s22.extend_from_slice(&[0x42, 0x43]);
    let err = empty_machine().reg.load(&m, &s22).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TrailingBytes { count: 2 });
    assert_eq!(err.offset(), Some(eof as u64));
    // And through the streaming reader.
    let err = empty_machine().reg.load_io(&m, &s22[..]).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TrailingBytes { count: 2 });
}

#[test]
fn vmdesc_length_past_the_end() {
    let src = sample_machine();
    let (mut stream, save) = src.reg.save_to_vec(&machine("pc-i440fx-7.2")).unwrap();
    let n = save.vmdesc_len.unwrap() as usize;
    let at = stream.len() - n - 5;
    assert_eq!(stream[at], 0x06);
    stream[at + 1..at + 5].copy_from_slice(&be32(u32::try_from(n).unwrap() + 1));
    let err = load72(&stream);
    assert!(
        matches!(err.kind(), ErrorKind::UnexpectedEof { .. }),
        "{err}"
    );
    assert_eq!(err.offset(), Some(at as u64));

    stream[at + 1..at + 5].copy_from_slice(&be32(0x7fff_ffff));
    let err = load72(&stream);
    assert!(
        matches!(err.kind(), ErrorKind::LengthTooLarge { .. }),
        "{err}"
    );
    assert_eq!(err.offset(), Some(at as u64 + 1));
}

#[test]
fn commands_and_orphan_chunks() {
    let (stream, start, _) = sample_stream();
    let mut s = stream[..start].to_vec();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .command(0x0b, &[])
        .unwrap();
    s.extend_from_slice(&stream[start..]);
    let err = load72(&s);
    assert_eq!(err.kind(), &ErrorKind::UnsupportedCommand { cmd: 0x0b });
    assert_eq!(err.offset(), Some(start as u64));

    let mut s = stream[..start].to_vec();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .chunk_header(9, false)
        .unwrap();
    s.extend_from_slice(&stream[start..]);
    let err = load72(&s);
    assert_eq!(err.kind(), &ErrorKind::UnknownSectionId { section_id: 9 });
}

/// A RAM section with one block, in front of the device sections.
fn ram_stream(page_record: &[u8]) -> Vec<u8> {
    use vmstate_runtime::ram::{FLAG_EOS, FLAG_MEM_SIZE};
    let (stream, start, _) = sample_stream();
    let framing = machine("pc-i440fx-7.2").framing();
    let mut s = stream[..start].to_vec();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .start_header(50, "ram", 0, 4)
        .unwrap();
    s.extend_from_slice(&(0x2000 | FLAG_MEM_SIZE).to_be_bytes());
    s.extend_from_slice(&counted("pc.ram"));
    s.extend_from_slice(&0x2000u64.to_be_bytes());
    s.extend_from_slice(&FLAG_EOS.to_be_bytes());
    StreamWriter::new(&mut s, framing).footer(50).unwrap();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .chunk_header(50, true)
        .unwrap();
    s.extend_from_slice(page_record);
    s.extend_from_slice(&FLAG_EOS.to_be_bytes());
    StreamWriter::new(&mut s, framing).footer(50).unwrap();
    s.extend_from_slice(&stream[start..]);
    s
}

#[test]
fn ram_sections_are_stepped_over() {
    use vmstate_runtime::ram::{FLAG_PAGE, FLAG_ZERO};
    let mut rec = (0x1000 | FLAG_ZERO).to_be_bytes().to_vec();
    rec.extend_from_slice(&counted("pc.ram"));
    rec.push(0);
    rec.extend_from_slice(&(FLAG_PAGE | 0x20).to_be_bytes());
    rec.extend_from_slice(&[0x5a; 4096]);
    let s = ram_stream(&rec);
    let dst = empty_machine();
    let report = dst.reg.load(&machine("pc-i440fx-7.2"), &s).unwrap();
    assert_eq!((report.ram.pages, report.ram.zero_pages), (1, 1));
    assert_eq!(report.ram_blocks.len(), 1);
    assert_eq!(*dst.pit.lock().unwrap(), Pit::sample());

    // A page outside the block fails the whole load (CVE-2014-7840 class).
    let mut rec = (0x2000 | FLAG_ZERO).to_be_bytes().to_vec();
    rec.extend_from_slice(&counted("pc.ram"));
    rec.push(0);
    let dst = empty_machine();
    let err = dst
        .reg
        .load(&machine("pc-i440fx-7.2"), &ram_stream(&rec))
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::RamPageOutOfRange { .. }),
        "{err}"
    );
    assert_eq!(err.section().unwrap().idstr, "ram");
    assert_eq!(*dst.pit.lock().unwrap(), Pit::default());
}
