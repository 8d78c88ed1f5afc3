use super::*;
use crate::error::ErrorKind;
use crate::machine::Framing;
use crate::reader::SliceReader;

const ALL: Framing = Framing {
    configuration: true,
    footers: true,
    vmdesc: true,
};

fn w(out: &mut Vec<u8>) -> StreamWriter<&mut Vec<u8>> {
    StreamWriter::new(out, ALL)
}

#[test]
fn len_safety() {
    assert!(!vmdesc_len_is_safe(0x0001_847b));
    assert!(vmdesc_len_is_safe(0x0001_847c));
    assert!(vmdesc_len_is_safe(0x0001_83ed));
    // 0x7b before the last zero byte is harmless.
    assert!(vmdesc_len_is_safe(0x007b_0000));
    assert!(!vmdesc_len_is_safe(0x017b_0101));
    assert!(!vmdesc_len_is_safe(0x7b));
    assert!(vmdesc_len_is_safe(0x7c));
}

#[test]
fn padding_fixes_0x1847b() {
    // A JSON document of exactly 0x1847b bytes.
    let target = 0x0001_847b_usize;
    let filler = target - r#"{"a": ""}"#.len();
    let json = format!("{{\"a\": \"{}\"}}", "x".repeat(filler));
    assert_eq!(json.len(), target);
    let padded = pad_vmdesc_json(&json).unwrap();
    assert_eq!(padded.len(), 0x0001_847c);
    assert!(padded.ends_with("\" }"));
    assert!(serde_json::from_str::<serde_json::Value>(&padded).is_ok());

    // Whole stream tail: EOF, vmdesc; the unpadded one defeats the locator.
    let mut raw = vec![0u8];
    raw.push(VMDESC);
    raw.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
    raw.extend_from_slice(json.as_bytes());
    assert_eq!(analyze_locator(&raw), None);

    let mut good = vec![0u8];
    let n = w(&mut good).vmdesc(&json).unwrap();
    assert_eq!(n, 0x0001_847c);
    assert_eq!(analyze_locator(&good), Some(6));
}

#[test]
fn padding_is_noop_when_safe() {
    let json = r#"{"page_size": 4096, "devices": []}"#;
    assert_eq!(pad_vmdesc_json(json).unwrap(), json);
    let not_object = "[1]";
    assert_eq!(pad_vmdesc_json(not_object).unwrap(), not_object);
}

#[test]
fn vmdesc_rejects_nul() {
    let mut out = Vec::new();
    let e = w(&mut out).vmdesc("{\"a\": \"\0\"}").unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::BadVmdesc { .. }));
    assert!(out.is_empty());
}

#[test]
fn configuration_round_trip() {
    let config = Configuration {
        machine: "virt-7.2".into(),
        target_page_bits: Some(12),
        capabilities: Some(vec!["x-ignore-shared".into()]),
        uuid: Some([7; 16]),
    };
    let mut out = Vec::new();
    w(&mut out).configuration(&config).unwrap();
    out.push(EOF);
    let mut r = SliceReader::new(&out);
    assert_eq!(
        read_section_header(&mut r).unwrap(),
        SectionHeader::Configuration(config)
    );
    assert_eq!(read_section_header(&mut r).unwrap(), SectionHeader::Eof);
}

#[test]
fn configuration_unknown_subsection() {
    let mut out = Vec::new();
    w(&mut out)
        .configuration(&Configuration::new("pc"))
        .unwrap();
    out.extend_from_slice(&[SUBSECTION, 17]);
    out.extend_from_slice(b"configuration/foo");
    out.extend_from_slice(&1u32.to_be_bytes());
    let mut r = SliceReader::new(&out);
    let e = read_section_header(&mut r).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::UnknownSubsection {
            name: "configuration/foo".into()
        }
    );
    assert_eq!(e.offset(), Some(7));
}

#[test]
fn configuration_duplicate_and_limits() {
    let mut out = Vec::new();
    let c = Configuration {
        target_page_bits: Some(12),
        ..Configuration::new("pc")
    };
    w(&mut out).configuration(&c).unwrap();
    let dup_at = out.len();
    out.push(SUBSECTION);
    out.push(u8::try_from(CONFIG_PAGE_BITS.len()).unwrap());
    out.extend_from_slice(CONFIG_PAGE_BITS.as_bytes());
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&12u32.to_be_bytes());
    let e = read_section_header(&mut SliceReader::new(&out)).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::DuplicateSubsection { .. }));
    assert_eq!(e.offset(), Some(dup_at as u64));

    let mut big = vec![CONFIGURATION];
    big.extend_from_slice(&0xffff_ffffu32.to_be_bytes());
    let e = read_section_header(&mut SliceReader::new(&big)).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::LengthTooLarge { .. }));
}

#[test]
fn header_and_footer() {
    let mut out = Vec::new();
    let mut s = w(&mut out);
    s.header().unwrap();
    s.full_header(22, "serial", 0, 3).unwrap();
    s.footer(22).unwrap();
    let framing = ALL;
    assert_eq!(
        out,
        [
            &b"QEVM\0\0\0\x03\x04\0\0\0\x16\x06serial"[..],
            &[0, 0, 0, 0, 0, 0, 0, 3, 0x7e, 0, 0, 0, 0x16]
        ]
        .concat()
    );
    let mut r = SliceReader::new(&out);
    read_stream_header(&mut r).unwrap();
    assert_eq!(
        read_section_header(&mut r).unwrap(),
        SectionHeader::Full {
            section_id: 22,
            idstr: "serial".into(),
            instance_id: 0,
            version: 3
        }
    );
    expect_footer(&mut r.clone(), 22, &framing).unwrap();
    let e = expect_footer(&mut r, 23, &framing).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::FooterMismatch {
            expected: 23,
            found: 22
        }
    );
}

#[test]
fn trailer() {
    let mut s = Vec::new();
    w(&mut s).vmdesc("{}").unwrap();
    let t = skip_vmdesc_trailer(&mut SliceReader::new(&s))
        .unwrap()
        .unwrap();
    assert_eq!((t.start, t.json_start, t.len), (0, 5, 2));
    s.push(1);
    let e = skip_vmdesc_trailer(&mut SliceReader::new(&s)).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::TrailingBytes { count: 1 });
    assert_eq!(e.offset(), Some(7));
    let e = skip_vmdesc_trailer(&mut SliceReader::new(&s[..6])).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::UnexpectedEof { .. }));
    assert_eq!(e.offset(), Some(0));
    let e = skip_vmdesc_trailer(&mut SliceReader::new(&[1, 2, 3])).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::TrailingBytes { count: 3 });
}

#[test]
fn vmdesc_with_writes_what_vmdesc_writes() {
    let target = 0x0001_847b_usize;
    let filler = target - r#"{"a": ""}"#.len();
    let padded = format!("{{\"a\": \"{}\"}}", "x".repeat(filler));
    for json in [r#"{"page_size": 4096, "devices": []}"#, padded.as_str()] {
        let mut want = vec![7u8];
        let n = w(&mut want).vmdesc(json).unwrap();
        let mut s = StreamWriter::new(vec![7u8], ALL);
        assert_eq!(
            s.vmdesc_with(|out| out.extend_from_slice(json.as_bytes()))
                .unwrap(),
            n
        );
        assert_eq!(s.into_inner(), want);
    }
    // A bad document leaves nothing of the trailer behind.
    let mut s = StreamWriter::new(vec![7u8], ALL);
    let e = s
        .vmdesc_with(|out| out.extend_from_slice(b"[1]"))
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::BadVmdesc { .. }));
    assert_eq!(e.offset(), Some(1));
    assert_eq!(s.into_inner(), [7]);
}
