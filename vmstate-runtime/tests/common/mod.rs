//! Hand-written `VmState` devices for the registry, framing and decode tests (the derive is
//! developed separately; these follow the same protocol as its generated code: the caller opens
//! the top-level vmdesc struct, `save_state` reports fields and subsections, nested structs open
//! their own struct in `save_field`).

#![allow(dead_code)]

use std::borrow::Cow;
use vmstate_runtime::__private::{
    check_version, duplicate_subsection, load_buffer, next_subsection, save_buffer,
    write_subsection_header, Field, FieldSchema, Kind, Location, Pin, StructSchema,
    SubsectionSchema,
};

use vmstate_runtime::schema::{MachineVersion, SchemaRef};
use vmstate_runtime::{
    Error, ErrorKind, GateCtx, LoadCx, MachineCatalog, MachineType, Reader, Result, SaveCx, Timer,
    Unused, VmState, Writer,
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
        gate: None,
        equal: false,
        range: None,
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

/// Saves one field if present at `version`, reporting it to the vmdesc builder.
pub fn save_f<W: Writer + ?Sized, F: Field>(
    v: &mut F,
    w: &mut W,
    cx: &mut SaveCx<'_>,
    fs: &'static FieldSchema,
    n: u64,
    version: u32,
) -> Result<()> {
    if fs.since > version {
        return Ok(());
    }
    let start = w.position();
    v.save_field(w, cx)
        .map_err(|e| e.in_field(fs.name.clone()))?;
    if let Some(d) = cx.desc() {
        d.field(fs, n, start, w.position());
    }
    Ok(())
}

/// Loads one field if present at `version`.
pub fn load_f<R: Reader + ?Sized, F: Field>(
    v: &mut F,
    r: &mut R,
    cx: &mut LoadCx<'_>,
    fs: &'static FieldSchema,
    version: u32,
) -> Result<()> {
    if fs.since > version {
        return Ok(());
    }
    v.load_field(r, cx).map_err(|e| e.in_field(fs.name.clone()))
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
        let f = &UART_FIELDS;
        save_f(&mut self.divider, w, cx, &f[0], 1, version)?;
        save_f(&mut self.rbr, w, cx, &f[1], 1, version)?;
        save_f(&mut self.ier, w, cx, &f[2], 1, version)?;
        save_f(&mut self.lsr, w, cx, &f[3], 1, version)?;
        save_f(&mut self.fcr_vmstate, w, cx, &f[4], 1, version)?;
        if self.tsr_retry != 0 {
            write_subsection_header(w, "serial/tsr", 1)?;
            if let Some(d) = cx.desc() {
                d.subsection_begin("serial/tsr", 1, w.position());
            }
            save_f(&mut self.tsr_retry, w, cx, &UART_TSR_FIELDS[0], 1, 1)
                .map_err(|e| e.in_field("serial/tsr"))?;
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
        // pre_load
        self.tsr_retry = 0;
        let f = &UART_FIELDS;
        load_f(&mut self.divider, r, cx, &f[0], version)?;
        load_f(&mut self.rbr, r, cx, &f[1], version)?;
        load_f(&mut self.ier, r, cx, &f[2], version)?;
        load_f(&mut self.lsr, r, cx, &f[3], version)?;
        if f[4].since <= version {
            load_f(&mut self.fcr_vmstate, r, cx, &f[4], version)?;
        } else {
            self.fcr_vmstate = 0;
        }
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
            load_f(&mut self.tsr_retry, r, cx, &UART_TSR_FIELDS[0], 1)
                .map_err(|e| e.in_field("serial/tsr"))?;
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

impl VmState for Channel {
    const SCHEMA: &'static StructSchema = &CHANNEL_SCHEMA;

    fn save_state<W: Writer + ?Sized>(
        &mut self,
        w: &mut W,
        version: u32,
        cx: &mut SaveCx<'_>,
    ) -> Result<()> {
        let f = &CHANNEL_FIELDS;
        save_f(&mut self.count, w, cx, &f[0], 1, version)?;
        save_f(&mut self.mode, w, cx, &f[1], 1, version)?;
        save_f(&mut self.next_transition_time, w, cx, &f[2], 1, version)
    }

    fn load_state<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<()> {
        let f = &CHANNEL_FIELDS;
        load_f(&mut self.count, r, cx, &f[0], version)?;
        load_f(&mut self.mode, r, cx, &f[1], version)?;
        load_f(&mut self.next_transition_time, r, cx, &f[2], version)?;
        if self.mode > 5 {
            return Err(Error::new(
                ErrorKind::InvalidValue {
                    expected: "a mode 0..=5".into(),
                    found: self.mode.into(),
                },
                r.position(),
            )
            .in_field("mode"));
        }
        Ok(())
    }
}

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

impl VmState for Pit {
    const SCHEMA: &'static StructSchema = &PIT_SCHEMA;

    fn save_state<W: Writer + ?Sized>(
        &mut self,
        w: &mut W,
        version: u32,
        cx: &mut SaveCx<'_>,
    ) -> Result<()> {
        let f = &PIT_FIELDS;
        save_f(&mut self.irq_disabled, w, cx, &f[0], 1, version)?;
        save_f(&mut self.channels, w, cx, &f[1], 2, version)?;
        save_f(&mut self.next, w, cx, &f[2], 1, version)
    }

    fn load_state<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<()> {
        check_version(version, 2, 3, r.position())?;
        let f = &PIT_FIELDS;
        load_f(&mut self.irq_disabled, r, cx, &f[0], version)?;
        load_f(&mut self.channels, r, cx, &f[1], version)?;
        load_f(&mut self.next, r, cx, &f[2], version)
    }
}

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

impl VmState for Rtc {
    const SCHEMA: &'static StructSchema = &RTC_SCHEMA;

    fn save_state<W: Writer + ?Sized>(
        &mut self,
        w: &mut W,
        version: u32,
        cx: &mut SaveCx<'_>,
    ) -> Result<()> {
        let f = &RTC_FIELDS;
        let start = w.position();
        save_buffer(&self.cmos_data, w).map_err(|e| e.in_field("cmos_data"))?;
        if let Some(d) = cx.desc() {
            d.field(&f[0], 1, start, w.position());
        }
        save_f(&mut self.cmos_index, w, cx, &f[1], 1, version)?;
        save_f(&mut self.unused, w, cx, &f[2], 1, version)?;
        save_f(&mut self.periodic_timer, w, cx, &f[3], 1, version)
    }

    fn load_state<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<()> {
        check_version(version, 1, 3, r.position())?;
        let f = &RTC_FIELDS;
        load_buffer(&mut self.cmos_data, r).map_err(|e| e.in_field("cmos_data"))?;
        load_f(&mut self.cmos_index, r, cx, &f[1], version)?;
        load_f(&mut self.unused, r, cx, &f[2], version)?;
        load_f(&mut self.periodic_timer, r, cx, &f[3], version)
    }

    fn section_needed(&self, _gates: &GateCtx<'_>) -> bool {
        // A "device" that is left out while its index register is 0xff.
        self.cmos_index != 0xff
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
