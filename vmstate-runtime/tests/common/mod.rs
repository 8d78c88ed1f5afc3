//! Hand-written `VmState` devices for the registry, framing and decode tests (the derive is
//! developed separately; these follow the same protocol as its generated code: the caller opens
//! the top-level vmdesc struct, `save_state` reports fields and subsections, nested structs open
//! their own struct in `save_field`). Each device lists its fields once, as a [`Device`] whose
//! `fields` serve both the save and the load [`Pass`]; the UART, with hooks and a subsection,
//! writes its `VmState` impl out in full.

#![allow(dead_code)]

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use vmstate_runtime::__private::{
    check_version, duplicate_subsection, load_buffer, next_subsection, save_buffer,
    write_subsection_header, Field, FieldSchema, Kind, Location, Pin, StructSchema,
    SubsectionSchema,
};

use vmstate_runtime::machine::Framing;
use vmstate_runtime::schema::{MachineVersion, SchemaRef};
use vmstate_runtime::{
    Error, ErrorKind, GateCtx, LoadCx, MachineCatalog, MachineType, Reader, RegisterOptions,
    Registry, Result, SaveCx, Timer, Unused, VmState, Writer,
};

/// Framing for hand-built streams (the `StreamWriter` methods the tests use do not depend on it).
pub const ALL_FRAMING: Framing = Framing {
    configuration: true,
    footers: true,
    vmdesc: true,
};

const LOC: Location = Location {
    file: Cow::Borrowed(file!()),
    line: 0,
    column: 0,
};

const fn field(name: &'static str, kind: &'static Kind, since: u32) -> FieldSchema {
    FieldSchema {
        name: Cow::Borrowed(name),
        vmdesc_name: Cow::Borrowed(name),
        rust_name: Cow::Borrowed(name),
        kind: SchemaRef::Static(kind),
        since,
        noop_since: 0,
        gate: None,
        equal: false,
        range: None,
        le: false,
        vmdesc_type: None,
        default: if since > 0 {
            Some(Cow::Borrowed("0"))
        } else {
            None
        },
        location: LOC,
    }
}

#[allow(clippy::too_many_arguments)]
const fn schema(
    name: &'static str,
    version: u32,
    min_version: u32,
    nested: bool,
    priority: i32,
    pins: &'static [Pin],
    fields: &'static [FieldSchema],
    subsections: &'static [SubsectionSchema],
) -> StructSchema {
    StructSchema {
        name: Cow::Borrowed(name),
        rust_name: Cow::Borrowed(name),
        krate: Cow::Borrowed("vmstate-runtime"),
        version,
        min_version,
        nested,
        priority,
        gate: None,
        pins: Cow::Borrowed(pins),
        props: Cow::Borrowed(&[]),
        fields: Cow::Borrowed(fields),
        subsections: Cow::Borrowed(subsections),
        hooks: Cow::Borrowed(&[]),
        location: LOC,
    }
}

/// A save or a load of a device's fields in wire order: with a writer and a [`SaveCx`] it writes
/// them and reports them to the vmdesc builder, with a reader and a [`LoadCx`] it reads them.
/// Each device lists its fields once ([`Device::fields`]) for both.
pub struct Pass<'a, Io: ?Sized, Cx> {
    pub io: &'a mut Io,
    pub cx: &'a mut Cx,
    /// The version saved or loaded: fields added after it are skipped.
    pub version: u32,
}

/// What a [`Pass`] does with one field.
pub trait FieldPass {
    /// The version of the pass.
    fn version(&self) -> u32;

    /// Saves or loads `v`, described by `fs` (`n`: its vmdesc element count).
    fn codec<F: Field>(&mut self, v: &mut F, fs: &'static FieldSchema, n: u64) -> Result<()>;

    /// Saves or loads a fixed byte buffer, described by `fs`.
    fn bytes(&mut self, b: &mut [u8; 8], fs: &'static FieldSchema) -> Result<()>;

    /// Saves or loads one field if present at the pass's version, naming it in errors.
    fn field<F: Field>(&mut self, v: &mut F, fs: &'static FieldSchema, n: u64) -> Result<()> {
        if fs.since > self.version() {
            return Ok(());
        }
        self.codec(v, fs, n)
            .map_err(|e| e.in_field(fs.name.clone()))
    }

    /// Saves or loads a buffer field (`#[vmstate(buffer)]`, always present).
    fn buffer(&mut self, b: &mut [u8; 8], fs: &'static FieldSchema) -> Result<()> {
        self.bytes(b, fs).map_err(|e| e.in_field(fs.name.clone()))
    }
}

impl<W: Writer + ?Sized> FieldPass for Pass<'_, W, SaveCx<'_>> {
    fn version(&self) -> u32 {
        self.version
    }

    fn codec<F: Field>(&mut self, v: &mut F, fs: &'static FieldSchema, n: u64) -> Result<()> {
        let start = self.io.position();
        v.save_field(self.io, self.cx)?;
        self.describe(fs, n, start);
        Ok(())
    }

    fn bytes(&mut self, b: &mut [u8; 8], fs: &'static FieldSchema) -> Result<()> {
        let start = self.io.position();
        save_buffer(b, self.io)?;
        self.describe(fs, 1, start);
        Ok(())
    }
}

impl<W: Writer + ?Sized> Pass<'_, W, SaveCx<'_>> {
    /// Reports the field just written (from `start` on) to the vmdesc builder.
    fn describe(&mut self, fs: &'static FieldSchema, n: u64, start: u64) {
        if let Some(d) = self.cx.desc() {
            d.field(fs, n, start, self.io.position());
        }
    }
}

impl<R: Reader + ?Sized> FieldPass for Pass<'_, R, LoadCx<'_>> {
    fn version(&self) -> u32 {
        self.version
    }

    fn codec<F: Field>(&mut self, v: &mut F, _: &'static FieldSchema, _: u64) -> Result<()> {
        v.load_field(self.io, self.cx)
    }

    fn bytes(&mut self, b: &mut [u8; 8], _: &'static FieldSchema) -> Result<()> {
        load_buffer(b, self.io)
    }
}

/// A hand-written device whose state is its fields, listed once for save and load; the
/// [`vmstate_device!`] impl then does what the derive's generated code does for such a struct.
pub trait Device {
    /// The stream versions a load accepts, `(min, max)`; `None` for a nested struct, whose
    /// version is fixed by its parent.
    const VERSIONS: Option<(u32, u32)>;

    /// Runs `p` over the fields in wire order.
    fn fields(&mut self, p: &mut impl FieldPass) -> Result<()>;

    /// Checks the loaded state; `pos` is the offset after it.
    fn post_load(&mut self, _pos: u64) -> Result<()> {
        Ok(())
    }

    /// Whether the section is sent.
    fn needed(&self) -> bool {
        true
    }
}

/// `impl VmState` for a [`Device`] (a local trait cannot get a blanket impl of `VmState`).
macro_rules! vmstate_device {
    ($ty:ty, $schema:expr) => {
        impl VmState for $ty {
            const SCHEMA: &'static StructSchema = &$schema;

            fn save_state<W: Writer + ?Sized>(
                &mut self,
                w: &mut W,
                version: u32,
                cx: &mut SaveCx<'_>,
            ) -> Result<()> {
                self.fields(&mut Pass { io: w, cx, version })
            }

            fn load_state<R: Reader + ?Sized>(
                &mut self,
                r: &mut R,
                version: u32,
                cx: &mut LoadCx<'_>,
            ) -> Result<()> {
                if let Some((min, max)) = <$ty as Device>::VERSIONS {
                    check_version(version, min, max, r.position())?;
                }
                self.fields(&mut Pass { io: r, cx, version })?;
                self.post_load(r.position())
            }

            fn section_needed(&self, _gates: &GateCtx<'_>) -> bool {
                self.needed()
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// `serial`: v3 (min 2), pinned to v2 below machine 2.4; `fcr_vmstate` since v3; subsection
// `serial/tsr` when `tsr_retry != 0`. post_load: tsr_retry > 0 requires LSR.TEMT (0x40) clear.

static UART_FIELDS: [FieldSchema; 5] = [
    field("divider", &Kind::U16, 2),
    field("rbr", &Kind::U8, 0),
    field("ier", &Kind::U8, 0),
    field("lsr", &Kind::U8, 0),
    field("fcr_vmstate", &Kind::U8, 3),
];
static UART_TSR_FIELDS: [FieldSchema; 1] = [field("tsr_retry", &Kind::U32, 0)];
static UART_SUBS: [SubsectionSchema; 1] = [SubsectionSchema {
    name: Cow::Borrowed("serial/tsr"),
    version: 1,
    min_version: 1,
    gate: None,
    fields: Cow::Borrowed(&UART_TSR_FIELDS),
    location: LOC,
}];
static UART_PINS: [Pin; 1] = [Pin {
    below: MachineVersion::new(2, 4),
    version: 2,
    location: LOC,
}];
static UART_SCHEMA: StructSchema = schema(
    "serial",
    3,
    2,
    false,
    0,
    &UART_PINS,
    &UART_FIELDS,
    &UART_SUBS,
);

/// A cut-down 16550A.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uart {
    pub divider: u16,
    pub rbr: u8,
    pub ier: u8,
    pub lsr: u8,
    pub fcr: u8,
    pub fcr_vmstate: u8,
    pub tsr_retry: u32,
}

impl Uart {
    pub fn sample() -> Self {
        Uart {
            divider: 0x000c,
            rbr: 0,
            ier: 0x0f,
            lsr: 0x60,
            fcr: 0x41,
            fcr_vmstate: 0,
            tsr_retry: 0,
        }
    }

    fn fields(&mut self, p: &mut impl FieldPass) -> Result<()> {
        let f = &UART_FIELDS;
        p.field(&mut self.divider, &f[0], 1)?;
        p.field(&mut self.rbr, &f[1], 1)?;
        p.field(&mut self.ier, &f[2], 1)?;
        p.field(&mut self.lsr, &f[3], 1)?;
        p.field(&mut self.fcr_vmstate, &f[4], 1)
    }

    /// The fields of `serial/tsr` (version 1).
    fn tsr_fields(&mut self, p: &mut impl FieldPass) -> Result<()> {
        p.field(&mut self.tsr_retry, &UART_TSR_FIELDS[0], 1)
            .map_err(|e| e.in_field("serial/tsr"))
    }
}

impl VmState for Uart {
    const SCHEMA: &'static StructSchema = &UART_SCHEMA;

    fn save_state<W: Writer + ?Sized>(
        &mut self,
        w: &mut W,
        version: u32,
        cx: &mut SaveCx<'_>,
    ) -> Result<()> {
        // pre_save
        self.fcr_vmstate = self.fcr;
        self.fields(&mut Pass { io: w, cx, version })?;
        if self.tsr_retry != 0 {
            write_subsection_header(w, "serial/tsr", 1)?;
            if let Some(d) = cx.desc() {
                d.subsection_begin("serial/tsr", 1, w.position());
            }
            self.tsr_fields(&mut Pass {
                io: w,
                cx,
                version: 1,
            })?;
            if let Some(d) = cx.desc() {
                d.subsection_end(w.position());
            }
        }
        Ok(())
    }

    fn load_state<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<()> {
        check_version(version, 2, 3, r.position())?;
        // pre_load; `fcr_vmstate` keeps its default 0 in streams older than v3.
        self.tsr_retry = 0;
        self.fcr_vmstate = 0;
        self.fields(&mut Pass { io: r, cx, version })?;
        let mut seen = false;
        loop {
            let pos = r.position();
            let Some((_, v)) = next_subsection(r, "serial", &["serial/tsr"])? else {
                break;
            };
            if seen {
                return Err(duplicate_subsection("serial/tsr", pos));
            }
            seen = true;
            check_version(v, 1, 1, pos).map_err(|e| e.in_field("serial/tsr"))?;
            self.tsr_fields(&mut Pass {
                io: r,
                cx,
                version: 1,
            })?;
        }
        // post_load
        if self.tsr_retry > 0 && self.lsr & 0x40 != 0 {
            return Err(Error::new(
                ErrorKind::ValidationFailed {
                    message: "tsr_retry > 0 with LSR.TEMT set".into(),
                },
                r.position(),
            )
            .in_field("lsr"));
        }
        self.fcr = self.fcr_vmstate;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// `i8254`-like: v3 (min 2), a compressible array of 2 nested `pit channel` structs.

static CHANNEL_FIELDS: [FieldSchema; 3] = [
    field("count", &Kind::I32, 0),
    field("mode", &Kind::U8, 0),
    field("next_transition_time", &Kind::I64, 0),
];
static CHANNEL_SCHEMA: StructSchema =
    schema("pit channel", 2, 2, true, 0, &[], &CHANNEL_FIELDS, &[]);

/// One PIT channel (nested).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    pub count: i32,
    pub mode: u8,
    pub next_transition_time: i64,
}

impl Device for Channel {
    const VERSIONS: Option<(u32, u32)> = None;

    fn fields(&mut self, p: &mut impl FieldPass) -> Result<()> {
        let f = &CHANNEL_FIELDS;
        p.field(&mut self.count, &f[0], 1)?;
        p.field(&mut self.mode, &f[1], 1)?;
        p.field(&mut self.next_transition_time, &f[2], 1)
    }

    fn post_load(&mut self, pos: u64) -> Result<()> {
        if self.mode > 5 {
            return Err(Error::new(
                ErrorKind::InvalidValue {
                    expected: "a mode 0..=5".into(),
                    found: self.mode.into(),
                },
                pos,
            )
            .in_field("mode"));
        }
        Ok(())
    }
}

vmstate_device!(Channel, CHANNEL_SCHEMA);

impl Field for Channel {
    const KIND: Kind = Kind::Struct {
        schema: SchemaRef::Static(&CHANNEL_SCHEMA),
    };
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()> {
        if let Some(d) = cx.desc() {
            d.struct_begin("pit channel", 2, w.position());
        }
        self.save_state(w, 2, cx)?;
        if let Some(d) = cx.desc() {
            d.struct_end(w.position());
        }
        Ok(())
    }
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()> {
        self.load_state(r, 2, cx)
    }
}

static CHANNEL_KIND: Kind = <Channel as Field>::KIND;
static CHANNELS_KIND: Kind = Kind::Array {
    elem: SchemaRef::Static(&CHANNEL_KIND),
    len: 2,
};
static PIT_FIELDS: [FieldSchema; 3] = [
    field("channels[0].irq_disabled", &Kind::U32, 3),
    field("channels", &CHANNELS_KIND, 2),
    field("channels[0].next_transition_time", &Kind::I64, 0),
];
static PIT_SCHEMA: StructSchema = schema("i8254", 3, 2, false, 0, &[], &PIT_FIELDS, &[]);

/// A cut-down i8254 with two channels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pit {
    pub irq_disabled: u32,
    pub channels: [Channel; 2],
    pub next: i64,
}

impl Pit {
    pub fn sample() -> Self {
        Pit {
            irq_disabled: 0,
            channels: [
                Channel {
                    count: 0x10000,
                    mode: 3,
                    next_transition_time: 0x1a3_0c2c,
                },
                Channel {
                    count: -1,
                    mode: 2,
                    next_transition_time: 0,
                },
            ],
            next: 0x1a3_0c2c,
        }
    }
}

impl Device for Pit {
    const VERSIONS: Option<(u32, u32)> = Some((2, 3));

    fn fields(&mut self, p: &mut impl FieldPass) -> Result<()> {
        let f = &PIT_FIELDS;
        p.field(&mut self.irq_disabled, &f[0], 1)?;
        p.field(&mut self.channels, &f[1], 2)?;
        p.field(&mut self.next, &f[2], 1)
    }
}

vmstate_device!(Pit, PIT_SCHEMA);

// ---------------------------------------------------------------------------------------------
// `mc146818rtc`-like: priority 1 (saved first), a buffer, unused bytes and a timer.

static RTC_FIELDS: [FieldSchema; 4] = [
    field("cmos_data", &Kind::Buffer { len: 8 }, 0),
    field("cmos_index", &Kind::U8, 0),
    field("unused", &Kind::Unused { len: 4 }, 0),
    field("periodic_timer", &Kind::Timer, 0),
];
static RTC_SCHEMA: StructSchema = schema("mc146818rtc", 3, 1, false, 1, &[], &RTC_FIELDS, &[]);

/// A cut-down RTC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rtc {
    pub cmos_data: [u8; 8],
    pub cmos_index: u8,
    pub unused: Unused<4>,
    pub periodic_timer: Timer,
}

impl Rtc {
    pub fn sample() -> Self {
        Rtc {
            cmos_data: [0, 0, 0, 0, 0, 0, 4, 1],
            cmos_index: 0x0d,
            unused: Unused,
            periodic_timer: Timer::armed(0x3b9a_ca00),
        }
    }
}

impl Device for Rtc {
    const VERSIONS: Option<(u32, u32)> = Some((1, 3));

    fn fields(&mut self, p: &mut impl FieldPass) -> Result<()> {
        let f = &RTC_FIELDS;
        p.buffer(&mut self.cmos_data, &f[0])?;
        p.field(&mut self.cmos_index, &f[1], 1)?;
        p.field(&mut self.unused, &f[2], 1)?;
        p.field(&mut self.periodic_timer, &f[3], 1)
    }

    fn needed(&self) -> bool {
        // A "device" that is left out while its index register is 0xff.
        self.cmos_index != 0xff
    }
}

vmstate_device!(Rtc, RTC_SCHEMA);

/// A UART, a PIT and an RTC in one registry, with a handle to each.
pub struct Devices {
    pub reg: Registry,
    pub uart: Arc<Mutex<Uart>>,
    pub pit: Arc<Mutex<Pit>>,
    pub rtc: Arc<Mutex<Rtc>>,
}

impl Devices {
    /// Registers the three devices under their plain instance ids.
    pub fn new(uart: Uart, pit: Pit, rtc: Rtc) -> Self {
        Self::register(
            uart,
            pit,
            rtc,
            RegisterOptions::new(),
            RegisterOptions::new(),
        )
    }

    /// Registers the three devices, the UART and the PIT with their legacy alias ids (0x3f8,
    /// 0x40).
    pub fn with_aliases(uart: Uart, pit: Pit, rtc: Rtc) -> Self {
        Self::register(
            uart,
            pit,
            rtc,
            RegisterOptions::new().alias_id(0x3f8),
            RegisterOptions::new().alias_id(0x40),
        )
    }

    fn register(
        uart: Uart,
        pit: Pit,
        rtc: Rtc,
        uart_options: RegisterOptions,
        pit_options: RegisterOptions,
    ) -> Self {
        let uart = Arc::new(Mutex::new(uart));
        let pit = Arc::new(Mutex::new(pit));
        let rtc = Arc::new(Mutex::new(rtc));
        let mut reg = Registry::new();
        reg.register_with(uart.clone(), uart_options).unwrap();
        reg.register_with(pit.clone(), pit_options).unwrap();
        reg.register(rtc.clone()).unwrap();
        Devices {
            reg,
            uart,
            pit,
            rtc,
        }
    }

    /// Puts every device back to its default state.
    pub fn reset(&self) {
        *self.uart.lock().unwrap() = Uart::default();
        *self.pit.lock().unwrap() = Pit::default();
        *self.rtc.lock().unwrap() = Rtc::default();
    }

    /// Asserts that every device is in its default state; `what` names the case.
    pub fn assert_default(&self, what: &str) {
        assert_eq!(*self.uart.lock().unwrap(), Uart::default(), "{what}");
        assert_eq!(*self.pit.lock().unwrap(), Pit::default(), "{what}");
        assert_eq!(*self.rtc.lock().unwrap(), Rtc::default(), "{what}");
    }
}

pub fn machine(name: &str) -> MachineType {
    MachineCatalog::qemu_pc()
        .resolve(name)
        .expect("machine type in the catalog")
}

/// Big-endian helpers for building expected bytes.
pub fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// `u8 len` + bytes.
pub fn counted(s: &str) -> Vec<u8> {
    let mut v = vec![u8::try_from(s.len()).unwrap()];
    v.extend_from_slice(s.as_bytes());
    v
}
