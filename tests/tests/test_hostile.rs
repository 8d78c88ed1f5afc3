//! Hostile payloads (hostile-input.md classes A, B, D, K): counts, lengths and indices from the
//! stream are checked before use, nothing panics, nothing allocates beyond declared maxima, and
//! a failed load leaves the state untouched.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use vmstate_runtime::machine::MachineCatalog;
use vmstate_runtime::{load_payload, save_payload, ErrorKind, VmState};

/// Counts the largest single allocation made on this thread while `ARMED` is set (tests run
/// in parallel, so both are per thread).
struct Counting;
thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if ARMED.with(Cell::get) {
        LARGEST.with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: forwards to the system allocator unchanged; only records sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note(l.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note(n);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "hostile", version = 1, validate = Self::check)]
struct Hostile {
    /// A signed count (CVE-2013-4148 class): negative must not pass.
    count: i32,
    #[vmstate(count = count, max = 64)]
    entries: Vec<u64>,
    len: u32,
    #[vmstate(buffer, count = len, max = 256)]
    blob: Vec<u8>,
    /// An index used later by emulation (class C): checked at load.
    #[vmstate(range = 0..16)]
    index: u8,
    head: u8,
    num: u8,
}

impl Hostile {
    /// Cross-field invariant (class B): head + num within the 16-entry ring.
    fn check(&self) -> Result<(), String> {
        if u32::from(self.head) + u32::from(self.num) > 16 {
            return Err(format!(
                "head {} + num {} exceed the 16-entry ring",
                self.head, self.num
            ));
        }
        Ok(())
    }
}

fn payload(count: i32, entries: usize, len: u32, blob: usize, tail: [u8; 3]) -> Vec<u8> {
    let mut p = count.to_be_bytes().to_vec();
    p.extend(std::iter::repeat_n(0x11u8, entries * 8));
    p.extend_from_slice(&len.to_be_bytes());
    p.extend(std::iter::repeat_n(0x22u8, blob));
    p.extend_from_slice(&tail);
    p
}

fn load(p: &[u8]) -> (Result<(), vmstate_runtime::Error>, usize, Hostile) {
    let m = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
    let mut h = Hostile::default();
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let r = load_payload(&mut h, p, 1, &m);
    ARMED.with(|a| a.set(false));
    (r, LARGEST.with(Cell::get), h)
}

#[test]
fn valid_payload_round_trips() {
    let m = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
    let h = Hostile {
        count: 2,
        entries: vec![1, 2],
        len: 3,
        blob: vec![4, 5, 6],
        index: 15,
        head: 8,
        num: 8,
    };
    let (_, bytes, _) = save_payload(&h, &m).unwrap();
    let (r, _, back) = load(&bytes);
    r.unwrap();
    assert_eq!(back, h);
}

#[test]
fn counts_at_and_beyond_the_maximum() {
    // Boundary: exactly max loads; max + 1, u32::MAX and negative fail before any element.
    let (r, _, _) = load(&payload(64, 64, 0, 0, [0, 0, 0]));
    r.unwrap();
    for bad in [65, i32::MAX, -1, i32::MIN] {
        let (r, largest, h) = load(&payload(bad, 0, 0, 0, [0, 0, 0]));
        let e = r.unwrap_err();
        assert_eq!(e.field_path().as_deref(), Some("entries"), "{bad}: {e}");
        assert_eq!(e.offset(), Some(4));
        match e.kind() {
            ErrorKind::LengthTooLarge { limit: 64, .. } => assert!(bad > 0),
            ErrorKind::InvalidValue { .. } => assert!(bad < 0),
            k => panic!("{bad}: unexpected {k:?}"),
        }
        assert!(largest < 4096, "{bad}: allocated {largest} bytes");
        assert_eq!(h, Hostile::default(), "state untouched");
    }
}

#[test]
fn buffer_lengths_beyond_the_maximum() {
    let (r, _, _) = load(&payload(0, 0, 256, 256, [0, 0, 0]));
    r.unwrap();
    for bad in [257u32, u32::MAX] {
        let (r, largest, _) = load(&payload(0, 0, bad, 0, [0, 0, 0]));
        let e = r.unwrap_err();
        assert_eq!(
            e.kind(),
            &ErrorKind::LengthTooLarge {
                len: u64::from(bad),
                limit: 256
            }
        );
        assert_eq!(e.field_path().as_deref(), Some("blob"));
        assert!(largest < 4096, "allocated {largest}");
    }
}

#[test]
fn ranges_and_invariants_at_the_boundary() {
    // index: 15 ok, 16 fails (half-open range 0..16).
    let (r, _, _) = load(&payload(0, 0, 0, 0, [15, 0, 0]));
    r.unwrap();
    let (r, _, _) = load(&payload(0, 0, 0, 0, [16, 0, 0]));
    let e = r.unwrap_err();
    assert_eq!(
        e.to_string(),
        "at byte 0x8, field `index`: invalid value 16: expected a value in 0..16"
    );
    // head + num: 16 ok, 17 fails with the validator's message.
    let (r, _, _) = load(&payload(0, 0, 0, 0, [0, 10, 6]));
    r.unwrap();
    let (r, _, h) = load(&payload(0, 0, 0, 0, [0, 10, 7]));
    let e = r.unwrap_err();
    assert!(
        e.to_string().ends_with(
            "validation failed: validate Self::check: head 10 + num 7 exceed the 16-entry ring"
        ),
        "{e}"
    );
    assert_eq!(h, Hostile::default());
}

#[test]
fn random_payloads_never_panic() {
    // A fixed-seed batch of mutated payloads (the fuzz body, on the stable toolchain).
    let m = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
    let seed = payload(3, 3, 5, 5, [1, 2, 3]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..20_000 {
        let mut p = seed.clone();
        let n = (next() % 4) as usize + 1;
        for _ in 0..n {
            match next() % 3 {
                0 if !p.is_empty() => {
                    let i = (next() as usize) % p.len();
                    p[i] = next() as u8;
                }
                1 => p.truncate((next() as usize) % (p.len() + 1)),
                _ => p.push(next() as u8),
            }
        }
        let mut h = Hostile::default();
        if load_payload(&mut h, &p, 1, &m).is_err() {
            assert_eq!(h, Hostile::default());
        }
    }
}
