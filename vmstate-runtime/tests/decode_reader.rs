//! `decode_reader` (a stream read from any `Reader`, its vmdesc located in the stream's last
//! `VMDESC_TAIL` bytes) decodes exactly what `decode_stream` decodes from the whole slice.

use std::ops::Range;
use std::path::PathBuf;

use vmstate_runtime::decode::{decode_reader, find_vmdesc, VMDESC_TAIL};
use vmstate_runtime::vmdesc::{parse_vmdesc, Vmdesc};
use vmstate_runtime::{decode_stream, IoReader, SliceReader};

fn golden() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/qemu72");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mig"))
        .collect();
    v.sort();
    v
}

/// Locates the vmdesc in the last `VMDESC_TAIL` bytes only, as a caller holding just that
/// window of a large file does.
fn locate_in_tail(bytes: &[u8]) -> Option<(Range<u64>, Vmdesc)> {
    let base = bytes
        .len()
        .saturating_sub(usize::try_from(VMDESC_TAIL).unwrap());
    let tail = &bytes[base..];
    let (start, json) = find_vmdesc(tail)?;
    let desc = parse_vmdesc(&tail[json]).unwrap();
    Some(((base + start) as u64..bytes.len() as u64, desc))
}

#[test]
fn reader_decode_equals_slice_decode_on_golden_streams() {
    let streams = golden();
    assert!(streams.len() > 10);
    for p in streams {
        let bytes = std::fs::read(&p).unwrap();
        let located = locate_in_tail(&bytes);
        assert_eq!(
            located.as_ref().map(|(r, _)| r.start as usize),
            find_vmdesc(&bytes).map(|(s, _)| s),
            "{}",
            p.display()
        );
        let end = located
            .as_ref()
            .map_or(bytes.len(), |(r, _)| r.start as usize);
        // A small buffer, so that sections and pages straddle refills.
        let mut r = IoReader::with_capacity(64, &bytes[..end]);
        let streamed = decode_reader(&mut r, located.clone(), None);
        let whole = decode_stream(&bytes);
        match (streamed, whole) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{}", p.display()),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{}", p.display()),
            (a, b) => panic!("{}: reader {a:?}, slice {b:?}", p.display()),
        }
        // Over a slice reader too.
        let again = decode_reader(&mut SliceReader::new(&bytes[..end]), located, None);
        assert_eq!(again.is_ok(), decode_stream(&bytes).is_ok());
    }
}

#[test]
fn reader_decode_reports_the_errors_of_slice_decode_on_prefixes() {
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/qemu72/uart-fifo.mig"),
    )
    .unwrap();
    let json_start = find_vmdesc(&bytes).unwrap().0;
    // Cut inside the sections: no vmdesc is located; both must fail identically.
    for cut in (0..json_start)
        .step_by(json_start / 40 + 1)
        .chain(json_start - 3..json_start)
    {
        let prefix = &bytes[..cut];
        let located = locate_in_tail(prefix);
        let end = located
            .as_ref()
            .map_or(prefix.len(), |(r, _)| r.start as usize);
        let a = decode_reader(&mut IoReader::new(&prefix[..end]), located, None);
        let b = decode_stream(prefix);
        assert_eq!(
            a.map_err(|e| e.to_string()).map(|_| ()),
            b.map_err(|e| e.to_string()).map(|_| ()),
            "cut at {cut}"
        );
    }
}
