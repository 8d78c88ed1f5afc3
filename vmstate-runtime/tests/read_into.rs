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

/// A PART chunk: pages 0 (all 1s) and 0x1000 (all 2s) of block `b`.
fn two_pages_of_b() -> Vec<u8> {
    let mut part = Vec::new();
    part.extend_from_slice(&FLAG_PAGE.to_be_bytes());
    part.extend_from_slice(b"\x01b");
    part.extend_from_slice(&[1; 4096]);
    part.extend_from_slice(&(0x1000 | FLAG_PAGE | FLAG_CONTINUE).to_be_bytes());
    part.extend_from_slice(&[2; 4096]);
    part.extend_from_slice(&FLAG_EOS.to_be_bytes());
    part
}

#[test]
fn step_into_gives_block_indexes_and_checks_consumption() {
    let part = two_pages_of_b();

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

/// Hands out at most `step` bytes per read, spread over the slices of a vectored read (as a
/// socket's `readv` does).
struct VTrickle<'a>(&'a [u8], usize);

impl std::io::Read for VTrickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read_vectored(&mut [std::io::IoSliceMut::new(buf)])
    }
    fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
        let mut left = self.1.min(self.0.len());
        let mut n = 0;
        for b in bufs {
            let k = b.len().min(left);
            b[..k].copy_from_slice(&self.0[n..n + k]);
            n += k;
            left -= k;
        }
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// `read_into_ahead` fills `dst`, then the `ahead` slices in order, as far as one read of the
/// source goes; `unread` puts any tail back so that the stream reads on exactly as if nothing had
/// been read ahead, whatever the read sizes and buffer capacity.
#[test]
fn io_reader_reads_ahead_into_the_given_slices_and_takes_back_a_tail() {
    let data = bytes(100_000);
    for step in [1, 7, 100, 4097, 9000, 1 << 20] {
        for cap in [16, 4096, 1 << 16] {
            for give_back in [0usize, 1, 8, 100, 5000] {
                let what = format!("step {step} cap {cap} give back {give_back}");
                let mut r = IoReader::with_capacity(cap, VTrickle(&data, step));
                assert_eq!(r.take(3).unwrap(), &data[..3], "{what}");
                // Drain the buffer so that the page has to come from the source.
                let held = r.available();
                assert!(held < usize::MAX, "{what}");
                r.skip(held as u64).unwrap();
                let at = 3 + held;
                let mut dst = vec![0u8; 4096];
                let (mut a, mut b) = (vec![0u8; 8], vec![0u8; 6000]);
                let got = {
                    let mut ahead = [
                        std::io::IoSliceMut::new(&mut a),
                        std::io::IoSliceMut::new(&mut b),
                    ];
                    r.read_into_ahead(&mut dst, &mut ahead).unwrap()
                };
                assert_eq!(dst, data[at..at + 4096], "{what}");
                // The last read that completed the page brought at most `step` bytes, and
                // whatever it had beyond the page went ahead (the buffer holds nothing then).
                assert!(got <= 6008 && got < step, "{what}");
                if step > 4096 + 6008 {
                    assert_eq!(got, 6008, "{what}");
                }
                assert_eq!(r.available(), 0, "{what}");
                let mut tail = a.clone();
                tail.extend_from_slice(&b);
                assert_eq!(tail[..got], data[at + 4096..at + 4096 + got], "{what}");
                let pos = (at + 4096 + got) as u64;
                assert_eq!(r.position(), pos, "{what}");
                let back = give_back.min(got);
                let from = got - back;
                let parts: Vec<&[u8]> = if from < 8 {
                    vec![&a[from..got.min(8)], &b[..got.saturating_sub(8)]]
                } else {
                    vec![&b[from - 8..got - 8]]
                };
                r.unread(&parts).unwrap();
                assert_eq!(r.position(), pos - back as u64, "{what}");
                // The rest of the stream, given-back bytes first.
                let rest = at + 4096 + from;
                let mut out = vec![0u8; data.len() - rest];
                r.read_into(&mut out).unwrap();
                assert_eq!(out, data[rest..], "{what}");
                assert!(r.take(1).is_err(), "{what}");
            }
        }
    }
}

/// A page still buffered is copied from the buffer and nothing is read ahead; bytes given back
/// then go in front of what is still buffered.
#[test]
fn io_reader_reads_nothing_ahead_from_its_buffer_and_gives_back_in_front_of_it() {
    let data = bytes(20_000);
    let mut r = IoReader::with_capacity(1 << 16, VTrickle(&data, 1 << 20));
    assert_eq!(r.take(8).unwrap(), &data[..8]);
    let mut dst = vec![0u8; 4096];
    let mut a = vec![0u8; 100];
    let got = r
        .read_into_ahead(&mut dst, &mut [std::io::IoSliceMut::new(&mut a)])
        .unwrap();
    assert_eq!(got, 0);
    assert_eq!(dst, data[8..4104]);
    assert!(a.iter().all(|&b| b == 0));
    // Give back the page's last 50 bytes (in front of the 15,896 still buffered).
    r.unread(&[&data[4054..4104]]).unwrap();
    assert_eq!(r.position(), 4054);
    let mut out = vec![0u8; data.len() - 4054];
    r.read_into(&mut out).unwrap();
    assert_eq!(out, data[4054..]);
    // Giving back more than was read is refused.
    let mut r = IoReader::new(VTrickle(&data, 10));
    assert_eq!(r.take(4).unwrap(), &data[..4]);
    assert!(r.unread(&[&[0u8; 5]]).is_err());
}

/// Readers without a buffer of their own read nothing ahead and take nothing back.
#[test]
fn slice_reader_reads_nothing_ahead() {
    let data = bytes(10_000);
    let mut r = SliceReader::new(&data);
    let mut dst = vec![0u8; 4096];
    let mut a = vec![0u8; 100];
    assert_eq!(
        r.read_into_ahead(&mut dst, &mut [std::io::IoSliceMut::new(&mut a)])
            .unwrap(),
        0
    );
    assert_eq!(dst, data[..4096]);
    assert_eq!(r.position(), 4096);
    assert!(r.unread(&[]).is_ok());
    assert!(r.unread(&[&data[4095..4096]]).is_err());
}

/// `step_into_ahead`: records a handler consumed after its page are counted; a handler whose
/// consumption does not match the records it claims, or whose last claimed page lies outside the
/// block, is an error.
#[test]
fn step_into_ahead_counts_claimed_records_and_checks_them() {
    // Block `b` is 0x2000 bytes: two pages.
    let part = two_pages_of_b();
    let stepper = || {
        let mut s = RamStepper::new(4096).unwrap();
        s.step_start(&mut SliceReader::new(&start_chunk())).unwrap();
        s
    };

    // The handler takes the first page and the whole record after it.
    let mut calls = 0;
    let c = stepper()
        .step_into_ahead(&mut SliceReader::new(&part), false, |r, _, _, off, _| {
            calls += 1;
            assert_eq!(off, 0);
            r.skip(4096 + 8 + 4096)?;
            Ok(1)
        })
        .unwrap();
    assert_eq!((calls, c.pages, c.records), (1, 2, 3));

    // Claims a record it did not consume.
    let e = stepper()
        .step_into_ahead(&mut SliceReader::new(&part), false, |r, _, _, _, _| {
            r.skip(4096)?;
            Ok(1)
        })
        .unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::ValidationFailed { .. }),
        "{e}"
    );

    // Claims a page past the end of the block (consumption matching).
    let mut long = part.clone();
    let eos = long.len() - 8;
    long.truncate(eos);
    long.extend_from_slice(&(0x2000 | FLAG_PAGE | FLAG_CONTINUE).to_be_bytes());
    long.extend_from_slice(&[3; 4096]);
    long.extend_from_slice(&FLAG_EOS.to_be_bytes());
    let e = stepper()
        .step_into_ahead(&mut SliceReader::new(&long), false, |r, _, _, _, _| {
            r.skip(4096 + 2 * (8 + 4096))?;
            Ok(2)
        })
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::RamPageOutOfRange { offset: 0x2000, .. }
        ),
        "{e}"
    );
}
