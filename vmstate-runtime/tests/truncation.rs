//! Every prefix of a valid stream fails cleanly: an error (never a panic) whose offset is within
//! the prefix, and no device changed. The only prefixes that load are the whole stream and the
//! stream cut right after EOF (the vmdesc is optional on load).

mod common;

use common::{counted, machine, Devices, Pit, Rtc, Uart, ALL_FRAMING};
use vmstate_runtime::ram::{FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE, FLAG_ZERO};
use vmstate_runtime::{decode_stream, Error, ErrorKind, MachineType};

use vmstate_runtime::stream::StreamWriter;

/// The three devices in their default state.
fn empty_devices() -> Devices {
    Devices::new(Uart::default(), Pit::default(), Rtc::default())
}

/// A load case: machine `name`, its [`stream_with_ram`] with the offset of the EOF byte, and
/// devices in their default state to load it into.
fn load_case(name: &str) -> (MachineType, Vec<u8>, usize, Devices) {
    let (full, eof) = stream_with_ram(name);
    (machine(name), full, eof, empty_devices())
}

/// Asserts that `err`, from a prefix or a corruption of `len` bytes, has an offset within
/// those bytes.
fn offset_within(err: &Error, len: usize, what: &str) {
    let off = err
        .offset()
        .unwrap_or_else(|| panic!("{what}: error without offset: {err}"));
    assert!(
        off <= len as u64,
        "{what}: offset {off:#x} past the end: {err}"
    );
}

/// A saved stream for `name` with a RAM section spliced in before the device sections, and
/// the offset of its EOF byte.
fn stream_with_ram(name: &str) -> (Vec<u8>, usize) {
    let m = machine(name);
    let mut u = Uart::sample();
    u.tsr_retry = 3;
    u.lsr = 0;
    let src = Devices::new(u, Pit::sample(), Rtc::sample());
    let (saved, report) = src.reg.save_to_vec(&m).unwrap();
    let first = usize::try_from(report.sections[0].offset).unwrap();
    let framing = m.framing();
    let mut s = saved[..first].to_vec();
    // START: the block list. PART: a zero page and a full page of pc.ram. END: a zero page of
    // pc.bios. Each chunk's records end with EOS, and the chunk with a footer.
    let zero_page = |block: &str| {
        let mut r = FLAG_ZERO.to_be_bytes().to_vec();
        r.extend_from_slice(&counted(block));
        r.push(0);
        r
    };
    let mut blocks = (0x3000 | FLAG_MEM_SIZE).to_be_bytes().to_vec();
    for (name, len) in [("pc.ram", 0x2000u64), ("pc.bios", 0x1000)] {
        blocks.extend_from_slice(&counted(name));
        blocks.extend_from_slice(&len.to_be_bytes());
    }
    let mut part = zero_page("pc.ram");
    part.extend_from_slice(&(0x1000 | FLAG_PAGE | 0x20).to_be_bytes());
    part.extend_from_slice(&[0x11; 4096]);
    for (i, records) in [blocks, part, zero_page("pc.bios")].iter().enumerate() {
        let mut w = StreamWriter::new(&mut s, ALL_FRAMING);
        match i {
            0 => w.start_header(90, "ram", 0, 4),
            _ => w.chunk_header(90, i == 2),
        }
        .unwrap();
        s.extend_from_slice(records);
        s.extend_from_slice(&FLAG_EOS.to_be_bytes());
        StreamWriter::new(&mut s, framing).footer(90).unwrap();
    }
    s.extend_from_slice(&saved[first..]);
    let eof = s.len() - report.vmdesc_len.map_or(0, |n| n as usize + 5) - 1;
    assert_eq!(s[eof], 0);
    (s, eof)
}

#[test]
fn every_prefix_fails_cleanly_on_load() {
    for name in ["pc-i440fx-7.2", "pc-i440fx-2.3", "pc-i440fx-2.2"] {
        let (m, full, eof, dst) = load_case(name);
        // Sanity: the full stream loads.
        let ok = empty_devices();
        ok.reg.load(&m, &full).unwrap();
        assert_eq!(*ok.pit.lock().unwrap(), Pit::sample());

        for k in 0..full.len() {
            let prefix = &full[..k];
            let res = dst.reg.load(&m, prefix);
            if k == eof + 1 {
                res.unwrap_or_else(|e| panic!("{name}: prefix {k} (up to EOF) must load: {e}"));
                dst.reset();
                continue;
            }
            let err = res.expect_err(&format!("{name}: prefix of {k} bytes loaded"));
            offset_within(&err, k, &format!("{name}: prefix {k}"));
            // Mostly end of input; a prefix that cuts a subsection header inside its name ends
            // the subsection loop (QEMU's peek rule), so the next item is what fails.
            assert!(
                matches!(
                    err.kind(),
                    ErrorKind::UnexpectedEof { .. }
                        | ErrorKind::MissingFooter { found: 0x05 }
                        | ErrorKind::UnexpectedSectionType { found: 0x05 }
                ),
                "{name}: prefix {k}: {err}"
            );
            dst.assert_default(&format!("{name}: prefix {k}"));
        }
    }
}

#[test]
fn every_prefix_fails_cleanly_on_streaming_load() {
    let (m, full, eof, dst) = load_case("pc-i440fx-7.2");
    for k in 0..full.len() {
        let res = dst.reg.load_io(&m, &full[..k]);
        if k == eof + 1 {
            assert!(res.is_ok());
            dst.reset();
            continue;
        }
        let err = res.unwrap_err();
        offset_within(&err, k, &format!("prefix {k}"));
        dst.assert_default(&format!("prefix {k}"));
    }
}

#[test]
fn every_prefix_fails_cleanly_on_decode() {
    for name in ["pc-i440fx-7.2", "pc-i440fx-2.3"] {
        let (full, _) = stream_with_ram(name);
        let decoded = decode_stream(&full).unwrap();
        assert_eq!(decoded.sections.len(), 6);
        for k in 0..full.len() {
            let err = decode_stream(&full[..k]).expect_err("a prefix decoded");
            offset_within(&err, k, &format!("{name}: prefix {k}"));
        }
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Not only prefixes: flipping any byte must give Ok or Err, never a panic, and an Err must
    // leave the devices untouched.
    let (m, full, _, dst) = load_case("pc-i440fx-7.2");
    for i in 0..full.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut s = full.clone();
            s[i] ^= x;
            let _ = decode_stream(&s);
            if let Err(e) = dst.reg.load(&m, &s) {
                let what = format!("byte {i} ^ {x:#04x}");
                offset_within(&e, s.len(), &what);
                dst.assert_default(&what);
            } else {
                dst.reset();
            }
        }
    }
}
