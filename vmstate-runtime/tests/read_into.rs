//! `Reader::read_into` (payloads read straight into their destination) and the stepper's
//! block-indexed page callback.

use vmstate_runtime::error::ErrorKind;
use vmstate_runtime::ram::{
    PageRecord, RamStepper, FLAG_CONTINUE, FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE,
};
use vmstate_runtime::{IoReader, Reader, SliceReader};

/// Hands out at most `step` bytes per read.
struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn io_reader_read_into_copies_buffered_bytes_then_reads_directly() {
    let data = bytes(20_000);
    for step in [1, 3, 100, 4096, 5000, 1 << 20] {
        for cap in [16, 64, 4096, 1 << 16] {
            let mut r = IoReader::with_capacity(cap, Trickle(&data, step));
            assert_eq!(r.take(5).unwrap(), &data[..5]);
            let mut page = vec![0u8; 4096];
            r.read_into(&mut page).unwrap();
            assert_eq!(page, data[5..4101], "step {step} cap {cap}");
            assert_eq!(r.position(), 4101);
            // What was read ahead together with the page comes next, in order.
            assert_eq!(
                r.read_be64().unwrap(),
                u64::from_be_bytes(data[4101..4109].try_into().unwrap())
            );
            r.read_into(&mut page).unwrap();
            assert_eq!(page, data[4109..8205], "step {step} cap {cap}");
            r.skip(20_000 - 8205 - 10).unwrap();
            // Truncated: 10 bytes left for 4096.
            let e = r.read_into(&mut page).unwrap_err();
            assert!(matches!(e.kind(), ErrorKind::UnexpectedEof { .. }), "{e}");
            assert_eq!(e.offset(), Some(20_000), "step {step} cap {cap}");
            assert_eq!(page[..10], data[19_990..]);
        }
    }
}

#[test]
fn slice_reader_read_into_consumes_nothing_when_short() {
    let data = bytes(100);
    let mut r = SliceReader::new(&data);
    let mut dst = [0u8; 101];
    assert!(r.read_into(&mut dst).is_err());
    assert_eq!(r.position(), 0);
    let mut dst = [0u8; 100];
    r.read_into(&mut dst).unwrap();
    assert_eq!(dst[..], data[..]);
}

fn start_chunk() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x3000 | FLAG_MEM_SIZE).to_be_bytes());
    v.push(1);
    v.push(b'a');
    v.extend_from_slice(&0x1000u64.to_be_bytes());
    v.push(1);
    v.push(b'b');
    v.extend_from_slice(&0x2000u64.to_be_bytes());
    v.extend_from_slice(&FLAG_EOS.to_be_bytes());
    v
}

#[test]
fn step_into_gives_block_indexes_and_checks_consumption() {
    let mut part = Vec::new();
    part.extend_from_slice(&FLAG_PAGE.to_be_bytes());
    part.extend_from_slice(b"\x01b");
    part.extend_from_slice(&[1; 4096]);
    part.extend_from_slice(&(0x1000 | FLAG_PAGE | FLAG_CONTINUE).to_be_bytes());
    part.extend_from_slice(&[2; 4096]);
    part.extend_from_slice(&FLAG_EOS.to_be_bytes());

    let mut s = RamStepper::new(4096).unwrap();
    s.step_start(&mut SliceReader::new(&start_chunk())).unwrap();
    let mut seen = Vec::new();
    let c = s
        .step_into(
            &mut SliceReader::new(&part),
            false,
            |r, idx, b, off, rec| {
                assert_eq!(rec, PageRecord::Page);
                let mut page = [0u8; 4096];
                r.read_into(&mut page)?;
                seen.push((idx, b.idstr.clone(), off, page[0]));
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(c.pages, 2);
    assert_eq!(seen, [(1, "b".into(), 0, 1), (1, "b".into(), 0x1000, 2)]);

    // A handler that reads less than a page is an error, not a desynchronised stream.
    let mut s = RamStepper::new(4096).unwrap();
    s.step_start(&mut SliceReader::new(&start_chunk())).unwrap();
    let e = s
        .step_into(&mut SliceReader::new(&part), false, |r, _, _, _, _| {
            r.take(100).map(|_| ())
        })
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::ValidationFailed { .. }),
        "{e}"
    );
}
