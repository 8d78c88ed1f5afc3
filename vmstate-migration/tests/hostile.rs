//! Hostile RAM streams (CVE-2014-7840 class): every block name, offset and length from the
//! stream is checked against the destination's memory, with precise errors; nothing is applied
//! and the destination does not start.

mod common;

use std::sync::{Arc, Mutex};

use common::{dest_sentinel, layout, machine, DestVm, Received, TestDev};
use vmstate_migration::{receive, FileTransport, MigrationError, ReceiveSettings};
use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::ram::{FLAG_CONTINUE, FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE, FLAG_ZERO};
use vmstate_runtime::stream::{self, Configuration};
use vmstate_runtime::{Registry, Writer};

use vmstate_runtime::stream::StreamWriter;

/// Framing for hand-built streams (the methods used here do not depend on it).
const ALL_FRAMING: vmstate_runtime::machine::Framing = vmstate_runtime::machine::Framing {
    configuration: true,
    footers: true,
    vmdesc: true,
};

const RAM_ID: u32 = 1;

fn prefix() -> Vec<u8> {
    let mut v = Vec::new();
    StreamWriter::new(&mut v, ALL_FRAMING).header().unwrap();
    StreamWriter::new(&mut v, ALL_FRAMING)
        .configuration(&Configuration::new(machine().name()))
        .unwrap();
    v
}

/// The destination's real block list.
fn good_blocks() -> Vec<(String, u64)> {
    layout(1)
        .iter()
        .map(|(n, _, s)| ((*n).to_owned(), *s as u64))
        .collect()
}

fn start(blocks: &[(String, u64)], total: u64) -> Vec<u8> {
    let mut v = Vec::new();
    StreamWriter::new(&mut v, ALL_FRAMING)
        .start_header(RAM_ID, "ram", 0, 4)
        .unwrap();
    v.write_be64(total | FLAG_MEM_SIZE).unwrap();
    for (n, l) in blocks {
        v.write_counted_str(n).unwrap();
        v.write_be64(*l).unwrap();
    }
    v.write_be64(FLAG_EOS).unwrap();
    v.extend_from_slice(&[stream::FOOTER, 0, 0, 0, RAM_ID as u8]);
    v
}

fn chunk(ty: u8, records: &[u8]) -> Vec<u8> {
    let mut v = vec![ty, 0, 0, 0, RAM_ID as u8];
    v.extend_from_slice(records);
    v.write_be64(FLAG_EOS).unwrap();
    v.extend_from_slice(&[stream::FOOTER, 0, 0, 0, RAM_ID as u8]);
    v
}

fn zero_rec(block: Option<&str>, offset: u64) -> Vec<u8> {
    let mut v = Vec::new();
    v.write_be64(offset | FLAG_ZERO | if block.is_none() { FLAG_CONTINUE } else { 0 })
        .unwrap();
    if let Some(b) = block {
        v.write_counted_str(b).unwrap();
    }
    v.push(0);
    v
}

fn page_rec(block: &str, offset: u64, fill: u8) -> Vec<u8> {
    let mut v = Vec::new();
    v.write_be64(offset | FLAG_PAGE).unwrap();
    v.write_counted_str(block).unwrap();
    v.extend_from_slice(&[fill; 4096]);
    v
}

/// Device sections + EOF + vmdesc for a device holding `ticks = 7`.
fn device_tail() -> Vec<u8> {
    let mut reg = Registry::new();
    reg.register(Arc::new(Mutex::new(TestDev {
        ticks: 7,
        ctrl: 3,
        flags: 4,
    })))
    .unwrap();
    let (s, _) = reg.save_to_vec(&machine()).unwrap();
    s[prefix().len()..].to_vec()
}

fn whole(start_chunk: Vec<u8>, records: &[u8]) -> Vec<u8> {
    let mut v = prefix();
    v.extend(start_chunk);
    v.extend(chunk(stream::SECTION_PART, records));
    v.extend(chunk(stream::SECTION_END, &[]));
    v.extend(device_tail());
    v
}

fn total() -> u64 {
    good_blocks().iter().map(|b| b.1).sum()
}

fn receive_bytes(bytes: &[u8]) -> Received {
    let path = std::env::temp_dir().join(format!(
        "vmstate-hostile-{}-{:?}.bin",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).unwrap();
    let mut t = FileTransport(std::fs::File::open(&path).unwrap());
    let mut dst = DestVm::new(1);
    let r = receive(&mut dst, &mut t, &ReceiveSettings::default());
    std::fs::remove_file(&path).unwrap();
    (dst, r)
}

fn expect_err(bytes: &[u8]) -> vmstate_runtime::Error {
    let (dst, r) = receive_bytes(bytes);
    assert!(!dst.resumed, "a failed destination must not start");
    assert_eq!(
        *dst.dev.lock().unwrap(),
        dest_sentinel(),
        "device state applied"
    );
    match r {
        Err(MigrationError::Stream(e)) => e,
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn a_valid_handmade_stream_loads() {
    let mut recs = page_rec("pc.ram", 0x3000, 0xab);
    recs.extend(zero_rec(None, 0x4000));
    let (dst, r) = receive_bytes(&whole(start(&good_blocks(), total()), &recs));
    r.unwrap();
    assert!(dst.resumed);
    assert_eq!(dst.dev.lock().unwrap().ticks, 7);
    let snap = dst.ram.snapshot().unwrap();
    assert!(snap[0].1[0x3000..0x4000].iter().all(|&b| b == 0xab));
}

#[test]
fn unknown_block_name() {
    let e = expect_err(&whole(
        start(&good_blocks(), total()),
        &page_rec("evil", 0, 1),
    ));
    assert!(
        matches!(e.kind(), ErrorKind::UnknownRamBlock { name } if name == "evil"),
        "{e}"
    );
    assert!(e.offset().is_some());
}

#[test]
fn offset_beyond_the_block() {
    let e = expect_err(&whole(
        start(&good_blocks(), total()),
        &page_rec("pc.bios", 64 << 10, 1),
    ));
    assert!(
        matches!(e.kind(), ErrorKind::RamPageOutOfRange { block, offset, used_length }
            if block == "pc.bios" && *offset == 64 << 10 && *used_length == 64 << 10),
        "{e}"
    );
    // The last page is fine, one past it is not: ZERO with CONTINUE at the very end.
    let mut recs = zero_rec(Some("pc.rom"), (128 << 10) - 4096);
    recs.extend(zero_rec(None, 128 << 10));
    let e = expect_err(&whole(start(&good_blocks(), total()), &recs));
    assert!(
        matches!(e.kind(), ErrorKind::RamPageOutOfRange { .. }),
        "{e}"
    );
}

#[test]
fn offset_plus_page_overflows_near_u64_max() {
    let e = expect_err(&whole(
        start(&good_blocks(), total()),
        &zero_rec(Some("pc.ram"), !0xfffu64),
    ));
    assert!(
        matches!(e.kind(), ErrorKind::RamPageOutOfRange { offset, .. } if *offset == !0xfffu64),
        "{e}"
    );
}

#[test]
fn mem_size_mismatch() {
    // The error for a stream whose block list is `blocks`, their total the sum of their lengths.
    let listing_err = |blocks: &[(String, u64)]| {
        let t = blocks.iter().map(|b| b.1).sum();
        expect_err(&whole(start(blocks, t), &[]))
    };
    // A block longer in the stream than on this machine.
    let mut blocks = good_blocks();
    blocks[0].1 *= 2;
    let e = listing_err(&blocks);
    assert!(
        e.to_string()
            .contains("`pc.ram` has length 0x200000 in the stream but 0x100000"),
        "{e}"
    );
    // A block this machine does not have.
    let mut blocks = good_blocks();
    blocks.push(("/rom@etc/acpi/tables".into(), 0x2000));
    let e = listing_err(&blocks);
    assert!(
        matches!(e.kind(), ErrorKind::UnknownRamBlock { name } if name == "/rom@etc/acpi/tables"),
        "{e}"
    );
    // A block of this machine missing from the stream.
    let e = listing_err(&good_blocks()[..2]);
    assert!(
        e.to_string()
            .contains("`pc.bios` of this machine is missing"),
        "{e}"
    );
    // Total larger than the blocks: the list runs into EOS and fails.
    let e = expect_err(&whole(start(&good_blocks(), total() + 0x1000), &[]));
    assert!(e.offset().is_some(), "{e}");
    // Total smaller than the blocks.
    let e = expect_err(&whole(start(&good_blocks(), total() - 0x1000), &[]));
    assert!(matches!(e.kind(), ErrorKind::InvalidValue { .. }), "{e}");
}

#[test]
fn device_error_after_valid_ram_applies_nothing() {
    let mut bytes = whole(start(&good_blocks(), total()), &page_rec("pc.ram", 0, 9));
    let n = bytes.len();
    // Corrupt the footer of the device section (the byte before EOF is its section id).
    let eof = vmstate_runtime::decode::find_vmdesc(&bytes).unwrap().0 - 1;
    bytes[eof - 1] ^= 0xff;
    assert_eq!(bytes.len(), n);
    let e = expect_err(&bytes);
    assert!(matches!(e.kind(), ErrorKind::FooterMismatch { .. }), "{e}");
}

#[test]
fn truncated_stream_is_a_clean_error() {
    // A stream that just ends is the source or the network going away, not a malformed stream:
    // the destination says so, with where it stopped.
    let bytes = whole(start(&good_blocks(), total()), &page_rec("pc.ram", 0, 9));
    for cut in [0, 3, 8, 30, 60, 100, 4000, bytes.len() - 1] {
        let (dst, r) = receive_bytes(&bytes[..cut]);
        assert!(!dst.resumed);
        assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel());
        match r {
            Err(
                e @ MigrationError::SourceGone {
                    offset: Some(_), ..
                },
            ) => assert!(
                e.to_string().starts_with(
                    "the source or the network went away: the stream ended at byte 0x"
                ),
                "cut {cut}: {e}"
            ),
            other => panic!("cut {cut}: {other:?}"),
        }
    }
}

// ---- The read-into-guest-memory path: page data read from the transport straight into the
// target page. A transport that hands out a few bytes per read makes the reader's buffer run dry
// inside pages, so every page below is (partly) read directly into guest memory.

/// A transport that returns at most `step` bytes per read.
struct Trickle {
    data: Vec<u8>,
    at: usize,
    step: usize,
}

impl std::io::Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl std::io::Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl vmstate_migration::Transport for Trickle {
    fn finish_stream(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn set_timeout(&mut self, _: Option<std::time::Duration>) -> std::io::Result<()> {
        Ok(())
    }
    fn has_return_path(&self) -> bool {
        false
    }
}

fn receive_trickle(bytes: &[u8], step: usize) -> Received {
    let mut t = Trickle {
        data: bytes.to_vec(),
        at: 0,
        step,
    };
    let mut dst = DestVm::new(1);
    let r = receive(&mut dst, &mut t, &ReceiveSettings::default());
    (dst, r)
}

/// Every byte of every block is zero: nothing was written.
fn untouched(dst: &DestVm) -> bool {
    dst.ram
        .snapshot()
        .unwrap()
        .iter()
        .all(|(_, b)| b.iter().all(|&x| x == 0))
}

fn expect_err_trickle(bytes: &[u8], step: usize) -> (DestVm, vmstate_runtime::Error) {
    let (dst, r) = receive_trickle(bytes, step);
    assert!(!dst.resumed, "a failed destination must not start");
    assert_eq!(*dst.dev.lock().unwrap(), dest_sentinel());
    match r {
        Err(MigrationError::Stream(e)) => (dst, e),
        other => panic!("expected a stream error, got {other:?}"),
    }
}

#[test]
fn direct_reads_land_in_the_right_page_and_block() {
    // pc.ram@0x2000, then pc.rom@0 by name, then CONTINUE@0x1000 (must stay in pc.rom), then
    // pc.ram again by name at its last page.
    let mut recs = page_rec("pc.ram", 0x2000, 0x11);
    recs.extend(page_rec("pc.rom", 0, 0x22));
    let mut cont = Vec::new();
    cont.write_be64(0x1000 | FLAG_PAGE | FLAG_CONTINUE).unwrap();
    cont.extend_from_slice(&[0x33; 4096]);
    recs.extend(cont);
    recs.extend(page_rec("pc.ram", (1 << 20) - 4096, 0x44));
    let bytes = whole(start(&good_blocks(), total()), &recs);
    for step in [1, 7, 4095, 4096, 4097, 1 << 20] {
        let (dst, r) = receive_trickle(&bytes, step);
        r.unwrap_or_else(|e| panic!("step {step}: {e}"));
        let snap = dst.ram.snapshot().unwrap();
        let block = |n: &str| &snap.iter().find(|(m, _)| m == n).unwrap().1;
        let ram = block("pc.ram");
        let rom = block("pc.rom");
        assert!(ram[..0x2000].iter().all(|&b| b == 0), "step {step}");
        assert!(
            ram[0x2000..0x3000].iter().all(|&b| b == 0x11),
            "step {step}"
        );
        assert!(
            ram[0x3000..(1 << 20) - 4096].iter().all(|&b| b == 0),
            "step {step}"
        );
        assert!(
            ram[(1 << 20) - 4096..].iter().all(|&b| b == 0x44),
            "step {step}"
        );
        assert!(rom[..0x1000].iter().all(|&b| b == 0x22), "step {step}");
        assert!(
            rom[0x1000..0x2000].iter().all(|&b| b == 0x33),
            "step {step}"
        );
        assert!(rom[0x2000..].iter().all(|&b| b == 0), "step {step}");
        assert!(block("pc.bios").iter().all(|&b| b == 0), "step {step}");
    }
}

#[test]
fn direct_path_rejects_hostile_offsets_before_writing() {
    let cases: [(&str, u64); 4] = [
        ("pc.bios", 64 << 10),          // one past the last page
        ("pc.bios", 1 << 20),           // inside pc.ram's length, outside pc.bios
        ("pc.rom", !0xfffu64),          // offset + page overflows
        ("pc.ram", (1 << 20) + 0x1000), // beyond the largest block
    ];
    for (block, offset) in cases {
        for step in [3, 4096, 1 << 20] {
            let bytes = whole(
                start(&good_blocks(), total()),
                &page_rec(block, offset, 0xee),
            );
            let (dst, e) = expect_err_trickle(&bytes, step);
            assert!(
                matches!(e.kind(), ErrorKind::RamPageOutOfRange { block: b, offset: o, .. }
                    if b == block && *o == offset),
                "{block}@{offset:#x} step {step}: {e}"
            );
            assert!(
                untouched(&dst),
                "{block}@{offset:#x} step {step}: memory written"
            );
        }
    }
}

#[test]
fn direct_path_rejects_unknown_blocks_and_dangling_continue() {
    for step in [5, 1 << 20] {
        let bytes = whole(start(&good_blocks(), total()), &page_rec("pc.ram2", 0, 1));
        let (dst, e) = expect_err_trickle(&bytes, step);
        assert!(
            matches!(e.kind(), ErrorKind::UnknownRamBlock { name } if name == "pc.ram2"),
            "{e}"
        );
        assert!(untouched(&dst));

        // A block announced in START (so the stepper knows it) that this machine lacks, with a
        // page inside the START chunk itself, before the block lists are compared: the page
        // must not land anywhere.
        let mut blocks = good_blocks();
        blocks.push(("evil".into(), 0x1000));
        let mut s = start(&blocks, total() + 0x1000);
        let eos = s.len() - 5 - 8;
        s.splice(eos..eos, page_rec("evil", 0, 0x5a));
        let mut bytes = prefix();
        bytes.extend(s);
        let (dst, e) = expect_err_trickle(&bytes, step);
        assert!(
            matches!(e.kind(), ErrorKind::UnknownRamBlock { name } if name == "evil"),
            "{e}"
        );
        assert!(untouched(&dst));

        // CONTINUE as the first page record of the section.
        let mut cont = Vec::new();
        cont.write_be64(FLAG_PAGE | FLAG_CONTINUE).unwrap();
        cont.extend_from_slice(&[0x77; 4096]);
        let (dst, e) = expect_err_trickle(&whole(start(&good_blocks(), total()), &cont), step);
        assert!(matches!(e.kind(), ErrorKind::InvalidValue { .. }), "{e}");
        assert!(untouched(&dst));
    }
}

#[test]
fn truncation_mid_page_is_a_clean_error() {
    let full = whole(
        start(&good_blocks(), total()),
        &page_rec("pc.ram", 0x5000, 0x99),
    );
    // Where the page data starts: the PART chunk header, the record word and the name.
    let data = prefix().len() + start(&good_blocks(), total()).len() + 5 + 8 + 1 + 6;
    assert_eq!(full[data - 6..data], *b"pc.ram");
    for cut in [0, 1, 7, 2048, 4095] {
        for step in [1, 9, 4096, 1 << 20] {
            let (dst, r) = receive_trickle(&full[..data + cut], step);
            assert!(!dst.resumed);
            let Err(MigrationError::SourceGone {
                offset, section, ..
            }) = &r
            else {
                panic!("cut {cut} step {step}: {r:?}");
            };
            assert_eq!(*offset, Some((data + cut) as u64), "cut {cut} step {step}");
            assert_eq!(
                section.as_deref(),
                Some("`ram` instance 0"),
                "cut {cut} step {step}"
            );
            // Only the target page may hold partial data; everything else is untouched.
            let snap = dst.ram.snapshot().unwrap();
            for (name, b) in &snap {
                for (i, &x) in b.iter().enumerate() {
                    let in_target = name == "pc.ram" && (0x5000..0x6000).contains(&i);
                    assert!(x == 0 || in_target, "cut {cut} step {step}: {name}+{i:#x}");
                }
            }
        }
    }
}
