//! Exact bytes for every field kind, the version matrix, gates per machine type, subsections
//! present and absent, and the vmdesc the save collects. Every expected byte string is written
//! out by hand from the wire-format spec (docs/wire-format.md).

use vmstate_runtime::machine::{CompatEntry, MachineCatalog, MachineType};
use vmstate_runtime::vmdesc::{write_device, DescBody, DescDevice, DescStruct};
use vmstate_runtime::{load_payload, save_payload, ErrorKind, Timer, Unused, VmState};

fn machine(name: &str) -> MachineType {
    MachineCatalog::qemu_pc()
        .with_compat([CompatEntry {
            upto: "6.2".into(),
            driver: "kinds".into(),
            property: "x-stats".into(),
            value: false,
        }])
        .resolve(name)
        .unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "pair", version = 4, nested)]
struct Pair {
    x: u8,
    y: i16,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "kinds", version = 1)]
struct Kinds {
    b: bool,
    u8_: u8,
    u16_: u16,
    u32_: u32,
    u64_: u64,
    i8_: i8,
    i16_: i16,
    i32_: i32,
    i64_: i64,
    armed: Timer,
    idle: Timer,
    #[vmstate(buffer)]
    buf: [u8; 3],
    _gone: Unused<2>,
    arr: [u16; 2],
    pairs: [Pair; 2],
    n: u8,
    #[vmstate(count = n, max = 4)]
    var: Vec<u32>,
    #[vmstate(buffer, count = n, max = 4)]
    vbuf: [u8; 4],
    #[vmstate(equal)]
    configured: u32,
}

fn kinds() -> Kinds {
    Kinds {
        b: true,
        u8_: 0xab,
        u16_: 0x1234,
        u32_: 0xdead_beef,
        u64_: 0x0102_0304_0506_0708,
        i8_: -2,
        i16_: -2,
        i32_: -2,
        i64_: -2,
        armed: Timer::armed(0x3f9408),
        idle: Timer::disarmed(),
        buf: [1, 2, 3],
        _gone: Unused,
        arr: [0xaaaa, 0xbbbb],
        pairs: [Pair { x: 1, y: -1 }, Pair { x: 2, y: 2 }],
        n: 2,
        var: vec![7, 8],
        vbuf: [9, 10, 0, 0],
        configured: 4,
    }
}

const KINDS_BYTES: &str = "01 ab 12 34 de ad be ef 01 02 03 04 05 06 07 08 fe ff fe ff ff ff fe \
    ff ff ff ff ff ff ff fe 00 00 00 00 00 3f 94 08 ff ff ff ff ff ff ff ff 01 02 03 00 00 aa aa bb bb \
    01 ff ff 02 00 02 02 00 00 00 07 00 00 00 08 09 0a 00 00 00 04";

#[test]
fn every_kind_has_exact_bytes_and_round_trips() {
    let m = machine("pc-i440fx-7.2");
    let (v, bytes, _) = save_payload(&kinds(), &m).unwrap();
    assert_eq!(v, 1);
    assert_eq!(hex(&bytes), hex(&unhex(KINDS_BYTES)));
    let mut back = Kinds {
        configured: 4,
        ..Kinds::default()
    };
    load_payload(&mut back, &bytes, 1, &m).unwrap();
    let mut expect = kinds();
    expect.vbuf = [9, 10, 0, 0];
    assert_eq!(back, expect);
}

#[test]
fn vmdesc_matches_qemu_conventions() {
    let m = machine("pc-i440fx-7.2");
    let (_, _, desc) = save_payload(&kinds(), &m).unwrap();
    let mut s = String::new();
    write_device(
        &mut s,
        &DescDevice {
            name: "kinds".into(),
            instance_id: 0,
            body: DescBody::Vmsd(desc),
        },
    );
    assert_eq!(
        s,
        r#"{"name": "kinds", "instance_id": 0, "vmsd_name": "kinds", "version": 1, "fields": [{"name": "b", "type": "bool", "size": 1}, {"name": "u8_", "type": "uint8", "size": 1}, {"name": "u16_", "type": "uint16", "size": 2}, {"name": "u32_", "type": "uint32", "size": 4}, {"name": "u64_", "type": "uint64", "size": 8}, {"name": "i8_", "type": "int8", "size": 1}, {"name": "i16_", "type": "int16", "size": 2}, {"name": "i32_", "type": "int32", "size": 4}, {"name": "i64_", "type": "int64", "size": 8}, {"name": "armed", "type": "timer", "size": 8}, {"name": "idle", "type": "timer", "size": 8}, {"name": "buf", "type": "buffer", "size": 3}, {"name": "unused", "type": "unused_buffer", "size": 2}, {"name": "arr", "array_len": 2, "type": "uint16", "size": 2}, {"name": "pairs", "array_len": 2, "type": "struct", "struct": {"vmsd_name": "pair", "version": 4, "fields": [{"name": "x", "type": "uint8", "size": 1}, {"name": "y", "type": "int16", "size": 2}]}, "size": 3}, {"name": "n", "type": "uint8", "size": 1}, {"name": "var", "array_len": 2, "type": "uint32", "size": 4}, {"name": "vbuf", "type": "buffer", "size": 2}, {"name": "configured", "type": "uint32 equal", "size": 4}]}"#
    );
}

#[test]
fn equal_field_must_match_local_value() {
    let m = machine("pc-i440fx-7.2");
    let (_, bytes, _) = save_payload(&kinds(), &m).unwrap();
    let mut other = Kinds {
        configured: 8,
        ..Kinds::default()
    };
    let before = other.clone();
    let e = load_payload(&mut other, &bytes, 1, &m).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::NotEqual {
            expected: 8,
            found: 4
        }
    );
    assert_eq!(e.field_path().as_deref(), Some("configured"));
    assert_eq!(e.offset(), Some(bytes.len() as u64 - 4));
    assert_eq!(other, before, "a failed load leaves the state untouched");
}

#[test]
fn varray_count_is_checked_before_any_element() {
    let m = machine("pc-i440fx-7.2");
    let mut bytes = unhex(KINDS_BYTES);
    // `n` is at offset 62 (after pairs); make it 5 (> max 4) and then 255.
    assert_eq!(bytes[62], 2);
    for bad in [5u8, 255] {
        bytes[62] = bad;
        let mut k = Kinds {
            configured: 4,
            ..Kinds::default()
        };
        let e = load_payload(&mut k, &bytes, 1, &m).unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::LengthTooLarge {
                len: u64::from(bad),
                limit: 4
            }
        );
        assert_eq!(e.field_path().as_deref(), Some("var"));
        assert_eq!(e.offset(), Some(63));
        assert!(k.var.is_empty(), "no element was allocated");
    }
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(
    name = "evolving",
    version = 3,
    minimum_version = 1,
    pin(below = "5.0", version = 2)
)]
struct Evolving {
    a: u8,
    #[vmstate(since = 2, default = 0x22)]
    b: u8,
    #[vmstate(since = 3, default = 0x3333)]
    c: u16,
}

#[test]
fn version_matrix_and_pins() {
    let s = Evolving { a: 1, b: 2, c: 3 };
    let new = machine("pc-i440fx-7.2");
    let old = machine("pc-i440fx-4.2");
    let (v, bytes, _) = save_payload(&s, &new).unwrap();
    assert_eq!((v, hex(&bytes)), (3, "01 02 00 03".to_owned()));
    let (v, bytes, _) = save_payload(&s, &old).unwrap();
    assert_eq!(
        (v, hex(&bytes)),
        (2, "01 02".to_owned()),
        "pinned to v2 below 5.0"
    );

    // v1 and v2 streams load into v3 code; absent fields take their declared defaults.
    let mut t = Evolving::default();
    load_payload(&mut t, &[9], 1, &new).unwrap();
    assert_eq!(
        t,
        Evolving {
            a: 9,
            b: 0x22,
            c: 0x3333
        }
    );
    load_payload(&mut t, &[9, 8], 2, &new).unwrap();
    assert_eq!(
        t,
        Evolving {
            a: 9,
            b: 8,
            c: 0x3333
        }
    );

    // Out of range versions fail with the version in the error.
    let e = load_payload(&mut t, &[9, 8, 0, 1], 4, &new).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::VersionTooNew { found: 4, max: 3 });
    let e = load_payload(&mut t, &[], 0, &new).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::VersionTooOld { found: 0, min: 1 });
    assert_eq!(
        e.to_string(),
        "at byte 0x0: version 0 is too old: this code loads version 1 or newer"
    );
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(
    name = "kinds",
    version = 1,
    prop(name = "x-stats", default = true),
    subsection(name = "kinds/stats", when = prop("x-stats")),
    subsection(name = "kinds/busy", version = 2, when = pred(Self::busy))
)]
struct Gated {
    head: u8,
    #[vmstate(when = machine >= "6.0", default = 0xee)]
    mask: u8,
    // A field predicate may only read fields that come earlier on the wire: on load it sees
    // the state loaded so far (QEMU's `field_exists` has the same rule).
    #[vmstate(when = not(any(machine < "3.0", pred(Self::head_even))), default)]
    quiet: u8,
    #[vmstate(subsection = "kinds/stats", default)]
    stats: u16,
    #[vmstate(subsection = "kinds/busy", default = 0x77)]
    pending: u8,
    #[vmstate(subsection = "kinds/busy", since = 2, default)]
    pending2: u8,
}

impl Gated {
    fn head_even(&self) -> bool {
        self.head % 2 == 0
    }
    fn busy(&self) -> bool {
        self.pending != 0
    }
}

#[test]
fn gates_per_machine_type() {
    let g = Gated {
        head: 1,
        mask: 2,
        quiet: 3,
        stats: 0x0405,
        pending: 0,
        pending2: 0,
    };
    let cases = [
        // 7.2: mask (>= 6.0), quiet, stats (x-stats default on)
        (
            "pc-i440fx-7.2",
            "01 02 03 05 0b 6b 69 6e 64 73 2f 73 74 61 74 73 00 00 00 01 04 05",
        ),
        // 6.2: x-stats turned off by the compat entry
        ("pc-i440fx-6.2", "01 02 03"),
        // 5.2: no mask either
        ("pc-i440fx-5.2", "01 03"),
        // 2.12: quiet is off below 3.0
        ("pc-i440fx-2.12", "01"),
    ];
    for (m, expect) in cases {
        let mt = machine(m);
        let (_, bytes, _) = save_payload(&g, &mt).unwrap();
        assert_eq!(hex(&bytes), expect, "{m}");
        let mut back = Gated::default();
        load_payload(&mut back, &bytes, 1, &mt).unwrap();
        let mut want = g.clone();
        if mt.version() < vmstate_runtime::schema::MachineVersion::new(6, 0) {
            want.mask = 0xee;
        }
        if mt.version() < vmstate_runtime::schema::MachineVersion::new(3, 0) {
            want.quiet = 0;
        }
        if m != "pc-i440fx-7.2" {
            want.stats = 0;
        }
        want.pending = 0x77; // subsection absent -> declared default
        assert_eq!(back, want, "{m}");
    }
}

#[test]
fn subsections_present_absent_unknown_and_reordered() {
    let mt = machine("pc-i440fx-7.2");
    let g = Gated {
        head: 1,
        mask: 2,
        quiet: 3,
        stats: 0x0405,
        pending: 9,
        pending2: 8,
    };
    let (_, bytes, desc) = save_payload(&g, &mt).unwrap();
    // busy: both subsections are sent.
    assert_eq!(
        hex(&bytes),
        "01 02 03 05 0b 6b 69 6e 64 73 2f 73 74 61 74 73 00 00 00 01 04 05 \
         05 0a 6b 69 6e 64 73 2f 62 75 73 79 00 00 00 02 09 08"
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert_eq!(desc.subsections.len(), 2);
    let mut back = Gated::default();
    load_payload(&mut back, &bytes, 1, &mt).unwrap();
    assert_eq!(back, g);

    // Reordered subsections load too.
    let mut re = bytes[..3].to_vec();
    re.extend_from_slice(&bytes[22..]);
    re.extend_from_slice(&bytes[3..22]);
    let mut back = Gated::default();
    load_payload(&mut back, &re, 1, &mt).unwrap();
    assert_eq!(back, g);

    // A subsection at version 1 (its since-2 field absent -> default).
    let mut v1 = bytes.clone();
    v1[37] = 1;
    v1.pop();
    let mut back = Gated::default();
    load_payload(&mut back, &v1, 1, &mt).unwrap();
    assert_eq!(back.pending2, 0);

    // Unknown subsection with our prefix.
    let mut unk = bytes.clone();
    unk[3 + 2 + 6] = b'X'; // kinds/Xtats
    let e = load_payload(&mut Gated::default(), &unk, 1, &mt).unwrap_err();
    assert_eq!(
        e.kind(),
        &ErrorKind::UnknownSubsection {
            name: "kinds/Xtats".into()
        }
    );
    assert_eq!(e.offset(), Some(3));

    // The same subsection twice.
    let mut dup = bytes[..22].to_vec();
    dup.extend_from_slice(&bytes[3..22]);
    let e = load_payload(&mut Gated::default(), &dup, 1, &mt).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::DuplicateSubsection { .. }),
        "{e}"
    );

    // A 0x05 that fails the length test is not a subsection: it is left as trailing data.
    let mut short = bytes[..3].to_vec();
    short.extend_from_slice(&[0x05, 0x03, b'k', b'i', b'n']);
    let e = load_payload(&mut Gated::default(), &short, 1, &mt).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::TrailingBytes { count: 5 });

    // Subsection version above its maximum.
    let mut hi = bytes.clone();
    hi[37] = 3;
    let e = load_payload(&mut Gated::default(), &hi, 1, &mt).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::VersionTooNew { found: 3, max: 2 });
    assert_eq!(e.field_path().as_deref(), Some("kinds/busy"));
}

#[test]
fn every_prefix_fails_cleanly() {
    let mt = machine("pc-i440fx-7.2");
    let (_, bytes, _) = save_payload(&kinds(), &mt).unwrap();
    for n in 0..bytes.len() {
        let mut k = Kinds {
            configured: 4,
            ..Kinds::default()
        };
        let e = load_payload(&mut k, &bytes[..n], 1, &mt).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnexpectedEof { .. }),
            "prefix {n}: {e}"
        );
        assert!(e.offset().unwrap() <= n as u64, "prefix {n}: {e}");
        assert!(
            e.field_path().is_some(),
            "prefix {n}: error names a field: {e}"
        );
    }
}

#[test]
fn error_display_is_one_line_with_field_path() {
    let mt = machine("pc-i440fx-7.2");
    let (_, bytes, _) = save_payload(&kinds(), &mt).unwrap();
    let e = load_payload(&mut Kinds::default(), &bytes[..55], 1, &mt).unwrap_err();
    assert_eq!(
        e.to_string(),
        "at byte 0x36, field `arr[1]`: unexpected end of input (needed 2 bytes, 1 available)"
    );
    let e = load_payload(&mut Kinds::default(), &bytes[..61], 1, &mt).unwrap_err();
    assert_eq!(
        e.to_string(),
        "at byte 0x3c, field `pairs[1].y`: unexpected end of input (needed 2 bytes, 1 available)"
    );
}

// ---- QEMU 7.2 tests/unit/test-vmstate.c: arrays of pointers (VMSTATE_ARRAY_OF_POINTER and
// _TO_STRUCT). QEMU's vectors end with QEMU_VM_EOF (0x1f), the test harness's terminator; the
// payloads here are the bytes before it.

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/tst", version = 1, nested)]
struct TestStructTriv {
    i: i32,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/arps", version = 1)]
struct TestArrayOfPtrToStruct {
    ar: [Option<Box<TestStructTriv>>; 4],
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/arps", version = 1)]
struct TestArrayOfPtrToInt {
    ar: [Option<i32>; 4],
}

/// `wire_arr_ptr_no0`.
const WIRE_ARR_PTR_NO0: &str = "00 00 00 00 00 00 00 01 00 00 00 02 00 00 00 03";
/// `wire_arr_ptr_0`: element 1 is NULL (`VMS_NULLPTR_MARKER`).
const WIRE_ARR_PTR_0: &str = "00 00 00 00 30 00 00 00 02 00 00 00 03";

fn triv(i: i32) -> Option<Box<TestStructTriv>> {
    Some(Box::new(TestStructTriv { i }))
}

/// Saves `s` on `m`, checks its bytes against `wire` (hex) and returns the description.
fn save_exact<T: VmState + Clone>(s: &T, wire: &str, m: &MachineType) -> DescStruct {
    let (_, bytes, desc) = save_payload(s, m).unwrap();
    assert_eq!(hex(&bytes), hex(&unhex(wire)));
    desc
}

/// Loads `wire` (hex, version 1) on `m` into `dest` and checks it becomes `expected`.
fn load_exact<T: VmState + Clone + PartialEq + std::fmt::Debug>(
    mut dest: T,
    wire: &str,
    expected: &T,
    m: &MachineType,
) {
    load_payload(&mut dest, &unhex(wire), 1, m).unwrap();
    assert_eq!(&dest, expected);
}

fn desc_json(name: &str, desc: DescStruct) -> String {
    let mut s = String::new();
    write_device(
        &mut s,
        &DescDevice {
            name: name.into(),
            instance_id: 0,
            body: DescBody::Vmsd(desc),
        },
    );
    s
}

#[test]
fn arr_ptr_str_no0_save_and_load() {
    let m = machine("pc-i440fx-7.2");
    let s = TestArrayOfPtrToStruct {
        ar: [triv(0), triv(1), triv(2), triv(3)],
    };
    save_exact(&s, WIRE_ARR_PTR_NO0, &m);
    let obj = TestArrayOfPtrToStruct {
        ar: [triv(0), triv(0), triv(0), triv(0)],
    };
    load_exact(obj, WIRE_ARR_PTR_NO0, &s, &m);
}

/// The `arr_ptr_*_0` cases: `s` (element 1 NULL) saves as [`WIRE_ARR_PTR_0`] and is described
/// as `json` (device `name`); `dest` loads it back to `s`.
fn arr_ptr_0_save_and_load<T: VmState + Clone + PartialEq + std::fmt::Debug>(
    s: T,
    dest: T,
    name: &str,
    json: &str,
) {
    let m = machine("pc-i440fx-7.2");
    let desc = save_exact(&s, WIRE_ARR_PTR_0, &m);
    assert_eq!(desc_json(name, desc), json);
    load_exact(dest, WIRE_ARR_PTR_0, &s, &m);
}

#[test]
fn arr_ptr_str_0_save_and_load() {
    arr_ptr_0_save_and_load(
        TestArrayOfPtrToStruct {
            ar: [triv(0), None, triv(2), triv(3)],
        },
        // The destination's slot 1 is NULL: it takes the marker and stays NULL.
        TestArrayOfPtrToStruct {
            ar: [triv(9), None, triv(9), triv(9)],
        },
        "arps",
        // QEMU 7.2 compresses the array and describes element 0.
        r#"{"name": "arps", "instance_id": 0, "vmsd_name": "test/arps", "version": 1, "fields": [{"name": "ar", "array_len": 4, "type": "struct", "struct": {"vmsd_name": "test/tst", "version": 1, "fields": [{"name": "i", "type": "int32", "size": 4}]}, "size": 4}]}"#,
    );
}

#[test]
fn arr_ptr_prim_0_save_and_load() {
    arr_ptr_0_save_and_load(
        TestArrayOfPtrToInt {
            ar: [Some(0), None, Some(2), Some(3)],
        },
        TestArrayOfPtrToInt {
            ar: [Some(3), None, Some(1), Some(0)],
        },
        "arpp",
        r#"{"name": "arpp", "instance_id": 0, "vmsd_name": "test/arps", "version": 1, "fields": [{"name": "ar", "array_len": 4, "type": "int32", "size": 4}]}"#,
    );
}

#[test]
fn null_slot_on_the_destination_needs_the_marker() {
    let m = machine("pc-i440fx-7.2");
    // Source sends an element where the destination's slot 1 is NULL.
    let mut obj = TestArrayOfPtrToInt {
        ar: [Some(0), None, Some(0), Some(0)],
    };
    let e = load_payload(&mut obj, &unhex(WIRE_ARR_PTR_NO0), 1, &m).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::InvalidValue { found: 0, .. }),
        "{e}"
    );
    assert_eq!(e.field_path().as_deref(), Some("ar[1]"));
    assert_eq!(e.offset(), Some(4));
    assert!(e.to_string().contains("NULL-pointer marker 0x30"), "{e}");
}

#[test]
fn null_first_element_is_described_as_qemu_7_2_does() {
    let m = machine("pc-i440fx-7.2");
    // Element 0 NULL: QEMU 7.2 writes element 0's type and its size, 1 byte.
    let s = TestArrayOfPtrToInt {
        ar: [None, Some(1), Some(2), Some(3)],
    };
    let desc = save_exact(&s, "30 00 00 00 01 00 00 00 02 00 00 00 03", &m);
    assert_eq!(
        desc_json("arpp", desc),
        r#"{"name": "arpp", "instance_id": 0, "vmsd_name": "test/arps", "version": 1, "fields": [{"name": "ar", "array_len": 4, "type": "int32", "size": 1}]}"#
    );
    let s = TestArrayOfPtrToStruct {
        ar: [None, triv(1), triv(2), triv(3)],
    };
    let (_, _, desc) = save_payload(&s, &m).unwrap();
    assert_eq!(
        desc_json("arps", desc),
        r#"{"name": "arps", "instance_id": 0, "vmsd_name": "test/arps", "version": 1, "fields": [{"name": "ar", "array_len": 4, "type": "struct", "struct": {}, "size": 1}]}"#
    );
}

/// A struct pointer array that QEMU does not compress (its element has a subsection): one
/// entry per element, a NULL one with an empty `struct` and size 1, and the generic decoder
/// reads the stream back from that description.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(
    name = "elem",
    version = 1,
    nested,
    subsection(name = "elem/extra", version = 1)
)]
struct Elem {
    a: u16,
    #[vmstate(subsection = "elem/extra", default)]
    b: u8,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "holder", version = 1)]
struct Holder {
    ar: [Option<Elem>; 3],
}

#[test]
fn uncompressed_pointer_array_vmdesc_and_generic_decode() {
    let m = machine("pc-i440fx-7.2");
    let s = Holder {
        ar: [
            Some(Elem { a: 0x102, b: 3 }),
            None,
            Some(Elem { a: 4, b: 5 }),
        ],
    };
    let (_, bytes, desc) = save_payload(&s, &m).unwrap();
    let sub = "05 0a 65 6c 65 6d 2f 65 78 74 72 61 00 00 00 01";
    assert_eq!(hex(&bytes), format!("01 02 {sub} 03 30 00 04 {sub} 05"));
    let json = desc_json("holder", desc.clone());
    let e = |i: u32| {
        format!(
            r#"{{"name": "ar", "index": {i}, "type": "struct", "struct": {{"vmsd_name": "elem", "version": 1, "fields": [{{"name": "a", "type": "uint16", "size": 2}}], "subsections": [{{"vmsd_name": "elem/extra", "version": 1, "fields": [{{"name": "b", "type": "uint8", "size": 1}}]}}]}}, "size": 19}}"#
        )
    };
    assert_eq!(
        json,
        format!(
            r#"{{"name": "holder", "instance_id": 0, "vmsd_name": "holder", "version": 1, "fields": [{}, {{"name": "ar", "index": 1, "type": "struct", "struct": {{}}, "size": 1}}, {}]}}"#,
            e(0),
            e(2)
        )
    );
    // Parse the JSON back and decode the payload with it.
    let full = format!(r#"{{"page_size": 4096, "devices": [{json}]}}"#);
    let vd = vmstate_runtime::vmdesc::parse_vmdesc(full.as_bytes()).unwrap();
    let DescBody::Vmsd(d) = &vd.devices[0].body else {
        panic!("not a vmsd")
    };
    let mut r = vmstate_runtime::SliceReader::new(&bytes);
    let v = vmstate_runtime::decode::decode_payload(&mut r, d).unwrap();
    let ar = v.get("ar").unwrap();
    let vmstate_runtime::Value::Array(items) = ar else {
        panic!("{ar:?}")
    };
    assert_eq!(items.len(), 3);
    assert_eq!(items[1], vmstate_runtime::Value::Bytes(vec![0x30]));
    assert_eq!(
        items[2].get("a").and_then(vmstate_runtime::Value::int),
        Some(4)
    );
    // A corrupted marker is reported against the description.
    let mut bad = bytes.clone();
    bad[19] = 0x31;
    let mut r = vmstate_runtime::SliceReader::new(&bad);
    let err = vmstate_runtime::decode::decode_payload(&mut r, d).unwrap_err();
    assert!(err.to_string().contains("NULL pointer"), "{err}");
}

#[test]
fn pointer_array_prefixes_fail_cleanly() {
    let m = machine("pc-i440fx-7.2");
    let wire = unhex(WIRE_ARR_PTR_0);
    for n in 0..wire.len() {
        let mut obj = TestArrayOfPtrToStruct {
            ar: [triv(0), None, triv(0), triv(0)],
        };
        let e = load_payload(&mut obj, &wire[..n], 1, &m).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnexpectedEof { .. }),
            "prefix {n}: {e}"
        );
        assert!(
            e.field_path().unwrap().starts_with("ar["),
            "prefix {n}: {e}"
        );
    }
}

// ---- QEMU 7.2 tests/unit/test-vmstate.c: QTAILQ, QLIST and GTREE.

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/queue-element", version = 1, nested)]
struct TestQtailqElement {
    b: bool,
    u8: u8,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/queue", version = 1)]
struct TestQtailq {
    i16: i16,
    #[vmstate(list, max = 16)]
    q: std::collections::VecDeque<TestQtailqElement>,
    i32: i32,
}

/// `wire_q`.
const WIRE_Q: &str = "fe 00 01 01 82 01 00 41 00 00 01 11 70";

fn obj_q() -> TestQtailq {
    TestQtailq {
        i16: -512,
        q: [
            TestQtailqElement { b: true, u8: 130 },
            TestQtailqElement { b: false, u8: 65 },
        ]
        .into(),
        i32: 70000,
    }
}

#[test]
fn save_q() {
    let m = machine("pc-i440fx-7.2");
    let desc = save_exact(&obj_q(), WIRE_Q, &m);
    // QEMU writes each element's description straight into the field object.
    let elem = r#""vmsd_name": "test/queue-element", "version": 1, "fields": [{"name": "b", "type": "bool", "size": 1}, {"name": "u8", "type": "uint8", "size": 1}]"#;
    assert_eq!(
        desc_json("q", desc),
        format!(
            r#"{{"name": "q", "instance_id": 0, "vmsd_name": "test/queue", "version": 1, "fields": [{{"name": "i16", "type": "int16", "size": 2}}, {{"name": "q", "type": "qtailq", {elem}, {elem}, "size": 7}}, {{"name": "i32", "type": "int32", "size": 4}}]}}"#
        )
    );
}

#[test]
fn load_q() {
    let m = machine("pc-i440fx-7.2");
    load_exact(TestQtailq::default(), WIRE_Q, &obj_q(), &m);
    // A destination that already holds elements gets exactly the stream's.
    let tgt = TestQtailq {
        q: vec![TestQtailqElement::default(); 5].into(),
        ..TestQtailq::default()
    };
    load_exact(tgt, WIRE_Q, &obj_q(), &m);
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/queue list", version = 1, nested)]
struct TestQListElement {
    id: u32,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/container/qlist", version = 1)]
struct TestQListContainer {
    id: u32,
    #[vmstate(list = "qlist", max = 8)]
    list: Vec<TestQListElement>,
}

/// `qlist_dump`.
const QLIST_DUMP: &str =
    "00 00 00 01 01 00 00 00 0a 01 00 00 0b 00 01 00 0c 00 00 01 0d 00 00 00 00";

fn qlist_container() -> TestQListContainer {
    TestQListContainer {
        id: 1,
        list: [0x0a, 0x0b00, 0xc0000, 0xd000000]
            .into_iter()
            .map(|id| TestQListElement { id })
            .collect(),
    }
}

#[test]
fn save_qlist() {
    let m = machine("pc-i440fx-7.2");
    let desc = save_exact(&qlist_container(), QLIST_DUMP, &m);
    let json = desc_json("c", desc);
    assert!(
        json.contains(r#"{"name": "list", "type": "qlist", "vmsd_name": "test/queue list", "version": 1, "fields": [{"name": "id", "type": "uint32", "size": 4}], "vmsd_name": "#),
        "{json}"
    );
    assert!(json.ends_with(r#""size": 21}]}"#), "{json}");
}

#[test]
fn load_qlist() {
    let m = machine("pc-i440fx-7.2");
    load_exact(
        TestQListContainer::default(),
        QLIST_DUMP,
        &qlist_container(),
        &m,
    );
}

#[test]
fn list_longer_than_max_is_refused_before_the_extra_element() {
    let m = machine("pc-i440fx-7.2");
    // Nine elements for a list of at most eight.
    let mut wire = unhex("00 00 00 01");
    for i in 0..9u8 {
        wire.extend_from_slice(&[1, 0, 0, 0, i]);
    }
    wire.push(0);
    let mut dest = TestQListContainer::default();
    let e = load_payload(&mut dest, &wire, 1, &m).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::LengthTooLarge { len: 9, limit: 8 });
    assert_eq!(e.field_path().as_deref(), Some("list"));
    assert_eq!(e.offset(), Some(4 + 8 * 5));
    assert!(dest.list.capacity() <= 8, "{}", dest.list.capacity());
    // Saving more than `max` is refused too: the destination would not take it.
    let mut big = qlist_container();
    big.list = vec![TestQListElement::default(); 9];
    let e = save_payload(&big, &m).unwrap_err();
    assert!(e.to_string().contains("maximum 8"), "{e}");
    // A list cut short: end of input, naming the element.
    let wire = unhex(QLIST_DUMP);
    for n in 4..wire.len() {
        let e = load_payload(&mut TestQListContainer::default(), &wire[..n], 1, &m).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnexpectedEof { .. }),
            "{n}: {e}"
        );
        assert!(e.field_path().unwrap().starts_with("list"), "{n}: {e}");
    }
}

#[derive(VmState, Clone, Default, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[vmstate(name = "interval", version = 1, nested)]
struct TestGTreeInterval {
    low: u64,
    high: u64,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "mapping", version = 1, nested)]
struct TestGTreeMapping {
    phys_addr: u64,
    flags: u32,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "domain", version = 1, nested)]
struct TestGTreeDomain {
    id: i32,
    #[vmstate(tree, max = 64)]
    mappings: std::collections::BTreeMap<TestGTreeInterval, TestGTreeMapping>,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "domain", version = 1)]
struct TestGTreeDomainSection {
    id: i32,
    #[vmstate(tree, max = 64)]
    mappings: std::collections::BTreeMap<TestGTreeInterval, TestGTreeMapping>,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "iommu", version = 1)]
struct TestGTreeIommu {
    id: i32,
    #[vmstate(tree, max = 16)]
    domains: std::collections::BTreeMap<u64, TestGTreeDomain>,
}

/// `first_domain_dump`.
const FIRST_DOMAIN_DUMP: &str = "00 00 00 06 00 00 00 02 \
    01 00 00 00 00 00 00 10 00 00 00 00 00 00 00 1f ff 00 00 00 00 00 00 a0 00 00 00 00 01 \
    01 00 00 00 00 00 00 40 00 00 00 00 00 00 00 4f ff 00 00 00 00 00 0e 00 00 00 00 00 02 \
    00";

/// `iommu_dump`.
const IOMMU_DUMP: &str = "00 00 00 07 00 00 00 02 \
    01 00 00 00 00 00 00 00 05 00 00 00 05 00 00 00 01 \
    01 00 00 00 00 01 00 00 00 00 00 00 00 01 ff ff ff 00 00 00 00 0f 00 00 00 00 00 00 03 00 \
    01 00 00 00 00 00 00 00 06 00 00 00 06 00 00 00 02 \
    01 00 00 00 00 00 00 10 00 00 00 00 00 00 00 1f ff 00 00 00 00 00 00 a0 00 00 00 00 01 \
    01 00 00 00 00 00 00 40 00 00 00 00 00 00 00 4f ff 00 00 00 00 00 0e 00 00 00 00 00 02 \
    00 00";

fn interval(low: u64, high: u64) -> TestGTreeInterval {
    TestGTreeInterval { low, high }
}

fn mapping(phys_addr: u64, flags: u32) -> TestGTreeMapping {
    TestGTreeMapping { phys_addr, flags }
}

fn first_domain() -> TestGTreeDomain {
    TestGTreeDomain {
        id: 6,
        mappings: [
            (interval(0x1000, 0x1fff), mapping(0xa000, 1)),
            (interval(0x4000, 0x4fff), mapping(0xe0000, 2)),
        ]
        .into(),
    }
}

fn iommu() -> TestGTreeIommu {
    let second = TestGTreeDomain {
        id: 5,
        mappings: [(interval(0x100_0000, 0x1ff_ffff), mapping(0xf00_0000, 3))].into(),
    };
    TestGTreeIommu {
        id: 7,
        domains: [(6, first_domain()), (5, second)].into(),
    }
}

fn domain_section() -> TestGTreeDomainSection {
    let d = first_domain();
    TestGTreeDomainSection {
        id: d.id,
        mappings: d.mappings,
    }
}

#[test]
fn gtree_save_domain() {
    let m = machine("pc-i440fx-7.2");
    let desc = save_exact(&domain_section(), FIRST_DOMAIN_DUMP, &m);
    let key = r#""vmsd_name": "interval", "version": 1, "fields": [{"name": "low", "type": "uint64", "size": 8}, {"name": "high", "type": "uint64", "size": 8}]"#;
    let val = r#""vmsd_name": "mapping", "version": 1, "fields": [{"name": "phys_addr", "type": "uint64", "size": 8}, {"name": "flags", "type": "uint32", "size": 4}]"#;
    assert_eq!(
        desc_json("domain", desc),
        format!(
            r#"{{"name": "domain", "instance_id": 0, "vmsd_name": "domain", "version": 1, "fields": [{{"name": "id", "type": "int32", "size": 4}}, {{"name": "mappings", "type": "gtree", {key}, {val}, {key}, {val}, "size": 63}}]}}"#
        )
    );
}

#[test]
fn gtree_load_domain() {
    let m = machine("pc-i440fx-7.2");
    load_exact(
        TestGTreeDomainSection::default(),
        FIRST_DOMAIN_DUMP,
        &domain_section(),
        &m,
    );
}

#[test]
fn gtree_save_iommu() {
    let m = machine("pc-i440fx-7.2");
    let desc = save_exact(&iommu(), IOMMU_DUMP, &m);
    // Direct keys are not described; each value is, with its own tree inside.
    let json = desc_json("iommu", desc);
    assert!(
        json.contains(r#"{"name": "domains", "type": "gtree", "vmsd_name": "domain", "version": 1, "fields": [{"name": "id", "type": "int32", "size": 4}, {"name": "mappings", "type": "gtree", "vmsd_name": "interval""#),
        "{json}"
    );
}

#[test]
fn gtree_load_iommu() {
    let m = machine("pc-i440fx-7.2");
    load_exact(TestGTreeIommu::default(), IOMMU_DUMP, &iommu(), &m);
}

#[test]
fn gtree_counts_are_checked() {
    let m = machine("pc-i440fx-7.2");
    let wire = unhex(IOMMU_DUMP);
    // A node count above `max`: refused before any node is read.
    let mut big = wire.clone();
    big[4..8].copy_from_slice(&17u32.to_be_bytes());
    let e = load_payload(&mut TestGTreeIommu::default(), &big, 1, &m).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::LengthTooLarge { len: 17, limit: 16 });
    assert_eq!(e.field_path().as_deref(), Some("domains"));
    assert_eq!(e.offset(), Some(4));
    // A count of 1 with two nodes on the wire (QEMU: "inconsistent stream").
    let mut more = wire.clone();
    more[4..8].copy_from_slice(&1u32.to_be_bytes());
    let e = load_payload(&mut TestGTreeIommu::default(), &more, 1, &m).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::InvalidValue { found: 1, .. }),
        "{e}"
    );
    assert_eq!(e.field_path().as_deref(), Some("domains"));
    // A count of 3 with two nodes.
    let mut fewer = wire.clone();
    fewer[4..8].copy_from_slice(&3u32.to_be_bytes());
    let e = load_payload(&mut TestGTreeIommu::default(), &fewer, 1, &m).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::InvalidValue { found: 2, .. }),
        "{e}"
    );
    // A nested tree's count above its `max` names the path down to it.
    let mut inner = wire.clone();
    inner[21..25].copy_from_slice(&65u32.to_be_bytes());
    let e = load_payload(&mut TestGTreeIommu::default(), &inner, 1, &m).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::LengthTooLarge { len: 65, limit: 64 });
    assert_eq!(e.field_path().as_deref(), Some("domains[0].mappings"));
    // Every prefix fails cleanly.
    for n in 0..wire.len() {
        let e = load_payload(&mut TestGTreeIommu::default(), &wire[..n], 1, &m).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::UnexpectedEof { .. }),
            "{n}: {e}"
        );
    }
}

/// The generic decoder reads lists and trees from the vmdesc QEMU's form gives them.
#[test]
fn lists_and_trees_decode_from_their_vmdesc() {
    let m = machine("pc-i440fx-7.2");
    let decode = |name: &str, bytes: &[u8], desc| {
        let json = desc_json(name, desc);
        let full = format!(r#"{{"page_size": 4096, "devices": [{json}]}}"#);
        let vd = vmstate_runtime::vmdesc::parse_vmdesc(full.as_bytes()).unwrap();
        // The parsed description prints back to the same text.
        let DescBody::Vmsd(d) = &vd.devices[0].body else {
            panic!("not a vmsd")
        };
        assert_eq!(desc_json(name, d.clone()), json);
        let mut r = vmstate_runtime::SliceReader::new(bytes);
        vmstate_runtime::decode::decode_payload(&mut r, d)
    };
    let (_, bytes, desc) = save_payload(&obj_q(), &m).unwrap();
    let v = decode("q", &bytes, desc.clone()).unwrap();
    let vmstate_runtime::Value::Array(items) = v.get("q").unwrap() else {
        panic!()
    };
    assert_eq!(items.len(), 2);
    assert_eq!(
        items[0].get("u8").and_then(vmstate_runtime::Value::int),
        Some(130)
    );
    assert_eq!(
        v.get("i32").and_then(vmstate_runtime::Value::int),
        Some(70000)
    );
    // One more element on the wire than the description lists.
    let mut extra = bytes.clone();
    extra.splice(7..7, [1, 1, 7]);
    let e = decode("q", &extra, desc).unwrap_err();
    assert!(e.to_string().contains("more elements"), "{e}");

    let (_, bytes, desc) = save_payload(&iommu(), &m).unwrap();
    let v = decode("iommu", &bytes, desc).unwrap();
    let vmstate_runtime::Value::Array(domains) = v.get("domains").unwrap() else {
        panic!()
    };
    assert_eq!(
        domains[0].get("key").and_then(vmstate_runtime::Value::int),
        Some(5)
    );
    let d6 = domains[1].get("value").unwrap();
    let vmstate_runtime::Value::Array(maps) = d6.get("mappings").unwrap() else {
        panic!()
    };
    assert_eq!(maps.len(), 2);
    let key = maps[1].get("key").unwrap();
    assert_eq!(
        key.get("low").and_then(vmstate_runtime::Value::int),
        Some(0x4000)
    );
}

// ---- Predicates that receive the stream version (QEMU's `field_exists(opaque, version_id)`).

/// QEMU's `VMSTATE_UINT32_TEST(extra, S, extra_exists)` where the test reads the version:
/// `return version_id >= 2 && s->has_extra;`. No `since`: the predicate decides alone.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "vpred", version = 2, minimum_version = 1)]
struct VersionPred {
    has_extra: bool,
    #[vmstate(when = pred(Self::extra_exists), default)]
    extra: u32,
    #[vmstate(when = all(pred(Self::has_tail), not(pred(Self::old_stream))), keep)]
    tail: u8,
}

impl VersionPred {
    fn extra_exists(&self, version: u32) -> bool {
        version >= 2 && self.has_extra
    }
    fn has_tail(&self) -> bool {
        self.has_extra
    }
    fn old_stream(&self, version: u32) -> bool {
        version < 2
    }
}

#[test]
fn predicates_receive_the_stream_version() {
    let m = machine("pc-i440fx-7.2");
    let src = VersionPred {
        has_extra: true,
        extra: 0x0102_0304,
        tail: 9,
    };
    let (v, bytes, desc) = save_payload(&src, &m).unwrap();
    assert_eq!(v, 2);
    assert_eq!(hex(&bytes), "01 01 02 03 04 09");
    // A gated field is not compressible and is described like any other field.
    assert_eq!(desc.fields.len(), 3);

    // Version 2 bytes load with the field.
    let mut dst = VersionPred {
        has_extra: false,
        ..VersionPred::default()
    };
    load_payload(&mut dst, &bytes, 2, &m).unwrap();
    assert_eq!(dst, src);

    // Version 1 bytes (QEMU's, from a source whose test saw version 1): no `extra`, no `tail`.
    let mut dst = VersionPred {
        extra: 77,
        tail: 5,
        ..VersionPred::default()
    };
    load_payload(&mut dst, &[1], 1, &m).unwrap();
    assert_eq!(
        dst,
        VersionPred {
            has_extra: true,
            extra: 0,
            tail: 5
        }
    );
    // The same bytes as version 2 expect the field: they run out.
    let e = load_payload(&mut VersionPred::default(), &[1], 2, &m).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::UnexpectedEof { .. }), "{e}");
    assert_eq!(e.field_path().as_deref(), Some("extra"));
}

// ---- `le` (VMSTATE_INT32_POSITIVE_LE) and `vmdesc_type` (device-level VMStateInfo names) ----

/// QEMU 7.2's `PCIDevice` vmsd (hw/pci/pci.c): `version_id` through `vmstate_info_int32_le`,
/// the configuration space through `vmstate_info_pci_config` (256 bytes, or 4096 for PCI
/// Express: two `config` entries with complementary tests, hence `config[0]` in the vmdesc),
/// and the four interrupt pin levels through `vmstate_info_pci_irq_state` (4 × be32).
#[derive(VmState, Clone, Debug, PartialEq)]
#[vmstate(name = "PCIDevice", version = 2, nested)]
struct PciDevice {
    #[vmstate(le)]
    version_id: i32,
    #[vmstate(buffer, rename = "config", vmdesc_type = "pci config", when = pred(Self::is_pci), keep)]
    config: [u8; 256],
    #[vmstate(buffer, rename = "config", vmdesc_type = "pci config", when = pred(Self::is_pcie), keep)]
    config_express: [u8; 4096],
    #[vmstate(vmdesc_type = "pci irq state")]
    irq_state: [i32; 4],
    #[vmstate(skip)]
    express: bool,
}

impl PciDevice {
    fn is_pci(&self) -> bool {
        !self.express
    }
    fn is_pcie(&self) -> bool {
        self.express
    }
}

impl Default for PciDevice {
    fn default() -> Self {
        PciDevice {
            version_id: 2,
            config: [0; 256],
            config_express: [0; 4096],
            irq_state: [0; 4],
            express: false,
        }
    }
}

/// QEMU's `I440FX` host bridge: the PCI device and one retired byte.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "I440FX", version = 3)]
struct I440fx {
    parent_obj: PciDevice,
    _smm: Unused<1>,
}

/// The device entry QEMU 7.2 writes for `0000:00:00.0/I440FX` (tests/golden/qemu72/idle.desc.json).
const I440FX_VMDESC: &str = r#"{"name": "0000:00:00.0/I440FX", "instance_id": 0, "vmsd_name": "I440FX", "version": 3, "fields": [{"name": "parent_obj", "type": "struct", "struct": {"vmsd_name": "PCIDevice", "version": 2, "fields": [{"name": "version_id", "type": "int32 le", "size": 4}, {"name": "config[0]", "type": "pci config", "size": 256}, {"name": "irq_state", "type": "pci irq state", "size": 16}]}, "size": 276}, {"name": "unused", "type": "unused_buffer", "size": 1}]}"#;

#[test]
fn pci_device_is_described_as_qemu_7_2_does() {
    let m = machine("pc-i440fx-7.2");
    let mut dev = I440fx::default();
    dev.parent_obj.config[0] = 0x86;
    dev.parent_obj.config[1] = 0x80;
    dev.parent_obj.irq_state = [0, 1, 0, -1];
    let (v, bytes, desc) = save_payload(&dev, &m).unwrap();
    assert_eq!(desc_json("0000:00:00.0/I440FX", desc), I440FX_VMDESC);
    let mut expected = vec![0, 0, 0, 2, 0x86, 0x80];
    expected.extend_from_slice(&[0; 254]);
    expected.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0,
    ]);
    assert_eq!(hex(&bytes), hex(&expected));
    let mut back = I440fx::default();
    load_payload(&mut back, &bytes, v, &m).unwrap();
    assert_eq!(back, dev);

    // The schema carries both, for dumps and the compat checker.
    let fields = &<PciDevice as VmState>::SCHEMA.fields;
    assert!(fields[0].le);
    assert_eq!(fields[1].vmdesc_type.as_deref(), Some("pci config"));
    let json = <PciDevice as VmState>::SCHEMA.to_json();
    assert_eq!(json["fields"][0]["le"], true);
    assert_eq!(json["fields"][3]["vmdesc_type"], "pci irq state");
    assert!(json["fields"][3].get("le").is_none());

    // PCI Express: the 4096-byte configuration space, still `config`, now the second entry.
    let mut pcie = I440fx::default();
    pcie.parent_obj.express = true;
    let (_, bytes, desc) = save_payload(&pcie, &m).unwrap();
    assert_eq!(bytes.len(), 4 + 4096 + 16 + 1);
    assert!(desc_json("x", desc)
        .contains(r#"{"name": "config[1]", "type": "pci config", "size": 4096}"#));
}

#[test]
fn le_field_is_bounded_by_the_destination_value() {
    let m = machine("pc-i440fx-7.2");
    let mut wire = vec![0, 0, 0, 1];
    wire.extend_from_slice(&[0; 256 + 16 + 1]);
    // A version 1 device loads into a version 2 one: 1 ≤ 2, stored.
    let mut dst = I440fx::default();
    load_payload(&mut dst, &wire, 3, &m).unwrap();
    assert_eq!(dst.parent_obj.version_id, 1);
    // Equal is fine too.
    let mut dst = I440fx::default();
    wire[3] = 2;
    load_payload(&mut dst, &wire, 3, &m).unwrap();
    assert_eq!(dst.parent_obj.version_id, 2);
    // Above the destination's value: refused, naming the field path and both values.
    wire[3] = 3;
    let mut dst = I440fx::default();
    let err = load_payload(&mut dst, &wire, 3, &m).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidValue { found: 3, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("parent_obj.version_id"), "{text}");
    assert!(
        text.contains("invalid value 3") && text.contains("0..=2"),
        "{text}"
    );
    assert!(text.starts_with("at byte 0x0"), "{text}");
    assert_eq!(dst.parent_obj.version_id, 2);
    // Negative: refused (QEMU's `loaded >= 0`).
    wire[..4].copy_from_slice(&(-1i32).to_be_bytes());
    let err = load_payload(&mut dst, &wire, 3, &m).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::InvalidValue { found: -1, .. }),
        "{err}"
    );
}

// ---- VMSTATE_WITH_TMP: `Tmp<V>` ----

use vmstate_runtime::{Tmp, TmpView};

/// test-vmstate.c's `TestStruct`, as far as `test/with_tmp` uses it.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/with_tmp", version = 1)]
struct WithTmp {
    a: u32,
    d: u64,
    tmp: Tmp<TmpChild>,
    #[vmstate(skip)]
    b: u32,
    #[vmstate(skip)]
    f: u64,
}

/// `test/tmp_child_parent`: the parent's `f`, reached through the view's parent pointer.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/tmp_child_parent", version = 0, nested)]
struct TmpChildParent {
    f: u64,
}

/// `test/tmp_child`: `diff = b - a` on save, `b = a + diff` on load.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/tmp_child", version = 0, nested)]
struct TmpChild {
    diff: i64,
    parent: TmpChildParent,
}

impl TmpView<WithTmp> for TmpChild {
    type Error = String;
    fn save_view(p: &WithTmp) -> Result<Self, String> {
        Ok(TmpChild {
            diff: i64::from(p.b) - i64::from(p.a),
            parent: TmpChildParent { f: p.f },
        })
    }
    fn load_view(self, p: &mut WithTmp) -> Result<(), String> {
        let b = i64::from(p.a) + self.diff;
        p.b = u32::try_from(b).map_err(|_| format!("b = a + diff = {b} does not fit u32"))?;
        p.f = self.parent.f;
        Ok(())
    }
}

/// `wire_with_tmp` of test-vmstate.c (without its trailing QEMU_VM_EOF, which is stream
/// framing, not payload).
const WIRE_WITH_TMP: &str =
    "00 00 00 02  00 00 00 00 00 00 00 01  00 00 00 00 00 00 00 02  00 00 00 00 00 00 00 08";

#[test]
fn tmp_struct() {
    let m = machine("pc-i440fx-7.2");
    let obj = WithTmp {
        a: 2,
        b: 4,
        d: 1,
        f: 8,
        ..WithTmp::default()
    };
    let desc = save_exact(&obj, WIRE_WITH_TMP, &m);
    assert_eq!(
        desc_json("test/with_tmp", desc),
        r#"{"name": "test/with_tmp", "instance_id": 0, "vmsd_name": "test/with_tmp", "version": 1, "fields": [{"name": "a", "type": "uint32", "size": 4}, {"name": "d", "type": "uint64", "size": 8}, {"name": "tmp", "type": "tmp", "vmsd_name": "test/tmp_child", "version": 0, "fields": [{"name": "diff", "type": "int64", "size": 8}, {"name": "parent", "type": "struct", "struct": {"vmsd_name": "test/tmp_child_parent", "version": 0, "fields": [{"name": "f", "type": "uint64", "size": 8}]}, "size": 8}], "size": 16}]}"#
    );
    load_exact(WithTmp::default(), WIRE_WITH_TMP, &obj, &m);
    // The schema sees the view: a `tmp` kind holding the nested struct.
    let json = <WithTmp as VmState>::SCHEMA.to_json();
    assert_eq!(json["fields"][2]["name"], "tmp");
    assert_eq!(json["fields"][2]["kind"]["kind"], "tmp");
    assert_eq!(
        json["fields"][2]["kind"]["view"]["struct"]["name"],
        "test/tmp_child"
    );
    assert_eq!(
        <WithTmp as VmState>::SCHEMA.fields[2].kind.fixed_size(),
        Some(16)
    );
}

#[test]
fn tmp_fold_back_error_names_the_field_path() {
    let m = machine("pc-i440fx-7.2");
    // a = 2, diff = -3: b would be -1.
    let wire =
        "00 00 00 02  00 00 00 00 00 00 00 01  ff ff ff ff ff ff ff fd  00 00 00 00 00 00 00 08";
    let mut dst = WithTmp::default();
    let err = load_payload(&mut dst, &unhex(wire), 1, &m).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tmp"), "{text}");
    assert!(
        text.contains("load_view: b = a + diff = -1 does not fit u32"),
        "{text}"
    );
    assert!(text.starts_with("at byte 0xc"), "{text}");
    // A stream cut inside the view: an error, never a panic.
    let bytes = unhex(WIRE_WITH_TMP);
    for cut in 0..bytes.len() {
        assert!(load_payload(&mut WithTmp::default(), &bytes[..cut], 1, &m).is_err());
    }
}

/// QEMU 7.2's x86 `fpreg`: one field, the 80-bit register written through `fpreg_tmp`.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "fpreg", version = 0, nested)]
struct FpReg {
    tmp: Tmp<FpregTmp>,
    #[vmstate(skip)]
    mant: u64,
    #[vmstate(skip)]
    exp: u16,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "fpreg_tmp", version = 0, nested)]
struct FpregTmp {
    tmp_mant: u64,
    tmp_exp: u16,
}

impl TmpView<FpReg> for FpregTmp {
    type Error = std::convert::Infallible;
    fn save_view(r: &FpReg) -> Result<Self, Self::Error> {
        Ok(FpregTmp {
            tmp_mant: r.mant,
            tmp_exp: r.exp,
        })
    }
    fn load_view(self, r: &mut FpReg) -> Result<(), Self::Error> {
        r.mant = self.tmp_mant;
        r.exp = self.tmp_exp;
        Ok(())
    }
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "fpu", version = 1)]
struct Fpu {
    #[vmstate(rename = "env.fpregs")]
    fpregs: [FpReg; 8],
}

#[test]
fn fpreg_tmp_is_described_as_qemu_7_2_does() {
    let m = machine("pc-i440fx-7.2");
    let mut fpu = Fpu::default();
    fpu.fpregs[0].mant = 0x8000_0000_0000_0000;
    fpu.fpregs[0].exp = 0x3fff; // 1.0
    let (v, bytes, desc) = save_payload(&fpu, &m).unwrap();
    assert_eq!(bytes.len(), 80);
    assert_eq!(hex(&bytes[..10]), "80 00 00 00 00 00 00 00 3f ff");
    // The entry as it appears in tests/golden/qemu72/rtc.mig's vmdesc.
    let json = desc_json("fpu", desc);
    assert!(
        json.contains(r#"{"name": "env.fpregs", "array_len": 8, "type": "struct", "struct": {"vmsd_name": "fpreg", "version": 0, "fields": [{"name": "tmp", "type": "tmp", "vmsd_name": "fpreg_tmp", "version": 0, "fields": [{"name": "tmp_mant", "type": "uint64", "size": 8}, {"name": "tmp_exp", "type": "uint16", "size": 2}], "size": 10}]}, "size": 10}"#),
        "{json}"
    );
    let mut back = Fpu::default();
    load_payload(&mut back, &bytes, v, &m).unwrap();
    assert_eq!(back, fpu);
}

// ---- `with = module`: a custom codec with a declared description ----

/// QEMU's `vmstate_info_pci_irq_state`: four be32 levels, each 0 or 1 on load.
mod pci_irq_state {
    use vmstate_runtime::field::CodecDescription;
    use vmstate_runtime::schema::{Kind, SchemaRef};
    use vmstate_runtime::{Error, ErrorKind, Reader, Writer};

    pub const DESCRIPTION: CodecDescription = CodecDescription {
        vmdesc_type: "pci irq state",
        size: Some(16),
        layout: Kind::Array {
            elem: SchemaRef::Static(&Kind::I32),
            len: 4,
        },
    };

    pub fn save<W: Writer + ?Sized>(levels: &[bool; 4], w: &mut W) -> vmstate_runtime::Result<()> {
        for &l in levels {
            w.write_be32(u32::from(l))?;
        }
        Ok(())
    }

    pub fn load<R: Reader + ?Sized>(
        levels: &mut [bool; 4],
        r: &mut R,
    ) -> vmstate_runtime::Result<()> {
        for l in levels.iter_mut() {
            let pos = r.position();
            match r.read_be32()? {
                0 => *l = false,
                1 => *l = true,
                v => {
                    return Err(Error::new(
                        ErrorKind::InvalidValue {
                            expected: "an interrupt level 0 or 1".into(),
                            found: i128::from(v),
                        },
                        pos,
                    ))
                }
            }
        }
        Ok(())
    }
}

/// A codec whose `load` reads less than its description declares.
mod short_reader {
    use vmstate_runtime::field::CodecDescription;
    use vmstate_runtime::schema::Kind;
    use vmstate_runtime::{Reader, Writer};

    pub const DESCRIPTION: CodecDescription = CodecDescription {
        vmdesc_type: "short",
        size: Some(4),
        layout: Kind::U32,
    };
    pub fn save<W: Writer + ?Sized>(v: &u32, w: &mut W) -> vmstate_runtime::Result<()> {
        w.write_be32(*v)
    }
    pub fn load<R: Reader + ?Sized>(v: &mut u32, r: &mut R) -> vmstate_runtime::Result<()> {
        *v = u32::from(r.read_be16()?);
        Ok(())
    }
}

#[derive(VmState, Clone, Debug, PartialEq)]
#[vmstate(name = "PCIDevice", version = 2, nested)]
struct PciDeviceWith {
    #[vmstate(le)]
    version_id: i32,
    #[vmstate(buffer, rename = "config[0]", vmdesc_type = "pci config")]
    config: [u8; 256],
    #[vmstate(with = pci_irq_state)]
    irq_state: [bool; 4],
}

impl Default for PciDeviceWith {
    fn default() -> Self {
        PciDeviceWith {
            version_id: 0,
            config: [0; 256],
            irq_state: [false; 4],
        }
    }
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "I440FX", version = 3)]
struct I440fxWith {
    parent_obj: PciDeviceWith,
    _smm: Unused<1>,
}

#[test]
fn custom_codec_is_saved_loaded_described_and_checked() {
    let m = machine("pc-i440fx-7.2");
    let mut dev = I440fxWith::default();
    dev.parent_obj.version_id = 2;
    dev.parent_obj.irq_state = [false, true, false, true];
    let (v, bytes, desc) = save_payload(&dev, &m).unwrap();
    // The generic decoder reads the field by its description (16 bytes of `pci irq state`).
    let mut r = vmstate_runtime::SliceReader::new(&bytes);
    let decoded = vmstate_runtime::decode::decode_payload(&mut r, &desc).unwrap();
    let irq = decoded.get("parent_obj").and_then(|p| p.get("irq_state"));
    assert_eq!(
        irq,
        Some(&vmstate_runtime::Value::Bytes(vec![
            0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1
        ]))
    );
    assert_eq!(desc_json("0000:00:00.0/I440FX", desc), I440FX_VMDESC);
    assert_eq!(
        hex(&bytes[260..]),
        "00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 00"
    );
    let mut back = I440fxWith {
        parent_obj: PciDeviceWith {
            version_id: 2,
            ..PciDeviceWith::default()
        },
        ..I440fxWith::default()
    };
    load_payload(&mut back, &bytes, v, &m).unwrap();
    assert_eq!(back, dev);

    // The codec's own check fails the load, with the field path and offset.
    let mut bad = bytes.clone();
    bad[263] = 2;
    let err = load_payload(&mut back, &bad, v, &m).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("at byte 0x104"), "{text}");
    assert!(text.contains("parent_obj.irq_state"), "{text}");
    assert!(
        text.contains("invalid value 2: expected an interrupt level 0 or 1"),
        "{text}"
    );

    // The schema carries the description: the checker compares the declared layout.
    let f = &<PciDeviceWith as VmState>::SCHEMA.fields[2];
    match &*f.kind {
        vmstate_runtime::schema::Kind::Custom {
            vmdesc_type,
            size,
            layout,
        } => {
            assert_eq!((&**vmdesc_type, *size), ("pci irq state", Some(16)));
            assert_eq!(layout.fixed_size(), Some(16));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(f.kind.fixed_size(), Some(16));
    let json = <PciDeviceWith as VmState>::SCHEMA.to_json();
    assert_eq!(json["fields"][2]["kind"]["kind"], "custom");
    assert_eq!(json["fields"][2]["kind"]["vmdesc_type"], "pci irq state");
    // A dump reads back into the same description.
    let back: vmstate_runtime::schema::StructSchema = serde_json::from_value(json).unwrap();
    assert_eq!(&back, <PciDeviceWith as VmState>::SCHEMA);
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "short", version = 1)]
struct Short {
    #[vmstate(with = short_reader)]
    v: u32,
    tail: u8,
}

#[test]
fn custom_codec_is_held_to_its_declared_size() {
    let m = machine("pc-i440fx-7.2");
    let err = load_payload(&mut Short::default(), &[0, 0, 0, 1, 9], 1, &m).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("field `v`"), "{text}");
    assert!(text.contains("invalid value 2: expected the `short` codec to read the 4 bytes its description declares"), "{text}");
}

// ---- bitmap, multiply, 2-D arrays, CPU_DoubleU ----

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "more", version = 1)]
struct More {
    /// `VMSTATE_CPUDOUBLE_ARRAY`: be64 of the bits, vmdesc `CPU_Double_U`.
    fpr: [f64; 2],
    /// `VMSTATE_UINT16_2DARRAY`: row-major, described flattened (array_len 6).
    grid: [[u16; 3]; 2],
    /// `int32_t` bit count of the bitmap (QEMU's `_field_size`).
    nbits: i32,
    /// `VMSTATE_BITMAP`: ceil(nbits / 64) be64 words.
    #[vmstate(bitmap = nbits, max = 192)]
    bitmap: Vec<u64>,
    /// `uint32_t` unit count of the buffer.
    units: u32,
    /// `VMSTATE_VBUFFER_MULTIPLY`: units × 4 bytes.
    #[vmstate(buffer, count = units, multiply = 4, max = 16)]
    data: Vec<u8>,
    /// `VMSTATE_VARRAY_MULTIPLY`: units × 2 elements.
    #[vmstate(count = units, multiply = 2, max = 8)]
    pairs: [u16; 8],
}

fn more() -> More {
    More {
        fpr: [1.0, -0.5],
        grid: [[1, 2, 3], [4, 5, 6]],
        nbits: 65,
        bitmap: vec![0x8000_0000_0000_0001, 1],
        units: 2,
        data: vec![1, 2, 3, 4, 5, 6, 7, 8],
        pairs: [9, 8, 7, 6, 0, 0, 0, 0],
    }
}

const WIRE_MORE: &str = "3f f0 00 00 00 00 00 00  bf e0 00 00 00 00 00 00  \
    00 01 00 02 00 03 00 04 00 05 00 06  00 00 00 41  \
    80 00 00 00 00 00 00 01  00 00 00 00 00 00 00 01  00 00 00 02  \
    01 02 03 04 05 06 07 08  00 09 00 08 00 07 00 06";

#[test]
fn bitmap_multiply_2d_and_cpudouble_bytes_and_vmdesc() {
    let m = machine("pc-i440fx-7.2");
    let desc = save_exact(&more(), WIRE_MORE, &m);
    assert_eq!(
        desc_json("more", desc),
        r#"{"name": "more", "instance_id": 0, "vmsd_name": "more", "version": 1, "fields": [{"name": "fpr", "array_len": 2, "type": "CPU_Double_U", "size": 8}, {"name": "grid", "array_len": 6, "type": "uint16", "size": 2}, {"name": "nbits", "type": "int32", "size": 4}, {"name": "bitmap", "type": "bitmap", "size": 16}, {"name": "units", "type": "uint32", "size": 4}, {"name": "data", "type": "buffer", "size": 8}, {"name": "pairs", "array_len": 4, "type": "uint16", "size": 2}]}"#
    );
    load_exact(More::default(), WIRE_MORE, &more(), &m);
    // A NaN payload survives bit for bit.
    let nan = f64::from_bits(0x7ff8_dead_beef_0001);
    let src = More {
        fpr: [nan, 0.0],
        ..more()
    };
    let (v, bytes, _) = save_payload(&src, &m).unwrap();
    let mut back = More::default();
    load_payload(&mut back, &bytes, v, &m).unwrap();
    assert_eq!(back.fpr[0].to_bits(), nan.to_bits());
}

#[test]
fn bitmap_and_multiplied_counts_are_checked_before_any_byte() {
    let m = machine("pc-i440fx-7.2");
    let head = unhex(
        "3f f0 00 00 00 00 00 00  bf e0 00 00 00 00 00 00  00 01 00 02 00 03 00 04 00 05 00 06",
    );
    // 193 bits for a bitmap of at most 192: refused at the count, whatever follows.
    let mut wire = head.clone();
    wire.extend_from_slice(&193i32.to_be_bytes());
    let err = load_payload(&mut More::default(), &wire, 1, &m).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            ErrorKind::LengthTooLarge {
                len: 193,
                limit: 192
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bitmap"), "{err}");
    // A negative bit count.
    let mut wire = head.clone();
    wire.extend_from_slice(&(-1i32).to_be_bytes());
    let err = load_payload(&mut More::default(), &wire, 1, &m).unwrap_err();
    assert!(err.to_string().contains("non-negative bit count"), "{err}");
    // 5 units × 4 = 20 bytes for a buffer of at most 16.
    let mut wire = head.clone();
    wire.extend_from_slice(&unhex("00 00 00 00  00 00 00 05"));
    let err = load_payload(&mut More::default(), &wire, 1, &m).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::LengthTooLarge { len: 20, limit: 16 }),
        "{err}"
    );
    assert!(err.to_string().contains("data"), "{err}");
    // A unit count whose product overflows: refused, no allocation.
    let mut wire = head.clone();
    wire.extend_from_slice(&unhex("00 00 00 00  ff ff ff ff"));
    assert!(load_payload(&mut More::default(), &wire, 1, &m).is_err());
    // Every prefix of a good payload fails cleanly.
    let bytes = unhex(WIRE_MORE);
    for cut in 0..bytes.len() {
        assert!(
            load_payload(&mut More::default(), &bytes[..cut], 1, &m).is_err(),
            "{cut}"
        );
    }
    // Saving more bits than the words hold is refused.
    let bad = More {
        nbits: 129,
        ..more()
    };
    let err = save_payload(&bad, &m).unwrap_err();
    assert!(err.to_string().contains("bitmap"), "{err}");
}

// ---- VMSTATE_VSTRUCT: `vstruct = N` ----

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "inner", version = 2, minimum_version = 1, nested)]
struct VInner {
    a: u16,
    #[vmstate(since = 2, default = 7)]
    b: u8,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "outer", version = 1)]
struct VOuter {
    #[vmstate(vstruct = 1)]
    old: VInner,
    #[vmstate(vstruct = 2)]
    new: VInner,
}

#[test]
fn vstruct_is_held_at_its_explicit_version() {
    let m = machine("pc-i440fx-7.2");
    let src = VOuter {
        old: VInner { a: 1, b: 9 },
        new: VInner { a: 2, b: 3 },
    };
    let desc = save_exact(&src, "00 01  00 02 03", &m);
    assert_eq!(
        desc_json("outer", desc),
        r#"{"name": "outer", "instance_id": 0, "vmsd_name": "outer", "version": 1, "fields": [{"name": "old", "type": "vstruct", "struct": {"vmsd_name": "inner", "version": 1, "fields": [{"name": "a", "type": "uint16", "size": 2}]}, "size": 2}, {"name": "new", "type": "vstruct", "struct": {"vmsd_name": "inner", "version": 2, "fields": [{"name": "a", "type": "uint16", "size": 2}, {"name": "b", "type": "uint8", "size": 1}]}, "size": 3}]}"#
    );
    // At version 1 the field of version 2 is absent: it gets its default.
    let expected = VOuter {
        old: VInner { a: 1, b: 7 },
        new: VInner { a: 2, b: 3 },
    };
    load_exact(VOuter::default(), "00 01  00 02 03", &expected, &m);
    let json = <VOuter as VmState>::SCHEMA.to_json();
    assert_eq!(json["fields"][0]["kind"]["kind"], "vstruct");
    assert_eq!(json["fields"][0]["kind"]["version"], 1);
}

// ---- QEMU 7.2 tests/unit/test-vmstate.c: simple, versioned and field_exists cases ----

/// `TestSimple` / `simple/primitive`.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "simple/primitive", version = 1)]
struct TestSimple {
    b_1: bool,
    b_2: bool,
    u8_1: u8,
    u16_1: u16,
    u32_1: u32,
    u64_1: u64,
    i8_1: i8,
    i8_2: i8,
    i16_1: i16,
    i16_2: i16,
    i32_1: i32,
    i32_2: i32,
    i64_1: i64,
    i64_2: i64,
}

/// `wire_simple_primitive` (without the trailing QEMU_VM_EOF).
const WIRE_SIMPLE_PRIMITIVE: &str = "01 00 82 02 00 00 01 11 70 00 00 00 00 00 b8 f4 7c 41 bf \
    02 00 fe 00 00 01 11 70 ff fe ee 90 00 00 00 00 00 b8 f4 7c ff ff ff ff ff 47 0b 84";

/// QEMU's `load_vmstate` helper: the empty input, `size - 2`, both halves each fail; the
/// whole input loads.
fn load_like_qemu<T: VmState + Clone + Default + PartialEq + std::fmt::Debug>(
    wire: &str,
    version: u32,
    expected: &T,
) {
    let m = machine("pc-i440fx-7.2");
    let w = unhex(wire);
    // QEMU's sizes count the trailing EOF byte, which is not part of this payload.
    let size = w.len() + 1;
    for part in [&w[..0], &w[..size - 2 - 1], &w[..size / 2], &w[size / 2..]] {
        assert!(load_payload(&mut T::default(), part, version, &m).is_err());
    }
    let mut dst = T::default();
    load_payload(&mut dst, &w, version, &m).unwrap();
    assert_eq!(&dst, expected);
}

#[test]
fn simple_primitive() {
    let obj = TestSimple {
        b_1: true,
        b_2: false,
        u8_1: 130,
        u16_1: 512,
        u32_1: 70000,
        u64_1: 12_121_212,
        i8_1: 65,
        i8_2: -65,
        i16_1: 512,
        i16_2: -512,
        i32_1: 70000,
        i32_2: -70000,
        i64_1: 12_121_212,
        i64_2: -12_121_212,
    };
    save_exact(&obj, WIRE_SIMPLE_PRIMITIVE, &machine("pc-i440fx-7.2"));
    load_like_qemu(WIRE_SIMPLE_PRIMITIVE, 1, &obj);
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "simple/array", version = 1)]
struct TestSimpleArray {
    u16_1: [u16; 3],
}

#[test]
fn simple_array() {
    let obj = TestSimpleArray {
        u16_1: [0x42, 0x43, 0x44],
    };
    save_exact(&obj, "00 42 00 43 00 44", &machine("pc-i440fx-7.2"));
    load_like_qemu("00 42 00 43 00 44", 1, &obj);
}

/// `test/versioned`: `_V` fields keep the destination's value when absent (`keep`).
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/versioned", version = 2, minimum_version = 1)]
struct TestVersioned {
    a: u32,
    #[vmstate(since = 2, keep)]
    b: u32,
    c: u32,
    d: u64,
    #[vmstate(since = 2, keep)]
    e: u32,
    #[vmstate(since = 2, keep)]
    f: u64,
}

#[test]
fn versioned_load_v1() {
    let m = machine("pc-i440fx-7.2");
    let mut obj = TestVersioned {
        b: 200,
        e: 500,
        f: 600,
        ..TestVersioned::default()
    };
    load_payload(
        &mut obj,
        &unhex("00 00 00 0a  00 00 00 1e  00 00 00 00 00 00 00 28"),
        1,
        &m,
    )
    .unwrap();
    assert_eq!(
        obj,
        TestVersioned {
            a: 10,
            b: 200,
            c: 30,
            d: 40,
            e: 500,
            f: 600
        }
    );
}

#[test]
fn versioned_load_v2() {
    let m = machine("pc-i440fx-7.2");
    let mut obj = TestVersioned::default();
    let wire = "00 00 00 0a  00 00 00 14  00 00 00 1e  00 00 00 00 00 00 00 28  00 00 00 32  \
        00 00 00 00 00 00 00 3c";
    load_payload(&mut obj, &unhex(wire), 2, &m).unwrap();
    assert_eq!(
        obj,
        TestVersioned {
            a: 10,
            b: 20,
            c: 30,
            d: 40,
            e: 50,
            f: 60
        }
    );
}

/// `test/skip`: `c` and `e` are `VMSTATE_UINT32_TEST` fields gated on `!skip_c_e`, which is
/// the destination's (unmigrated) configuration.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "test/skip", version = 2, minimum_version = 1)]
struct TestSkipping {
    a: u32,
    b: u32,
    #[vmstate(when = pred(Self::test_skip), keep)]
    c: u32,
    d: u64,
    #[vmstate(when = pred(Self::test_skip), keep)]
    e: u32,
    #[vmstate(since = 2, keep)]
    f: u64,
    #[vmstate(skip)]
    skip_c_e: bool,
}

impl TestSkipping {
    fn test_skip(&self, _version: u32) -> bool {
        !self.skip_c_e
    }
}

fn skipping(skip_c_e: bool) -> TestSkipping {
    TestSkipping {
        a: 1,
        b: 2,
        c: 3,
        d: 4,
        e: 5,
        f: 6,
        skip_c_e,
    }
}

#[test]
fn field_exists_save_noskip() {
    save_exact(
        &skipping(false),
        "00 00 00 01  00 00 00 02  00 00 00 03  00 00 00 00 00 00 00 04  00 00 00 05  00 00 00 00 00 00 00 06",
        &machine("pc-i440fx-7.2"),
    );
}

#[test]
fn field_exists_save_skip() {
    save_exact(
        &skipping(true),
        "00 00 00 01  00 00 00 02  00 00 00 00 00 00 00 04  00 00 00 00 00 00 00 06",
        &machine("pc-i440fx-7.2"),
    );
}

#[test]
fn field_exists_load_noskip() {
    let m = machine("pc-i440fx-7.2");
    let mut obj = TestSkipping::default();
    let wire = "00 00 00 0a  00 00 00 14  00 00 00 1e  00 00 00 00 00 00 00 28  00 00 00 32  \
        00 00 00 00 00 00 00 3c";
    load_payload(&mut obj, &unhex(wire), 2, &m).unwrap();
    assert_eq!(
        obj,
        TestSkipping {
            a: 10,
            b: 20,
            c: 30,
            d: 40,
            e: 50,
            f: 60,
            skip_c_e: false
        }
    );
}

#[test]
fn field_exists_load_skip() {
    let m = machine("pc-i440fx-7.2");
    let mut obj = TestSkipping {
        skip_c_e: true,
        c: 300,
        e: 500,
        ..TestSkipping::default()
    };
    let wire = "00 00 00 0a  00 00 00 14  00 00 00 00 00 00 00 28  00 00 00 00 00 00 00 3c";
    load_payload(&mut obj, &unhex(wire), 2, &m).unwrap();
    assert_eq!(
        obj,
        TestSkipping {
            a: 10,
            b: 20,
            c: 300,
            d: 40,
            e: 500,
            f: 60,
            skip_c_e: true
        }
    );
}

/// QEMU 7.2's own bytes: the `0000:00:00.0/I440FX` section of a golden stream loads into the
/// PCIDevice-shaped struct (`le`, `vmdesc_type`) and saves back byte for byte.
#[test]
fn i440fx_section_of_a_golden_stream_round_trips() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/qemu72/idle.mig");
    let stream = std::fs::read(path).unwrap();
    let decoded = vmstate_runtime::decode_stream(&stream).unwrap();
    let section = decoded
        .sections
        .iter()
        .find(|s| s.idstr == "0000:00:00.0/I440FX")
        .expect("the golden stream has the I440FX section");
    let payload = &stream[section.payload_range.clone()];
    assert_eq!((section.version, payload.len()), (3, 277));
    let m = machine("pc-i440fx-7.2");
    let mut dev = I440fx::default();
    load_payload(&mut dev, payload, section.version, &m).unwrap();
    assert_eq!(dev.parent_obj.version_id, 2);
    assert_eq!(&dev.parent_obj.config[..4], &[0x86, 0x80, 0x37, 0x12]); // Intel 82441FX
    let (v, bytes, desc) = save_payload(&dev, &m).unwrap();
    assert_eq!((v, hex(&bytes)), (3, hex(payload)));
    assert_eq!(desc_json("0000:00:00.0/I440FX", desc), I440FX_VMDESC);
}

/// QEMU 7.2's own bytes: the eight `fpreg` elements of the golden stream's `cpu` section (each
/// written through `fpreg_tmp`) load into `Fpu` and save back byte for byte.
#[test]
fn fpregs_of_a_golden_stream_round_trip() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/golden/qemu72/rtc.mig");
    let stream = std::fs::read(path).unwrap();
    let decoded = vmstate_runtime::decode_stream(&stream).unwrap();
    let cpu = decoded
        .sections
        .iter()
        .find(|s| s.idstr == "cpu")
        .expect("the golden stream has a cpu section");
    let value = cpu.value.as_ref().expect("decoded with its vmdesc");
    let vmstate_runtime::Value::Array(regs) = value.get("env.fpregs").expect("env.fpregs") else {
        panic!("env.fpregs is not an array: {value:?}")
    };
    let mut wire = Vec::new();
    for r in regs {
        let Some(vmstate_runtime::Value::Bytes(b)) = r.get("tmp") else {
            panic!("fpreg element without its tmp bytes: {r:?}")
        };
        wire.extend_from_slice(b);
    }
    assert_eq!(wire.len(), 80);
    let m = machine("pc-i440fx-7.2");
    let mut fpu = Fpu::default();
    load_payload(&mut fpu, &wire, 1, &m).unwrap();
    let (_, bytes, _) = save_payload(&fpu, &m).unwrap();
    assert_eq!(hex(&bytes), hex(&wire));
}

/// QEMU's Fifo8 / AHCI shape: arrays counted by a local field (`local_count`), one not sent
/// (`skip`: the capacity) and one sent after the array that must equal the local value
/// (`equal`: AHCI's `ports`); a `since` that never matters (nested struct at its version).
#[derive(VmState, Clone, Debug, PartialEq)]
#[vmstate(name = "lfifo", version = 1, nested)]
struct LocalFifo {
    #[vmstate(buffer, local_count = capacity, max = 8, since = 1)]
    data: Vec<u8>,
    head: u8,
    #[vmstate(skip)]
    capacity: u32,
}

#[derive(VmState, Clone, Debug, PartialEq)]
#[vmstate(name = "local", version = 1)]
struct Local {
    fifo: LocalFifo,
    #[vmstate(local_count = ports, max = 4)]
    regs: Vec<u16>,
    #[vmstate(equal)]
    ports: i32,
}

fn local(capacity: u32, ports: i32) -> Local {
    Local {
        fifo: LocalFifo {
            data: (1..=u8::try_from(capacity).unwrap()).collect(),
            head: 7,
            capacity,
        },
        regs: (0..u16::try_from(ports).unwrap())
            .map(|i| 0x100 + i)
            .collect(),
        ports,
    }
}

#[test]
fn local_counts_come_from_the_destination() {
    let m = machine("pc-i440fx-7.2");
    let (_, bytes, desc) = save_payload(&local(3, 2), &m).unwrap();
    // data (3 bytes, no length on the wire), head, regs (2 × be16), ports.
    assert_eq!(hex(&bytes), "01 02 03 07 01 00 01 01 00 00 00 02");
    let regs = desc.fields.iter().find(|f| f.name == "regs").unwrap();
    assert_eq!(regs.ty, "uint16");
    // Loaded by a destination configured the same: the same state.
    let mut d = Local {
        fifo: LocalFifo {
            data: Vec::new(),
            head: 0,
            capacity: 3,
        },
        regs: Vec::new(),
        ports: 2,
    };
    load_payload(&mut d, &bytes, 1, &m).unwrap();
    assert_eq!(d, local(3, 2));
    // A destination configured otherwise reads another length and fails (here the stream
    // ends early, or `ports` differs), its state untouched.
    for (capacity, ports) in [(4, 2), (3, 3)] {
        let mut other = local(capacity, ports);
        let before = other.clone();
        assert!(load_payload(&mut other, &bytes, 1, &m).is_err());
        assert_eq!(other, before);
    }
    // A local count above the declared maximum is refused before anything is read or
    // allocated, naming the field.
    let mut big = local(3, 2);
    big.fifo.capacity = 9;
    let e = load_payload(&mut big, &bytes, 1, &m).unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::LengthTooLarge { len: 9, limit: 8 });
    assert_eq!(e.field_path().as_deref(), Some("fifo.data"));
    // The no-op `since` is in the schema for the dump, not as a gate.
    let f = &<LocalFifo as VmState>::SCHEMA.fields[0];
    assert_eq!((f.since, f.noop_since), (0, 1));
}

/// QEMU's VMSTATE_UINT16_HACK: a `u32` sent as be16, only in version-1 streams (QEMU's
/// `is_version_1` test, here a field predicate that receives the version).
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "hack", version = 2, minimum_version = 1)]
struct Hack {
    #[vmstate(u16_hack, rename = "off", when = pred(Self::v1), default)]
    off_v1: u32,
    #[vmstate(rename = "off", since = 2, default)]
    off: u32,
}

impl Hack {
    fn v1(&self, version: u32) -> bool {
        version == 1
    }
}

#[test]
fn u16_hack_loads_two_bytes_zero_extended_and_refuses_to_cut_on_save() {
    let m = machine("pc-i440fx-7.2");
    let mut h = Hack::default();
    load_payload(&mut h, &unhex("ab cd"), 1, &m).unwrap();
    assert_eq!(h.off_v1, 0xabcd);
    let mut h = Hack::default();
    load_payload(&mut h, &unhex("00 01 00 02"), 2, &m).unwrap();
    assert_eq!((h.off_v1, h.off), (0, 0x10002));
    assert_eq!(save_payload(&h, &m).unwrap().1, unhex("00 01 00 02"));
    // Saved at version 1 (as a VMM pinned to it would), a value above 16 bits is refused.
    #[derive(VmState, Clone, Default, Debug)]
    #[vmstate(name = "hack1", version = 1)]
    struct Hack1 {
        #[vmstate(u16_hack)]
        off: u32,
    }
    assert_eq!(
        save_payload(&Hack1 { off: 0xffff }, &m).unwrap().1,
        unhex("ff ff")
    );
    let e = save_payload(&Hack1 { off: 0x1_0000 }, &m).unwrap_err();
    assert!(e.to_string().contains("0x10000"), "{e}");
    assert_eq!(
        <Hack1 as VmState>::SCHEMA.fields[0].kind.fixed_size(),
        Some(2)
    );
}
