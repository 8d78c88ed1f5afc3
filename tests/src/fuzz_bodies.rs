//! The fuzz bodies: plain functions from bytes to nothing that panic when an oracle fails.
//!
//! The cargo-fuzz crate in `fuzz/` (nightly, libFuzzer) calls them from its targets, and the
//! stable test `tests/tests/fuzz_corpus.rs` replays every committed corpus file through them, so
//! CI exercises the same code without nightly (hostile-input.md §4.4).
//!
//! | target | what it feeds | oracles |
//! |---|---|---|
//! | [`load_machine`] | a whole stream into the example machine ([`DemoMachine`]) with `Registry::load` | no panic; an error leaves every device unchanged; an accepted stream's state saves, and that save loads back to the same state |
//! | [`decode_stream`] | the generic decoder, then `value_to_json`/`stream_to_json` | no panic |
//! | [`ram`] | a migration stream into a small guest memory through `vmstate_migration::receive` | no panic; an error leaves the devices unchanged and the destination not started |
//! | [`vmdesc`] | the vmdesc JSON parser and writer | no panic; what parses prints back to text that parses to the same thing |
//! | [`field_kinds`] | one section payload into [`kinds::Kinds`] (arrays of pointers, a QTAILQ, GTREEs with struct and direct keys, a tree inside a tree's values, an `le` field, a `Tmp` view, a bitmap, a multiplied buffer, a `vstruct`, a `with` codec) with `load_payload`; the same payload into [`kinds::LocalKinds`] (counts from local fields, `u16_hack`) at versions 1 and 2 | no panic; an accepted payload's state saves, and that save loads back to the same state (for `LocalKinds`: exactly the local counts of elements, a failed load leaves the state unchanged, a save loads and saves the same bytes) |

use std::io::{self, Cursor, Read, Write};
use std::sync::OnceLock;
use std::time::Duration;
use vmstate_migration::VmParts;

use examples_devices::machine::DemoMachine;
use vmstate_migration::{
    receive, GuestRam, MigrationDestination, MigrationSource, ReceiveSettings, Transport,
};
use vmstate_runtime::decode::{stream_to_json, value_to_json};
use vmstate_runtime::vmdesc::{parse_vmdesc, write_json};
use vmstate_runtime::{MachineCatalog, MachineType, Registry};

/// A fuzz body.
pub type Body = fn(&[u8]);

/// Every target, by the name of its corpus directory (`fuzz/corpus/<name>`).
pub const TARGETS: &[(&str, Body)] = &[
    ("load_machine", load_machine),
    ("decode_stream", decode_stream),
    ("ram", ram),
    ("vmdesc", vmdesc),
    ("field_kinds", field_kinds),
];

fn catalog() -> &'static MachineCatalog {
    static CATALOG: OnceLock<MachineCatalog> = OnceLock::new();
    CATALOG.get_or_init(examples_devices::catalog)
}

/// The machine type a stream is for: the one its configuration section names
/// (`07 · be32 len · name` right after the header) when the catalog knows it, else
/// pc-i440fx-2.2 (the newest type without a configuration section).
#[must_use]
pub fn machine_for(data: &[u8]) -> MachineType {
    let named = (data.get(8) == Some(&0x07))
        .then(|| data.get(9..13))
        .flatten()
        .and_then(|l| {
            let n = usize::try_from(u32::from_be_bytes([l[0], l[1], l[2], l[3]])).ok()?;
            data.get(13..13usize.checked_add(n)?)
        })
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|name| catalog().resolve(name).ok());
    named.unwrap_or_else(|| {
        catalog()
            .resolve("pc-i440fx-2.2")
            .expect("the catalog has pc-i440fx-2.2")
    })
}

/// The example machine after its guest program (every device in a non-reset state).
fn busy_machine(m: &MachineType) -> DemoMachine {
    let machine = DemoMachine::new(m).expect("the demo machine builds");
    machine.run_guest_program();
    machine
}

type Payloads = Vec<(&'static str, Vec<u8>)>;

fn payloads(machine: &DemoMachine) -> Payloads {
    machine.payloads().expect("the example devices always save")
}

/// A whole stream into the example machine: all or nothing, and a round trip when accepted.
///
/// # Panics
/// When an oracle fails (see the module docs).
pub fn load_machine(data: &[u8]) {
    let m = machine_for(data);
    let machine = busy_machine(&m);
    let before = payloads(&machine);
    match machine.registry().load(&m, data) {
        Err(e) => {
            let _ = e.to_string();
            assert!(
                payloads(&machine) == before,
                "a failed load changed device state: {e}"
            );
        }
        Ok(_) => {
            let loaded = payloads(&machine);
            let (again, _) = machine
                .save()
                .unwrap_or_else(|e| panic!("an accepted state does not save: {e}"));
            let other = busy_machine(&m);
            other
                .registry()
                .load(&m, &again)
                .unwrap_or_else(|e| panic!("the save of an accepted state does not load: {e}"));
            assert!(
                payloads(&other) == loaded,
                "load(save(load(x))) differs from load(x)"
            );
        }
    }
}

/// The generic decoder, and the JSON views of what it accepts.
///
/// # Panics
/// Only if the decoder or the printers panic.
pub fn decode_stream(data: &[u8]) {
    match vmstate_runtime::decode_stream(data) {
        Ok(d) => {
            for s in &d.sections {
                if let Some(v) = &s.value {
                    let _ = value_to_json(v);
                }
            }
            let _ = stream_to_json(&d);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The vmdesc parser; what it accepts prints back to text that parses to the same value.
///
/// # Panics
/// When the round trip fails.
pub fn vmdesc(data: &[u8]) {
    let Ok(v) = parse_vmdesc(data) else {
        return;
    };
    let text = write_json(&v);
    let again = parse_vmdesc(text.as_bytes())
        .unwrap_or_else(|e| panic!("write_json output does not parse: {e}\n{text}"));
    assert!(again == v, "write_json does not round-trip:\n{text}");
}

/// The guest memory layout of the RAM target's destination (and of its seed streams):
/// `(name, guest address, length)`.
pub const RAM_LAYOUT: &[(&str, u64, usize)] = &[
    ("pc.ram", 0, 256 << 10),
    ("pc.rom", 0xc000_0000, 64 << 10),
    ("pc.bios", 0xfff0_0000, 64 << 10),
];

/// The machine type of the RAM target.
#[must_use]
pub fn ram_machine() -> MachineType {
    catalog()
        .resolve("pc-i440fx-7.2")
        .expect("the catalog has pc-i440fx-7.2")
}

/// An in-memory, file-like [`Transport`]: reads `input`, collects what is written, no return
/// path. Like a socket, a read returns only part of what was asked (sizes from [`READ_SIZES`] in
/// turn, spread over a vectored read's slices), so a receive meets reads that end anywhere: in a
/// record header, a page, the RAM loader's read-ahead.
pub struct MemTransport {
    /// What the peer sent.
    pub input: Cursor<Vec<u8>>,
    /// What was written.
    pub output: Vec<u8>,
    reads: usize,
}

/// The most bytes successive reads of a [`MemTransport`] return, in turn.
pub const READ_SIZES: [usize; 7] = [65_536, 4_103, 1, 9_000, 37, 300_000, 4_096];

impl MemTransport {
    /// A transport that reads `data`.
    #[must_use]
    pub fn new(data: &[u8]) -> Self {
        MemTransport {
            input: Cursor::new(data.to_vec()),
            output: Vec::new(),
            reads: 0,
        }
    }
}

impl Read for MemTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_vectored(&mut [io::IoSliceMut::new(buf)])
    }

    fn read_vectored(&mut self, bufs: &mut [io::IoSliceMut<'_>]) -> io::Result<usize> {
        let mut left = READ_SIZES[self.reads % READ_SIZES.len()];
        self.reads += 1;
        let mut n = 0;
        for b in bufs {
            let want = b.len().min(left);
            let k = self.input.read(&mut b[..want])?;
            n += k;
            left -= k;
            if k < want || left == 0 {
                break;
            }
        }
        Ok(n)
    }
}

impl Write for MemTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemTransport {
    fn finish_stream(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn set_timeout(&mut self, _timeout: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn has_return_path(&self) -> bool {
        false
    }
}

/// The RAM target's VM: the example machine and [`RAM_LAYOUT`]. The `ram` body receives into
/// one; the RAM seeds of the corpus are migrated from one.
pub struct RamVm {
    /// Devices.
    pub machine: DemoMachine,
    /// Guest memory.
    pub ram: GuestRam,
    /// Whether `resume` was called.
    pub resumed: bool,
}

impl RamVm {
    /// A destination with busy devices and zeroed memory.
    ///
    /// # Panics
    /// If the memory cannot be mapped.
    #[must_use]
    pub fn new() -> Self {
        RamVm {
            machine: busy_machine(&ram_machine()),
            ram: GuestRam::new(RAM_LAYOUT).expect("guest memory maps"),
            resumed: false,
        }
    }
}

impl Default for RamVm {
    fn default() -> Self {
        RamVm::new()
    }
}

impl VmParts for RamVm {
    fn ram(&self) -> &GuestRam {
        &self.ram
    }
    fn registry(&self) -> &Registry {
        self.machine.registry()
    }
    fn machine(&self) -> &MachineType {
        self.machine.machine()
    }
}

impl MigrationDestination for RamVm {
    fn resume(&mut self) {
        self.resumed = true;
    }
}

impl MigrationSource for RamVm {
    fn stop_vcpus(&mut self) {}
    fn resume_vcpus(&mut self) {}
}

/// A migration stream (RAM sections, then devices) into a [`RamVm`] through `receive`.
///
/// # Panics
/// When a failed migration changed device state or started the destination.
pub fn ram(data: &[u8]) {
    let mut dest = RamVm::new();
    let before = payloads(&dest.machine);
    let mut t = MemTransport::new(data);
    let settings = ReceiveSettings {
        read_timeout: None,
        ..ReceiveSettings::default()
    };
    match receive(&mut dest, &mut t, &settings) {
        Ok(_) => assert!(dest.resumed, "an accepted migration did not start"),
        Err(e) => {
            let _ = e.to_string();
            assert!(!dest.resumed, "a failed migration started: {e}");
            assert!(
                payloads(&dest.machine) == before,
                "a failed migration changed device state: {e}"
            );
        }
    }
}

/// The device of the [`field_kinds`] target: every variable field kind QEMU 7.2 can migrate,
/// with small maxima so the fuzzer reaches them.
pub mod kinds {
    use std::collections::{BTreeMap, VecDeque};

    use vmstate_runtime::{Tmp, TmpView, VmState};

    /// A list element with a subsection.
    #[derive(VmState, Clone, Default, Debug, PartialEq, Eq, PartialOrd, Ord)]
    #[vmstate(
        name = "elem",
        version = 1,
        nested,
        subsection(name = "elem/extra", version = 1)
    )]
    pub struct Elem {
        /// A flag.
        pub b: bool,
        /// A byte.
        pub u8: u8,
        /// Only in the subsection.
        #[vmstate(subsection = "elem/extra", default)]
        pub extra: u16,
    }

    /// A tree key.
    #[derive(VmState, Clone, Default, Debug, PartialEq, Eq, PartialOrd, Ord)]
    #[vmstate(name = "interval", version = 1, nested)]
    pub struct Interval {
        /// Low end.
        pub low: u64,
        /// High end.
        pub high: u64,
    }

    /// A tree value.
    #[derive(VmState, Clone, Default, Debug, PartialEq)]
    #[vmstate(name = "mapping", version = 1, nested)]
    pub struct Mapping {
        /// Address.
        pub addr: u64,
        /// Flags.
        pub flags: u32,
    }

    /// A tree value holding a tree.
    #[derive(VmState, Clone, Default, Debug, PartialEq)]
    #[vmstate(name = "domain", version = 1, nested)]
    pub struct Domain {
        /// Id.
        pub id: i32,
        /// Its own tree.
        #[vmstate(tree, max = 4)]
        pub mappings: BTreeMap<Interval, Mapping>,
    }

    /// The section.
    #[derive(VmState, Clone, Default, Debug, PartialEq)]
    #[vmstate(name = "kinds", version = 1)]
    pub struct Kinds {
        /// Primitive pointers.
        pub irqs: [Option<u32>; 3],
        /// Struct pointers.
        pub elems: [Option<Box<Elem>>; 2],
        /// A QTAILQ.
        #[vmstate(list, max = 6)]
        pub queue: VecDeque<Elem>,
        /// A QLIST.
        #[vmstate(list = "qlist", max = 3)]
        pub qlist: Vec<Mapping>,
        /// A GTREE with direct keys whose values hold trees.
        #[vmstate(tree, max = 4)]
        pub domains: BTreeMap<u64, Domain>,
        /// A trailing field.
        pub tail: u16,
        /// `VMSTATE_INT32_POSITIVE_LE`: at most the destination's value (100).
        #[vmstate(le)]
        pub level: i32,
        /// `VMSTATE_WITH_TMP`: the view of `hidden`.
        pub tmp: Tmp<View>,
        /// Migrated only through `tmp`.
        #[vmstate(skip)]
        pub hidden: u32,
        /// Bit count of `bits`.
        pub nbits: i32,
        /// `VMSTATE_BITMAP`.
        #[vmstate(bitmap = nbits, max = 130)]
        pub bits: Vec<u64>,
        /// Unit count of `data`.
        pub units: u8,
        /// `VMSTATE_VBUFFER_MULTIPLY`.
        #[vmstate(buffer, count = units, multiply = 3, max = 9)]
        pub data: Vec<u8>,
        /// `VMSTATE_VSTRUCT` at version 1 of a version-2 struct.
        #[vmstate(vstruct = 1)]
        pub old_regs: Regs,
        /// A custom codec (`with`): a be16 that must be even.
        #[vmstate(with = even16)]
        pub even: u16,
    }

    /// The temporary view of [`Kinds::hidden`]: refuses values above 1000 on load.
    #[derive(VmState, Clone, Default, Debug, PartialEq)]
    #[vmstate(name = "kinds_tmp", version = 0, nested)]
    pub struct View {
        /// `hidden`.
        pub value: u16,
    }

    impl TmpView<Kinds> for View {
        type Error = String;
        fn save_view(k: &Kinds) -> Result<Self, String> {
            u16::try_from(k.hidden)
                .map(|value| View { value })
                .map_err(|_| format!("hidden {} does not fit u16", k.hidden))
        }
        fn load_view(self, k: &mut Kinds) -> Result<(), String> {
            if self.value > 1000 {
                return Err(format!("value {} above 1000", self.value));
            }
            k.hidden = u32::from(self.value);
            Ok(())
        }
    }

    /// A struct with a field of version 2, held at version 1 by `vstruct`.
    #[derive(VmState, Clone, Default, Debug, PartialEq)]
    #[vmstate(name = "regs", version = 2, minimum_version = 1, nested)]
    pub struct Regs {
        /// Always.
        pub a: u16,
        /// Version 2 only.
        #[vmstate(since = 2, default)]
        pub b: u8,
    }

    /// A custom codec: a be16 that must be even.
    pub mod even16 {
        use vmstate_runtime::field::CodecDescription;
        use vmstate_runtime::schema::Kind;
        use vmstate_runtime::{Error, ErrorKind, Reader, Writer};

        /// The description.
        pub const DESCRIPTION: CodecDescription = CodecDescription {
            vmdesc_type: "even16",
            size: Some(2),
            layout: Kind::U16,
        };

        /// Writes the value.
        ///
        /// # Errors
        /// Writer errors.
        pub fn save<W: Writer + ?Sized>(v: &u16, w: &mut W) -> vmstate_runtime::Result<()> {
            w.write_be16(*v)
        }

        /// Reads an even value.
        ///
        /// # Errors
        /// End of input; an odd value.
        pub fn load<R: Reader + ?Sized>(v: &mut u16, r: &mut R) -> vmstate_runtime::Result<()> {
            let pos = r.position();
            let x = r.read_be16()?;
            if x % 2 != 0 {
                return Err(Error::new(
                    ErrorKind::InvalidValue {
                        expected: "an even value".into(),
                        found: i128::from(x),
                    },
                    pos,
                ));
            }
            *v = x;
            Ok(())
        }
    }

    /// Counts that are configuration and a `u32` sent as be16: a buffer and an array counted
    /// by local fields (`local_count`: one `skip`, one `equal` sent after the array), QEMU's
    /// `VMSTATE_UINT16_HACK` in version-1 streams only, and a `since` that always holds.
    #[derive(VmState, Clone, Debug, PartialEq, Eq)]
    #[vmstate(name = "kinds-local", version = 2, minimum_version = 1)]
    pub struct LocalKinds {
        /// Version 1's 16-bit offset.
        #[vmstate(u16_hack, when = pred(Self::is_version_1), default)]
        pub off_v1: u32,
        /// The 32-bit offset.
        #[vmstate(since = 2, default)]
        pub off: u32,
        /// `capacity` bytes.
        #[vmstate(buffer, local_count = capacity, max = 16, since = 1)]
        pub data: Vec<u8>,
        /// `ports` registers.
        #[vmstate(local_count = ports, max = 8)]
        pub regs: Vec<u16>,
        /// Must equal the destination's.
        #[vmstate(equal)]
        pub ports: i32,
        /// Configuration: never sent.
        #[vmstate(skip)]
        pub capacity: u32,
    }

    impl LocalKinds {
        fn is_version_1(&self, version: u32) -> bool {
            version == 1
        }

        /// The destination: a 5-byte buffer, 3 registers.
        #[must_use]
        pub fn destination() -> Self {
            LocalKinds {
                off_v1: 0,
                off: 0,
                data: Vec::new(),
                regs: Vec::new(),
                ports: 3,
                capacity: 5,
            }
        }
    }

    /// The destination's shape: slot 1 of each pointer array is NULL.
    #[must_use]
    pub fn destination() -> Kinds {
        Kinds {
            irqs: [Some(0), None, Some(0)],
            elems: [Some(Box::default()), None],
            level: 100,
            ..Kinds::default()
        }
    }

    /// A busy source with the destination's shape.
    #[must_use]
    pub fn busy() -> Kinds {
        let m = |a, f| Mapping { addr: a, flags: f };
        let i = |l, h| Interval { low: l, high: h };
        let e = |b, u, x| Elem { b, u8: u, extra: x };
        Kinds {
            irqs: [Some(7), None, Some(9)],
            elems: [Some(Box::new(e(true, 3, 0x55aa))), None],
            queue: [e(true, 1, 0), e(false, 2, 0x102)].into(),
            qlist: vec![m(0x1000, 1)],
            domains: [
                (
                    5,
                    Domain {
                        id: 5,
                        mappings: [(i(0x100, 0x1ff), m(0xa000, 3))].into(),
                    },
                ),
                (
                    6,
                    Domain {
                        id: 6,
                        mappings: BTreeMap::new(),
                    },
                ),
            ]
            .into(),
            tail: 0xbeef,
            level: 42,
            tmp: Tmp::new(),
            hidden: 999,
            nbits: 70,
            bits: vec![0x8000_0000_0000_0001, 0x3f],
            units: 2,
            data: vec![1, 2, 3, 4, 5, 6],
            old_regs: Regs { a: 0x1234, b: 0 },
            even: 0xfffe,
        }
    }
}

/// One payload into [`kinds::Kinds`]: all or nothing, and a round trip when accepted.
///
/// # Panics
/// When an oracle fails (see the module docs).
pub fn field_kinds(data: &[u8]) {
    use vmstate_runtime::{load_payload, save_payload};
    let m = catalog()
        .resolve("pc-i440fx-7.2")
        .expect("the catalog has pc-i440fx-7.2");
    local_kinds(data, &m);
    let mut dev = kinds::destination();
    // Version 1 is the only one the device accepts; the payload is the fuzzed bytes.
    if load_payload(&mut dev, data, 1, &m).is_err() {
        return;
    }
    let (v, bytes, _) = save_payload(&dev, &m).expect("an accepted state saves");
    let mut again = kinds::destination();
    load_payload(&mut again, &bytes, v, &m).expect("a saved state loads");
    assert_eq!(again, dev, "save/load does not round-trip");
}

/// The same payload into [`kinds::LocalKinds`] at version 1 and 2: all or nothing, never more
/// elements than the local counts, and a saved state loads and saves the same bytes.
fn local_kinds(data: &[u8], m: &vmstate_runtime::MachineType) {
    use vmstate_runtime::{load_payload, save_payload};
    for version in [1, 2] {
        let mut dev = kinds::LocalKinds::destination();
        let before = dev.clone();
        if load_payload(&mut dev, data, version, m).is_err() {
            assert_eq!(dev, before, "a failed load changed the state");
            continue;
        }
        assert_eq!((dev.data.len(), dev.regs.len()), (5, 3));
        let (v, bytes, _) = save_payload(&dev, m).expect("an accepted state saves");
        let mut again = kinds::LocalKinds::destination();
        load_payload(&mut again, &bytes, v, m).expect("a saved state loads");
        assert_eq!(
            save_payload(&again, m).expect("saves").1,
            bytes,
            "not stable"
        );
    }
}
