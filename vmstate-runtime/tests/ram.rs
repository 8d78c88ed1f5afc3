//! The RAM section stepper: record kinds, CONTINUE, bounds checks (CVE-2014-7840 class),
//! unsupported flags, limits, and a real QEMU 7.2 RAM section.

use vmstate_runtime::ram::{
    PageData, RamStepper, FLAG_COMPRESS_PAGE, FLAG_CONTINUE, FLAG_EOS, FLAG_FULL, FLAG_HOOK,
    FLAG_MEM_SIZE, FLAG_MULTIFD_FLUSH, FLAG_PAGE, FLAG_XBZRLE, FLAG_ZERO, MAX_RAM_BLOCKS,
};
use vmstate_runtime::{ErrorKind, IoReader, Reader, SliceReader};

const PS: u64 = 4096;

#[derive(Default)]
struct B(Vec<u8>);

impl B {
    fn rec(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn name(mut self, s: &str) -> Self {
        self.0.push(u8::try_from(s.len()).unwrap());
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn block(self, s: &str, len: u64) -> Self {
        self.name(s).rec(len)
    }
}

/// START payload with pc.ram (8 KiB) and pc.bios (4 KiB).
fn start() -> Vec<u8> {
    B::default()
        .rec(0x3000 | FLAG_MEM_SIZE)
        .block("pc.ram", 0x2000)
        .block("pc.bios", 0x1000)
        .rec(FLAG_EOS)
        .0
}

fn started() -> RamStepper {
    let mut ram = RamStepper::new(PS).unwrap();
    let s = start();
    let mut r = SliceReader::new(&s);
    let c = ram.step_start(&mut r).unwrap();
    assert_eq!(c.records, 2);
    assert!(r.remaining().is_empty());
    ram
}

fn part_err(payload: &[u8]) -> vmstate_runtime::Error {
    started()
        .step_part(&mut SliceReader::new(payload))
        .unwrap_err()
}

#[test]
fn pages_zero_pages_and_continue() {
    let mut ram = started();
    assert_eq!(ram.blocks().len(), 2);
    assert_eq!(ram.blocks()[1].idstr, "pc.bios");
    let page = [0xa5u8; 4096];
    let part = B::default()
        .rec(FLAG_ZERO)
        .name("pc.ram")
        .bytes(&[0])
        .rec(0x1000 | FLAG_PAGE | FLAG_CONTINUE)
        .bytes(&page)
        .rec(FLAG_MULTIFD_FLUSH)
        .rec(FLAG_ZERO)
        .name("pc.bios")
        .bytes(&[0x55])
        .rec(FLAG_EOS)
        .0;
    let mut seen = Vec::new();
    let mut r = SliceReader::new(&part);
    let c = ram
        .step_part_with(&mut r, |block, offset, data| {
            let d = match data {
                PageData::Fill(b) => format!("fill {b:#x}"),
                PageData::Page(p) => format!("page {} {:#x}", p.len(), p[0]),
            };
            seen.push(format!("{block}@{offset:#x}: {d}"));
            Ok(())
        })
        .unwrap();
    assert!(r.remaining().is_empty());
    assert_eq!((c.pages, c.zero_pages, c.records), (1, 2, 5));
    assert_eq!(
        seen,
        [
            "pc.ram@0x0: fill 0x0",
            "pc.ram@0x1000: page 4096 0xa5",
            "pc.bios@0x0: fill 0x55"
        ]
    );
    // CONTINUE carries over into the next chunk.
    let end = B::default()
        .rec(0x1000 | FLAG_ZERO | FLAG_CONTINUE)
        .bytes(&[0])
        .rec(FLAG_EOS)
        .0;
    let err = ram.step_part(&mut SliceReader::new(&end)).unwrap_err();
    // The current block is pc.bios (4 KiB): offset 0x1000 is outside it.
    assert_eq!(
        err.kind(),
        &ErrorKind::RamPageOutOfRange {
            block: "pc.bios".into(),
            offset: 0x1000,
            used_length: 0x1000
        }
    );
    assert_eq!(err.offset(), Some(0));
}

#[test]
fn page_bounds() {
    // The last page of a block is fine; one past it is not.
    let ok = B::default()
        .rec(0x1000 | FLAG_ZERO)
        .name("pc.ram")
        .bytes(&[0])
        .rec(FLAG_EOS)
        .0;
    started().step_part(&mut SliceReader::new(&ok)).unwrap();
    let err = part_err(
        &B::default()
            .rec(0x2000 | FLAG_ZERO)
            .name("pc.ram")
            .bytes(&[0])
            .rec(FLAG_EOS)
            .0,
    );
    assert!(matches!(
        err.kind(),
        ErrorKind::RamPageOutOfRange { offset: 0x2000, .. }
    ));
    // An offset near u64::MAX must not overflow.
    let err = part_err(
        &B::default()
            .rec(0xffff_ffff_ffff_f000 | FLAG_PAGE)
            .name("pc.ram")
            .rec(FLAG_EOS)
            .0,
    );
    assert!(
        matches!(err.kind(), ErrorKind::RamPageOutOfRange { .. }),
        "{err}"
    );
}

#[test]
fn bad_records() {
    let err = part_err(&B::default().rec(FLAG_ZERO).name("vga.vram").bytes(&[0]).0);
    assert_eq!(
        err.kind(),
        &ErrorKind::UnknownRamBlock {
            name: "vga.vram".into()
        }
    );
    let err = part_err(&B::default().rec(FLAG_ZERO | FLAG_CONTINUE).bytes(&[0]).0);
    assert!(
        matches!(err.kind(), ErrorKind::InvalidValue { .. }),
        "{err}"
    );
    let err = part_err(&B::default().rec(0x1000 | FLAG_MEM_SIZE).0);
    assert!(err.to_string().contains("MEM_SIZE"), "{err}");
    for flags in [
        FLAG_FULL,
        FLAG_XBZRLE,
        FLAG_HOOK,
        FLAG_COMPRESS_PAGE,
        FLAG_ZERO | FLAG_PAGE,
        0x400,
        0,
    ] {
        let err = part_err(&B::default().rec(flags).0);
        assert_eq!(
            err.kind(),
            &ErrorKind::UnsupportedRamFlags { flags },
            "{flags:#x}"
        );
        assert!(err.to_string().contains("unsupported RAM record flag"));
    }
    // PART before START.
    let mut ram = RamStepper::new(PS).unwrap();
    assert!(ram.step_part(&mut SliceReader::new(&[0; 8])).is_err());
    // A second START.
    let mut ram = started();
    let s = start();
    assert!(ram.step_start(&mut SliceReader::new(&s)).is_err());
}

#[test]
fn bad_block_lists() {
    let mut ram = RamStepper::new(PS).unwrap();
    let s = B::default()
        .rec(0x1000 | FLAG_MEM_SIZE)
        .block("pc.ram", 0x2000)
        .0;
    let err = ram.step_start(&mut SliceReader::new(&s)).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidValue { .. }),
        "{err}"
    );
    assert_eq!(err.offset(), Some(8));

    let mut ram = RamStepper::new(PS).unwrap();
    let s = B::default()
        .rec(0x2000 | FLAG_MEM_SIZE)
        .block("a", 0x1000)
        .block("a", 0x1000)
        .0;
    let err = ram.step_start(&mut SliceReader::new(&s)).unwrap_err();
    assert!(err.to_string().contains("announced twice"), "{err}");

    // Zero-length blocks never finish the list: capped.
    let mut b = B::default().rec(0x1000 | FLAG_MEM_SIZE);
    for i in 0..=MAX_RAM_BLOCKS {
        b = b.block(&format!("b{i}"), 0);
    }
    let mut ram = RamStepper::new(PS).unwrap();
    let err = ram.step_start(&mut SliceReader::new(&b.0)).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::LengthTooLarge { .. }),
        "{err}"
    );

    // The START must begin with the block list.
    let mut ram = RamStepper::new(PS).unwrap();
    let err = ram
        .step_start(&mut SliceReader::new(&B::default().rec(FLAG_EOS).0))
        .unwrap_err();
    assert!(err.to_string().contains("MEM_SIZE"), "{err}");
}

#[test]
fn page_sizes_and_ignore_shared() {
    for bad in [0, 3, 512, 4095, 128 * 1024] {
        assert!(RamStepper::new(bad).is_err(), "{bad}");
    }
    for good in [1024, 4096, 65536] {
        assert_eq!(RamStepper::new(good).unwrap().page_size(), good);
    }
    let mut ram = RamStepper::new(PS).unwrap().with_ignore_shared(true);
    let s = B::default()
        .rec(0x1000 | FLAG_MEM_SIZE)
        .block("pc.ram", 0x1000)
        .rec(0xfeed_0000)
        .rec(FLAG_EOS)
        .0;
    ram.step_start(&mut SliceReader::new(&s)).unwrap();
    assert_eq!(ram.blocks()[0].used_length, 0x1000);
}

#[test]
fn truncation_never_panics() {
    let part = B::default()
        .rec(FLAG_PAGE)
        .name("pc.ram")
        .bytes(&[1; 4096])
        .rec(FLAG_EOS)
        .0;
    for k in 0..part.len() {
        let err = part_err(&part[..k]);
        assert!(
            matches!(err.kind(), ErrorKind::UnexpectedEof { .. }),
            "{k}: {err}"
        );
        assert!(err.offset().is_some_and(|o| o <= k as u64));
        let mut ram = started();
        assert!(ram.step_part(&mut IoReader::new(&part[..k])).is_err());
    }
    let s = start();
    for k in 0..s.len() {
        let mut ram = RamStepper::new(PS).unwrap();
        assert!(ram.step_start(&mut SliceReader::new(&s[..k])).is_err());
    }
}

#[test]
fn real_qemu_ram_section() {
    // tests/golden/qemu72/idle.mig: START at 26 (header 17 bytes), PART at 196, END at 275851
    // (see idle.sections.txt): 49 pages and 8273 zero pages, all in the PART.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/qemu72/idle.mig");
    // A committed golden stream: missing is a failure, not a skip.
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (committed golden stream)", path.display()));
    let mut ram = RamStepper::new(PS).unwrap();
    let mut r = SliceReader::with_base(&bytes[26 + 17..], 26 + 17);
    ram.step_start(&mut r).unwrap();
    assert_eq!(r.position(), 191);
    assert_eq!(ram.blocks().len(), 6);
    let mut r = SliceReader::with_base(&bytes[196 + 5..], 196 + 5);
    let mut nonzero_fill = 0;
    let c = ram
        .step_part_with(&mut r, |_, _, d| {
            if d != PageData::Fill(0) && matches!(d, PageData::Fill(_)) {
                nonzero_fill += 1;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!((c.pages, c.zero_pages), (49, 8273));
    assert_eq!(nonzero_fill, 0);
    assert_eq!(r.position(), 275_846);
}
