//! The vmdesc parser is bounded by structure, not just bytes (hostile-input.md class K): a
//! 16 MiB vmdesc (the cap, `limits::MAX_VMDESC`) of tiny JSON nodes decodes or is rejected with a
//! peak of live heap bytes below 4× its size, whatever its shape.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vmstate_runtime::{decode_stream, limits, ErrorKind};

/// Tracks live heap bytes and their peak on this thread while `ARMED` is set (tests run in
/// parallel, so everything is per thread). `realloc` counts as freeing the old size and
/// allocating the new one.
struct Counting;
thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note(delta: isize) {
    let _ = ARMED.try_with(|a| {
        if a.get() {
            let live = LIVE.with(|l| {
                l.set(l.get() + delta);
                l.get()
            });
            PEAK.with(|p| p.set(p.get().max(live)));
        }
    });
}

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        note(-(l.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(n as isize - l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result and the peak of live heap bytes it allocated on this thread.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, usize::try_from(PEAK.with(Cell::get)).unwrap_or(0))
}

/// A minimal stream: header, EOF, then the vmdesc trailer `06 · be32 len · json`.
fn stream_with(json: &[u8]) -> Vec<u8> {
    let mut s = Vec::with_capacity(json.len() + 16);
    s.extend_from_slice(b"QEVM");
    s.extend_from_slice(&3u32.to_be_bytes());
    s.push(0x00);
    s.push(0x06);
    s.extend_from_slice(&u32::try_from(json.len()).unwrap().to_be_bytes());
    s.extend_from_slice(json);
    s
}

const CAP: usize = limits::MAX_VMDESC as usize;

/// `head`, then `item` repeated (comma-separated) while the result stays within the cap, then
/// `tail`.
fn fill(head: &str, item: &str, tail: &str) -> Vec<u8> {
    let room = CAP - head.len() - tail.len();
    let n = (room + 1) / (item.len() + 1);
    let mut j = Vec::with_capacity(CAP);
    j.extend_from_slice(head.as_bytes());
    for i in 0..n {
        if i > 0 {
            j.push(b',');
        }
        j.extend_from_slice(item.as_bytes());
    }
    j.extend_from_slice(tail.as_bytes());
    assert!(j.len() <= CAP && j.len() > CAP - item.len() - 1);
    j
}

/// A 16 MiB string body: `"` + `n` bytes of `unit` repeated + `"`.
fn long_string(head: &str, unit: &str, tail: &str) -> Vec<u8> {
    let room = CAP - head.len() - tail.len() - 2;
    let mut j = Vec::with_capacity(CAP);
    j.extend_from_slice(head.as_bytes());
    j.push(b'"');
    for _ in 0..room / unit.len() {
        j.extend_from_slice(unit.as_bytes());
    }
    j.push(b'"');
    j.extend_from_slice(tail.as_bytes());
    j
}

fn deep(head: &str, open: &str, middle: &str, close: &str, tail: &str) -> Vec<u8> {
    let n = (CAP - head.len() - middle.len() - tail.len()) / (open.len() + close.len());
    let mut j = Vec::with_capacity(CAP);
    j.extend_from_slice(head.as_bytes());
    for _ in 0..n {
        j.extend_from_slice(open.as_bytes());
    }
    j.extend_from_slice(middle.as_bytes());
    for _ in 0..n {
        j.extend_from_slice(close.as_bytes());
    }
    j.extend_from_slice(tail.as_bytes());
    j
}

const FIELD: &str = r#"{"name":"","type":"","size":0}"#;
/// A field entry as QEMU writes it (its separators, a short name).
const QEMU_FIELD: &str = r#"{"name": "irr", "type": "uint8", "size": 1}"#;
const QEMU_DEVICE_HEAD: &str =
    r#"{"name": "pic", "instance_id": 0, "vmsd_name": "i8259", "version": 1, "fields": ["#;
const DEVICE_HEAD: &str = r#"{"name":"d","instance_id":0,"vmsd_name":"d","version":1,"fields":["#;

/// 1024 devices of QEMU-formatted fields.
fn qemu_devices() -> Vec<u8> {
    let per = CAP / 1024 - QEMU_DEVICE_HEAD.len() - 8;
    let mut dev = String::from(QEMU_DEVICE_HEAD);
    for i in 0..per / (QEMU_FIELD.len() + 2) {
        if i > 0 {
            dev.push_str(", ");
        }
        dev.push_str(QEMU_FIELD);
    }
    dev.push_str("]}");
    fill(r#"{"page_size": 4096, "devices": ["#, &dev, "]}")
}

/// 4096 devices of tiny fields each.
fn many_devices() -> Vec<u8> {
    let per = CAP / 4096 - DEVICE_HEAD.len() - 8;
    let fields = per / (FIELD.len() + 1);
    let mut dev = String::from(DEVICE_HEAD);
    for i in 0..fields {
        if i > 0 {
            dev.push(',');
        }
        dev.push_str(FIELD);
    }
    dev.push_str("]}");
    fill(r#"{"page_size":4096,"devices":["#, &dev, "]}")
}

/// One test per adversarial shape: `test_name: "description" => json;` (a description starting
/// with `ACCEPT` must decode). Each builds its own 16 MiB input, so they run in parallel.
macro_rules! shapes {
    ($($test:ident: $name:literal => $json:expr;)*) => {
        $(
            #[test]
            fn $test() {
                check_shape($name, &$json);
            }
        )*
    };
}

shapes! {
    dense_qemu_formatted_devices_are_accepted: "ACCEPT dense QEMU-formatted devices" => qemu_devices();
    dense_qemu_formatted_fields_in_one_device_are_accepted: "ACCEPT dense QEMU-formatted fields in one device" => fill(
        &format!("{{\"devices\": [{QEMU_DEVICE_HEAD}"),
        QEMU_FIELD,
        "]}]}",
    );
    empty_objects_as_devices: "empty objects as devices" => fill(r#"{"page_size":4096,"devices":["#, "{}", "]}");
    empty_objects_in_configuration: "empty objects in configuration" => fill(r#"{"configuration":["#, "{}", r#"],"devices":[]}"#);
    empty_objects_in_a_legacy_device: "empty objects in a legacy device" => fill(
        r#"{"devices":[{"name":"x","instance_id":0,"size":0,"blob":["#,
        "{}",
        "]}]}",
    );
    empty_arrays_under_an_unknown_key: "empty arrays under an unknown key" => fill(r#"{"junk":["#, "[]", r#"],"devices":[]}"#);
    minimal_legacy_devices: "minimal legacy devices" => fill(
        r#"{"devices":["#,
        r#"{"name":"","instance_id":0,"size":0}"#,
        "]}",
    );
    minimal_vmsd_devices: "minimal vmsd devices" => fill(
        r#"{"devices":["#,
        r#"{"name":"","instance_id":0,"vmsd_name":"","version":0}"#,
        "]}",
    );
    tiny_fields_in_one_device: "tiny fields in one device" => fill(&format!("{{\"devices\":[{DEVICE_HEAD}"), FIELD, "]}]}");
    many_devices_with_many_fields: "many devices with many fields" => many_devices();
    numbers_in_configuration: "numbers in configuration" => fill(r#"{"configuration":["#, "0", r#"],"devices":[]}"#);
    numbers_as_fields: "numbers as fields" => fill(&format!("{{\"devices\":[{DEVICE_HEAD}"), "0", "]}]}");
    deep_arrays_in_configuration: "deep arrays in configuration" => deep(r#"{"configuration":"#, "[", "", "]", r#","devices":[]}"#);
    deep_objects_in_configuration: "deep objects in configuration" => deep(
        r#"{"configuration":"#,
        r#"{"a":"#,
        "0",
        "}",
        r#","devices":[]}"#,
    );
    deep_nested_structs: "deep nested structs" => deep(
        r#"{"devices":[{"name":"d","instance_id":0,"vmsd_name":"d","version":1,"fields":["#,
        r#"{"name":"f","type":"struct","size":0,"struct":{"vmsd_name":"s","version":1,"fields":["#,
        "",
        "]}}",
        "]}]}",
    );
    long_string_in_configuration: "long string in configuration" => long_string(r#"{"configuration":"#, "a", r#","devices":[]}"#);
    long_escaped_string_in_configuration: "long escaped string in configuration" => long_string(r#"{"configuration":"#, r"\u0041", r#","devices":[]}"#);
    long_field_name: "long field name" => long_string(
        r#"{"devices":[{"name":"d","instance_id":0,"vmsd_name":"d","version":1,"fields":[{"type":"uint8","size":1,"name":"#,
        "a",
        "}]}]}",
    );
    long_escaped_device_name: "long escaped device name" => long_string(
        r#"{"devices":[{"instance_id":0,"vmsd_name":"d","version":1,"name":"#,
        r"\n",
        "}]}",
    );
}

/// Decodes the shape `json` in a stream and checks the peak of live heap bytes: below 4× the
/// input, and only the vmdesc error when rejected.
fn check_shape(name: &str, json: &[u8]) {
    let stream = stream_with(json);
    let (result, peak) = peak_of(|| decode_stream(&stream).map(|_| ()));
    let ratio = peak as f64 / json.len() as f64;
    let outcome = match &result {
        Ok(()) => "accepted".to_owned(),
        Err(e) => {
            assert!(
                matches!(e.kind(), ErrorKind::BadVmdesc { .. }),
                "{name}: {e}"
            );
            e.to_string().chars().take(160).collect()
        }
    };
    eprintln!(
        "{name:40} {:>9} bytes  peak {peak:>10} ({ratio:.2}x)  {outcome}",
        json.len()
    );
    if name.starts_with("ACCEPT") {
        assert!(result.is_ok(), "{name}: rejected");
    }
    assert!(
        peak < 4 * json.len(),
        "{name}: peak {peak} is {ratio:.2}x the input"
    );
}
