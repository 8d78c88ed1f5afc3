//! Every prefix of a valid stream fails cleanly: an error (never a panic) whose offset is within
//! the prefix, and no device changed. The only prefixes that load are the whole stream and the
//! stream cut right after EOF (the vmdesc is optional on load).

mod common;

use std::sync::{Arc, Mutex};

use common::{counted, machine, Pit, Rtc, Uart};
use vmstate_runtime::ram::{FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE, FLAG_ZERO};
use vmstate_runtime::{decode_stream, ErrorKind, Registry};

use vmstate_runtime::stream::StreamWriter;

/// Framing for hand-built streams (the methods used here do not depend on it).
const ALL_FRAMING: vmstate_runtime::machine::Framing = vmstate_runtime::machine::Framing {
    configuration: true,
    footers: true,
    vmdesc: true,
};

struct Devices {
    reg: Registry,
    uart: Arc<Mutex<Uart>>,
    pit: Arc<Mutex<Pit>>,
    rtc: Arc<Mutex<Rtc>>,
}

fn devices(uart: Uart, pit: Pit, rtc: Rtc) -> Devices {
    let uart = Arc::new(Mutex::new(uart));
    let pit = Arc::new(Mutex::new(pit));
    let rtc = Arc::new(Mutex::new(rtc));
    let mut reg = Registry::new();
    reg.register(uart.clone()).unwrap();
    reg.register(pit.clone()).unwrap();
    reg.register(rtc.clone()).unwrap();
    Devices {
        reg,
        uart,
        pit,
        rtc,
    }
}

/// A saved stream for `name` with a RAM section spliced in before the device sections, and
/// the offset of its EOF byte.
fn stream_with_ram(name: &str) -> (Vec<u8>, usize) {
    let m = machine(name);
    let mut u = Uart::sample();
    u.tsr_retry = 3;
    u.lsr = 0;
    let src = devices(u, Pit::sample(), Rtc::sample());
    let (saved, report) = src.reg.save_to_vec(&m).unwrap();
    let first = usize::try_from(report.sections[0].offset).unwrap();
    let framing = m.framing();
    let mut s = saved[..first].to_vec();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .start_header(90, "ram", 0, 4)
        .unwrap();
    s.extend_from_slice(&(0x3000 | FLAG_MEM_SIZE).to_be_bytes());
    for (name, len) in [("pc.ram", 0x2000u64), ("pc.bios", 0x1000)] {
        s.extend_from_slice(&counted(name));
        s.extend_from_slice(&len.to_be_bytes());
    }
    s.extend_from_slice(&FLAG_EOS.to_be_bytes());
    StreamWriter::new(&mut s, framing).footer(90).unwrap();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .chunk_header(90, false)
        .unwrap();
    s.extend_from_slice(&FLAG_ZERO.to_be_bytes());
    s.extend_from_slice(&counted("pc.ram"));
    s.push(0);
    s.extend_from_slice(&(0x1000 | FLAG_PAGE | 0x20).to_be_bytes());
    s.extend_from_slice(&[0x11; 4096]);
    s.extend_from_slice(&FLAG_EOS.to_be_bytes());
    StreamWriter::new(&mut s, framing).footer(90).unwrap();
    StreamWriter::new(&mut s, ALL_FRAMING)
        .chunk_header(90, true)
        .unwrap();
    s.extend_from_slice(&FLAG_ZERO.to_be_bytes());
    s.extend_from_slice(&counted("pc.bios"));
    s.push(0);
    s.extend_from_slice(&FLAG_EOS.to_be_bytes());
    StreamWriter::new(&mut s, framing).footer(90).unwrap();
    s.extend_from_slice(&saved[first..]);
    let eof = s.len() - report.vmdesc_len.map_or(0, |n| n as usize + 5) - 1;
    assert_eq!(s[eof], 0);
    (s, eof)
}

#[test]
fn every_prefix_fails_cleanly_on_load() {
    for name in ["pc-i440fx-7.2", "pc-i440fx-2.3", "pc-i440fx-2.2"] {
        let m = machine(name);
        let (full, eof) = stream_with_ram(name);
        // Sanity: the full stream loads.
        let ok = devices(Uart::default(), Pit::default(), Rtc::default());
        ok.reg.load(&m, &full).unwrap();
        assert_eq!(*ok.pit.lock().unwrap(), Pit::sample());

        let dst = devices(Uart::default(), Pit::default(), Rtc::default());
        for k in 0..full.len() {
            let prefix = &full[..k];
            let res = dst.reg.load(&m, prefix);
            if k == eof + 1 {
                res.unwrap_or_else(|e| panic!("{name}: prefix {k} (up to EOF) must load: {e}"));
                *dst.uart.lock().unwrap() = Uart::default();
                *dst.pit.lock().unwrap() = Pit::default();
                *dst.rtc.lock().unwrap() = Rtc::default();
                continue;
            }
            let err = res.expect_err(&format!("{name}: prefix of {k} bytes loaded"));
            let off = err
                .offset()
                .unwrap_or_else(|| panic!("{name}: prefix {k}: error without offset: {err}"));
            assert!(
                off <= k as u64,
                "{name}: prefix {k}: offset {off:#x} past the end: {err}"
            );
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
            assert_eq!(
                *dst.uart.lock().unwrap(),
                Uart::default(),
                "{name}: prefix {k}"
            );
            assert_eq!(
                *dst.pit.lock().unwrap(),
                Pit::default(),
                "{name}: prefix {k}"
            );
            assert_eq!(
                *dst.rtc.lock().unwrap(),
                Rtc::default(),
                "{name}: prefix {k}"
            );
        }
    }
}

#[test]
fn every_prefix_fails_cleanly_on_streaming_load() {
    let m = machine("pc-i440fx-7.2");
    let (full, eof) = stream_with_ram("pc-i440fx-7.2");
    let dst = devices(Uart::default(), Pit::default(), Rtc::default());
    for k in 0..full.len() {
        let res = dst.reg.load_io(&m, &full[..k]);
        if k == eof + 1 {
            assert!(res.is_ok());
            *dst.uart.lock().unwrap() = Uart::default();
            *dst.pit.lock().unwrap() = Pit::default();
            *dst.rtc.lock().unwrap() = Rtc::default();
            continue;
        }
        let err = res.unwrap_err();
        assert!(
            err.offset().is_some_and(|o| o <= k as u64),
            "prefix {k}: {err}"
        );
        assert_eq!(*dst.pit.lock().unwrap(), Pit::default());
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
            let off = err
                .offset()
                .unwrap_or_else(|| panic!("prefix {k}: no offset: {err}"));
            assert!(
                off <= k as u64,
                "{name}: prefix {k}: offset {off:#x}: {err}"
            );
        }
    }
}

#[test]
fn every_single_byte_corruption_is_handled() {
    // Not only prefixes: flipping any byte must give Ok or Err, never a panic, and an Err must
    // leave the devices untouched.
    let m = machine("pc-i440fx-7.2");
    let (full, _) = stream_with_ram("pc-i440fx-7.2");
    let dst = devices(Uart::default(), Pit::default(), Rtc::default());
    for i in 0..full.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut s = full.clone();
            s[i] ^= x;
            let _ = decode_stream(&s);
            if let Err(e) = dst.reg.load(&m, &s) {
                assert!(e.offset().is_some_and(|o| o <= s.len() as u64), "{e}");
                assert_eq!(*dst.pit.lock().unwrap(), Pit::default());
                assert_eq!(*dst.rtc.lock().unwrap(), Rtc::default());
            } else {
                *dst.uart.lock().unwrap() = Uart::default();
                *dst.pit.lock().unwrap() = Pit::default();
                *dst.rtc.lock().unwrap() = Rtc::default();
            }
        }
    }
}
