//! The one stream loop: routing by idstr, iterative sections by section id, footers, commands,
//! where the loader stops ([`StreamEnd::Stop`] never reads past the vmdesc), the `finish` hook,
//! and all-or-nothing device loads when a routed handler rejects the stream.

mod common;

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use common::{machine, Uart};
use vmstate_runtime::machine::Framing;
use vmstate_runtime::reader::ErasedReader;
use vmstate_runtime::stream::{
    LoadOptions, SectionHandler, SectionKind, SectionMeta, SectionSpan, StreamEnd, StreamLoader,
    StreamWriter,
};
use vmstate_runtime::{Error, ErrorKind, IoReader, Reader, Registry, Result, SliceReader};

const FOOTERS: Framing = Framing {
    configuration: false,
    footers: true,
    vmdesc: false,
};

/// Reads one be32 per section or chunk and records what it was handed.
#[derive(Default)]
struct Recorder {
    seen: Vec<(SectionKind, u32, String, u32, u32)>,
    spans: Vec<SectionSpan>,
    commands: Vec<(u16, Vec<u8>, u64)>,
    fail_finish: bool,
}

impl SectionHandler for Recorder {
    fn load(&mut self, meta: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()> {
        let v = r.read_be32()?;
        self.seen.push((
            meta.kind,
            meta.section_id,
            meta.idstr.to_owned(),
            meta.version,
            v,
        ));
        Ok(())
    }

    fn loaded(&mut self, _: &SectionMeta<'_>, span: &SectionSpan) -> Result<()> {
        self.spans.push(span.clone());
        Ok(())
    }

    fn finish(&mut self, end: u64) -> Result<()> {
        if self.fail_finish {
            return Err(Error::new(
                ErrorKind::ValidationFailed {
                    message: "incomplete".into(),
                },
                end,
            ));
        }
        Ok(())
    }

    fn command(&mut self, cmd: u16, data: &[u8], offset: u64) -> Result<()> {
        self.commands.push((cmd, data.to_vec(), offset));
        Ok(())
    }
}

/// Runs the loader over `bytes` with `handler` taking every section; the run must fail.
fn fallback_err(bytes: &[u8], handler: &mut dyn SectionHandler) -> Error {
    StreamLoader::new(LoadOptions::detect())
        .fallback(handler)
        .run(&mut SliceReader::new(bytes))
        .unwrap_err()
}

/// header · FULL a · START it(7) · command · PART 7 · FULL b · END 7 · EOF
fn sample(framing: Framing) -> Vec<u8> {
    let mut s = StreamWriter::new(Vec::new(), framing);
    s.header().unwrap();
    let section = |s: &mut StreamWriter<Vec<u8>>, v: u32, id: u32| {
        s.payload().extend_from_slice(&v.to_be_bytes());
        s.footer(id).unwrap();
    };
    s.full_header(1, "a", 0, 3).unwrap();
    section(&mut s, 10, 1);
    s.start_header(7, "it", 0, 4).unwrap();
    section(&mut s, 11, 7);
    s.command(0x0b, b"xy").unwrap();
    s.chunk_header(7, false).unwrap();
    section(&mut s, 12, 7);
    s.full_header(2, "b", 0, 1).unwrap();
    section(&mut s, 13, 2);
    s.chunk_header(7, true).unwrap();
    section(&mut s, 14, 7);
    s.eof().unwrap();
    s.into_inner()
}

#[test]
fn routes_by_idstr_and_section_id() {
    let bytes = sample(FOOTERS);
    let (mut it, mut rest) = (Recorder::default(), Recorder::default());
    let out = StreamLoader::new(LoadOptions::detect())
        .route("it", &mut it)
        .fallback(&mut rest)
        .run(&mut SliceReader::new(&bytes))
        .unwrap();
    assert_eq!(
        it.seen,
        [
            (SectionKind::Start, 7, "it".into(), 4, 11),
            (SectionKind::Part, 7, "it".into(), 4, 12),
            (SectionKind::End, 7, "it".into(), 4, 14),
        ]
    );
    assert_eq!(
        rest.seen,
        [
            (SectionKind::Full, 1, "a".into(), 3, 10),
            (SectionKind::Full, 2, "b".into(), 1, 13),
        ]
    );
    // The command went to the fallback, with its data and offset.
    assert_eq!(rest.commands.len(), 1);
    assert_eq!(
        (rest.commands[0].0, &rest.commands[0].1[..]),
        (0x0b, &b"xy"[..])
    );
    // Footers were detected from the first section; spans cover header to footer.
    assert!(out.footers);
    assert_eq!(out.sections, 6);
    assert_eq!(out.eof_offset as usize, bytes.len() - 1);
    assert_eq!(out.end as usize, bytes.len());
    let first = &rest.spans[0];
    assert_eq!(first.start, 8);
    // `04 · be32 id · 01 'a' · be32 instance · be32 version` is 15 bytes.
    assert_eq!(first.payload, 8 + 15..8 + 15 + 4);
    assert_eq!(first.end, first.payload.end + 5);
}

#[test]
fn detects_streams_without_footers() {
    let bytes = sample(Framing {
        footers: false,
        ..FOOTERS
    });
    let mut all = Recorder::default();
    let out = StreamLoader::new(LoadOptions::detect())
        .fallback(&mut all)
        .run(&mut SliceReader::new(&bytes));
    // Without a route, the START of `it` goes to the fallback too.
    let out = out.unwrap();
    assert!(!out.footers);
    assert_eq!(all.seen.len(), 5);
}

#[test]
fn sections_without_handler_and_bad_ids() {
    let bytes = sample(FOOTERS);
    let mut it = Recorder::default();
    let err = StreamLoader::new(LoadOptions::detect())
        .route("it", &mut it)
        .run(&mut SliceReader::new(&bytes))
        .unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::UnknownSection {
            idstr: "a".into(),
            instance_id: 0
        }
    );
    assert_eq!(err.offset(), Some(8));
    assert_eq!(err.section().unwrap().idstr, "a");

    // A PART whose START never came.
    let mut s = StreamWriter::new(Vec::new(), FOOTERS);
    s.header().unwrap();
    s.chunk_header(9, false).unwrap();
    let bytes = s.into_inner();
    let mut all = Recorder::default();
    let err = fallback_err(&bytes, &mut all);
    assert_eq!(err.kind(), &ErrorKind::UnknownSectionId { section_id: 9 });

    // A second START with the same section id.
    let mut s = StreamWriter::new(Vec::new(), FOOTERS);
    s.header().unwrap();
    for _ in 0..2 {
        s.start_header(7, "it", 0, 4).unwrap();
        s.payload().extend_from_slice(&[0; 4]);
        s.footer(7).unwrap();
    }
    let bytes = s.into_inner();
    let mut all = Recorder::default();
    let err = fallback_err(&bytes, &mut all);
    assert!(
        matches!(err.kind(), ErrorKind::DuplicateSection { .. }),
        "{err}"
    );
    assert_eq!(all.seen.len(), 1);
}

#[test]
fn commands_are_rejected_by_default() {
    struct Plain;
    impl SectionHandler for Plain {
        fn load(&mut self, _: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()> {
            r.read_be32().map(drop)
        }
    }
    let bytes = sample(FOOTERS);
    let mut plain = Plain;
    let err = fallback_err(&bytes, &mut plain);
    assert_eq!(err.kind(), &ErrorKind::UnsupportedCommand { cmd: 0x0b });
}

#[test]
fn finish_can_reject_the_stream() {
    let bytes = sample(FOOTERS);
    let mut all = Recorder {
        fail_finish: true,
        ..Recorder::default()
    };
    let err = fallback_err(&bytes, &mut all);
    assert!(matches!(err.kind(), ErrorKind::ValidationFailed { .. }));
    assert_eq!(err.offset(), Some(bytes.len() as u64));
}

/// A connection: the stream, then a message, then nothing more until the reader times out.
struct Connection {
    data: Vec<u8>,
    pos: usize,
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.data.len() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "nothing more sent"));
        }
        let n = buf.len().min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[test]
fn stop_leaves_the_reader_after_the_vmdesc() {
    let dev = Arc::new(Mutex::new(Uart::sample()));
    let mut src = Registry::new();
    src.register(dev).unwrap();
    let m = machine("pc-i440fx-7.2");
    let (stream, _) = src.save_to_vec(&m).unwrap();
    let loaded = loaded_uart(&stream);

    let fresh = || {
        let dev = Arc::new(Mutex::new(Uart::default()));
        let mut reg = Registry::new();
        reg.register(dev.clone()).unwrap();
        (reg, dev)
    };

    // Nothing follows yet: a loader that looked past the vmdesc would wait and time out.
    let (dst, dev) = fresh();
    let mut r = IoReader::new(Connection {
        data: stream.clone(),
        pos: 0,
    });
    let report = dst.load_with(&m, &mut r, StreamEnd::Stop, &mut []).unwrap();
    assert_eq!(report.total_bytes, stream.len() as u64);
    assert_eq!(*dev.lock().unwrap(), loaded);
    let (_, rest) = r.into_parts();
    assert!(rest.is_empty());

    // The same stream read to exhaustion does look, and reports the timeout.
    let (dst, dev) = fresh();
    let err = dst
        .load_io(
            &m,
            Connection {
                data: stream.clone(),
                pos: 0,
            },
        )
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Io(io::ErrorKind::TimedOut));
    assert_eq!(*dev.lock().unwrap(), Uart::default(), "nothing committed");

    // What follows the stream stays in the reader for the caller.
    let (dst, _) = fresh();
    let mut data = stream.clone();
    data.extend_from_slice(b"GO\n");
    let mut r = IoReader::new(Connection { data, pos: 0 });
    dst.load_with(&m, &mut r, StreamEnd::Stop, &mut []).unwrap();
    assert_eq!(r.position(), stream.len() as u64);
    assert_eq!(r.into_parts().1, b"GO\n");
}

#[test]
fn a_rejecting_route_leaves_the_devices_unchanged() {
    let mut src = Registry::new();
    src.register(Arc::new(Mutex::new(Uart::sample()))).unwrap();
    let m = machine("pc-i440fx-7.2");
    let (stream, _) = src.save_to_vec(&m).unwrap();
    let loaded = loaded_uart(&stream);

    let dev = Arc::new(Mutex::new(Uart::default()));
    let mut dst = Registry::new();
    dst.register(dev.clone()).unwrap();
    // A RAM handler that wanted a RAM section and got none.
    let mut ram = Recorder {
        fail_finish: true,
        ..Recorder::default()
    };
    let err = dst
        .load_with(
            &m,
            &mut SliceReader::new(&stream),
            StreamEnd::Exhausted,
            &mut [("ram", &mut ram)],
        )
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::ValidationFailed { .. }));
    assert_eq!(*dev.lock().unwrap(), Uart::default());

    // Accepted: committed.
    let mut ram = Recorder::default();
    dst.load_with(
        &m,
        &mut SliceReader::new(&stream),
        StreamEnd::Exhausted,
        &mut [("ram", &mut ram)],
    )
    .unwrap();
    assert_eq!(*dev.lock().unwrap(), loaded);
}

/// The UART as a plain load of `stream` leaves it.
fn loaded_uart(stream: &[u8]) -> Uart {
    let dev = Arc::new(Mutex::new(Uart::default()));
    let mut reg = Registry::new();
    reg.register(dev.clone()).unwrap();
    reg.load(&machine("pc-i440fx-7.2"), stream).unwrap();
    let u = dev.lock().unwrap().clone();
    assert_ne!(u, Uart::default());
    u
}
