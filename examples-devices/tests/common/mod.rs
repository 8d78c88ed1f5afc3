//! Shared helpers: golden-stream access (through the offsets `scripts/dump-sections.py` wrote to
//! `*.sections.txt`), save/load of one section with vmdesc collection, and analyze-migration
//! style formatting for comparing with `*.state.json`.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use examples_devices::rtc::LostTickPolicy;
use serde_json::Value;
use vmstate_runtime::vmdesc::{write_device, write_value_qemu, DescBody, DescDevice, DescStruct};
use vmstate_runtime::{
    Error, GateCtx, LoadCx, MachineCatalog, Reader, SaveCx, SliceReader, VmState, Writer,
};

/// Runs `cmd` (a `vmstate-demo` invocation that must fail), checks that it exits with `code`
/// and returns its stderr.
pub fn stderr_of_failure(cmd: &mut Command, code: i32) -> String {
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(code), "{err}");
    err
}

/// The golden streams with a busy RTC, and the lost-tick policy QEMU ran it with.
pub const RTC_STREAMS: [(&str, LostTickPolicy); 2] = [
    ("rtc", LostTickPolicy::Discard),
    ("rtc-slew", LostTickPolicy::Slew),
];

pub fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/qemu72")
}

/// Golden streams that have a vmdesc, with the machine type to pass when the stream has no
/// configuration section.
pub fn golden_with_vmdesc() -> Vec<(String, Option<&'static str>)> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".mig") {
            match stem {
                "machine-pc-i440fx-2.2" => {}
                "machine-pc-i440fx-2.3" => v.push((stem.to_owned(), Some("pc-i440fx-2.3"))),
                _ => v.push((stem.to_owned(), None)),
            }
        }
    }
    v.sort();
    assert!(v.len() >= 14, "golden streams missing: {v:?}");
    v
}

pub fn catalog() -> MachineCatalog {
    examples_devices::catalog()
}

/// One FULL section of a golden stream, as listed in its `.sections.txt`.
#[derive(Debug, Clone)]
pub struct GoldenSection {
    /// Offset of the `04` byte.
    pub offset: usize,
    pub section_id: u32,
    pub idstr: String,
    pub instance_id: u32,
    pub version: u32,
    pub payload_len: usize,
    pub footer: bool,
    /// The whole stream file.
    pub stream: std::sync::Arc<Vec<u8>>,
}

impl GoldenSection {
    pub fn payload_offset(&self) -> usize {
        self.offset + 1 + 4 + 1 + self.idstr.len() + 4 + 4
    }
    pub fn payload(&self) -> &[u8] {
        let o = self.payload_offset();
        &self.stream[o..o + self.payload_len]
    }
    /// Header, payload and (when the stream has footers) footer.
    pub fn bytes(&self) -> &[u8] {
        let end = self.payload_offset() + self.payload_len + if self.footer { 5 } else { 0 };
        &self.stream[self.offset..end]
    }
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// Every FULL section of `stream` (e.g. "uart-fifo").
pub fn golden_sections(stream: &str) -> Vec<GoldenSection> {
    let dir = golden_dir();
    let data = std::sync::Arc::new(std::fs::read(dir.join(format!("{stream}.mig"))).unwrap());
    let txt = std::fs::read_to_string(dir.join(format!("{stream}.sections.txt"))).unwrap();
    let mut out = Vec::new();
    for line in txt.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 7 || w[1] != "FULL" {
            continue;
        }
        let s = GoldenSection {
            offset: w[0].parse().unwrap(),
            section_id: field(line, "id=").unwrap().parse().unwrap(),
            idstr: w[4].to_owned(),
            instance_id: field(line, "inst=").unwrap().parse().unwrap(),
            version: field(line, "ver=").unwrap().parse().unwrap(),
            payload_len: field(line, "payload=").unwrap().parse().unwrap(),
            footer: field(line, "footer@").is_some(),
            stream: data.clone(),
        };
        // Cross-check the header bytes against the listing.
        let b = &data[s.offset..];
        assert_eq!(b[0], 0x04, "{stream}: {line}");
        assert_eq!(
            u32::from_be_bytes(b[1..5].try_into().unwrap()),
            s.section_id
        );
        assert_eq!(usize::from(b[5]), s.idstr.len());
        assert_eq!(&b[6..6 + s.idstr.len()], s.idstr.as_bytes());
        if s.footer {
            let f = s.payload_offset() + s.payload_len;
            assert_eq!(data[f], 0x7e);
            assert_eq!(
                u32::from_be_bytes(data[f + 1..f + 5].try_into().unwrap()),
                s.section_id
            );
        }
        out.push(s);
    }
    out
}

pub fn golden_section(stream: &str, idstr: &str, instance: u32) -> GoldenSection {
    golden_sections(stream)
        .into_iter()
        .find(|s| s.idstr == idstr && s.instance_id == instance)
        .unwrap_or_else(|| panic!("{stream}: no section {idstr} instance {instance}"))
}

/// The vmdesc JSON at the end of `stream`.
pub fn golden_vmdesc(stream: &str) -> Value {
    let dir = golden_dir();
    let data = std::fs::read(dir.join(format!("{stream}.mig"))).unwrap();
    let txt = std::fs::read_to_string(dir.join(format!("{stream}.sections.txt"))).unwrap();
    let line = txt
        .lines()
        .find(|l| l.contains("VMDESC 0x06"))
        .expect("stream has a vmdesc");
    let off: usize = line.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(data[off], 0x06);
    let n = u32::from_be_bytes(data[off + 1..off + 5].try_into().unwrap()) as usize;
    let json = &data[off + 5..off + 5 + n];
    serde_json::from_slice(json).unwrap()
}

/// The device object of the golden vmdesc, printed the way QEMU prints it; also checks that
/// this exact text occurs in the stream's JSON.
pub fn golden_vmdesc_device(stream: &str, idstr: &str, instance: u32) -> String {
    let v = golden_vmdesc(stream);
    let dev = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == idstr && d["instance_id"] == instance)
        .unwrap_or_else(|| panic!("{stream}: vmdesc has no {idstr}/{instance}"));
    let mut text = String::new();
    write_value_qemu(&mut text, dev);
    let raw = std::fs::read(golden_dir().join(format!("{stream}.mig"))).unwrap();
    let raw = String::from_utf8_lossy(&raw);
    assert!(
        raw.contains(&text),
        "re-printed vmdesc object not found verbatim in {stream}"
    );
    text
}

/// The analyze-migration.py object of a section (`"<idstr> (<section id>)"`).
pub fn golden_state(stream: &str, idstr: &str, section_id: u32) -> Value {
    let p = golden_dir().join(format!("{stream}.state.json"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v[format!("{idstr} ({section_id})")].clone()
}

/// Saves `dev` as a top-level section for `machine` (at the version the machine type pins),
/// returning the payload and the collected vmdesc description.
pub fn save_section<T: VmState + Clone>(
    dev: &T,
    machine: &str,
    driver: &str,
) -> (Vec<u8>, DescStruct, u32) {
    let cat = catalog();
    let m = cat.resolve(machine).unwrap();
    let version = T::SCHEMA.version_for(m.version());
    let mut copy = dev.clone();
    let mut out = Vec::new();
    let mut cx = SaveCx::new(GateCtx::new(&m, driver), true);
    if let Some(d) = cx.desc() {
        d.struct_begin(&T::SCHEMA.name, version, 0);
    }
    copy.save_state(&mut out, version, &mut cx).unwrap();
    let end = Writer::position(&out);
    if let Some(d) = cx.desc() {
        d.struct_end(end);
    }
    let desc = cx.take_desc().unwrap();
    (out, desc, version)
}

/// The vmdesc device object we would write for this section.
pub fn desc_text(idstr: &str, instance: u32, desc: DescStruct) -> String {
    let mut s = String::new();
    write_device(
        &mut s,
        &DescDevice {
            name: idstr.to_owned(),
            instance_id: instance,
            body: DescBody::Vmsd(desc),
        },
    );
    s
}

/// Loads `dev` at `version` from `r`, as machine type `machine` and driver `driver` do.
fn load_from<T: VmState>(
    dev: &mut T,
    r: &mut SliceReader<'_>,
    version: u32,
    machine: &str,
    driver: &str,
) -> Result<(), Error> {
    let m = catalog().resolve(machine).unwrap();
    dev.load_state(r, version, &mut LoadCx::new(GateCtx::new(&m, driver)))
}

/// Loads a payload at `version` into `dev`; the payload must be consumed exactly.
pub fn load_payload<T: VmState>(
    dev: &mut T,
    payload: &[u8],
    version: u32,
    machine: &str,
    driver: &str,
) -> Result<(), Error> {
    let mut r = SliceReader::new(payload);
    load_from(dev, &mut r, version, machine, driver)?;
    assert!(
        r.remaining().is_empty(),
        "{} bytes left after the payload",
        r.remaining().len()
    );
    Ok(())
}

/// Loads one framed FULL section (`04 id len idstr inst ver payload [7e id]`), as a stream
/// reader would: header, payload at the header's version, then the footer. Never panics.
pub fn load_framed<T: VmState>(
    dev: &mut T,
    bytes: &[u8],
    footer: bool,
    machine: &str,
    driver: &str,
) -> Result<(), Error> {
    let mut r = SliceReader::new(bytes);
    let ty = r.read_u8()?;
    assert_eq!(ty, 0x04);
    let id = r.read_be32()?;
    let _idstr = r.read_counted_str()?;
    let _inst = r.read_be32()?;
    let version = r.read_be32()?;
    load_from(dev, &mut r, version, machine, driver)?;
    if footer {
        let pos = r.position();
        let f = r.read_u8()?;
        let fid = r.read_be32()?;
        if f != 0x7e || fid != id {
            return Err(Error::new(
                vmstate_runtime::ErrorKind::FooterMismatch {
                    expected: id,
                    found: fid,
                },
                pos,
            ));
        }
    }
    Ok(())
}

/// Every strict prefix of a framed section fails to load (and nothing panics).
pub fn assert_every_prefix_fails<T: VmState>(
    fresh: impl Fn() -> T,
    bytes: &[u8],
    machine: &str,
    driver: &str,
) {
    for n in 0..bytes.len() {
        let mut d = fresh();
        let r = load_framed(&mut d, &bytes[..n], true, machine, driver);
        assert!(r.is_err(), "prefix of {n} of {} bytes loaded", bytes.len());
    }
    let mut d = fresh();
    load_framed(&mut d, bytes, true, machine, driver).unwrap();
}

// ---- analyze-migration.py formatting ----

pub fn hx<T: Into<u64>>(v: T, bytes: usize) -> Value {
    Value::String(format!("0x{:0w$x}", v.into(), w = bytes * 2))
}

/// Signed ints the way analyze-migration prints them: negative values as
/// `"0xffff… (-n)"`.
pub fn hx_signed(v: i64, bytes: usize) -> Value {
    let bits = bytes * 8;
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    #[allow(clippy::cast_sign_loss)]
    let u = (v as u64) & mask;
    if v < 0 {
        Value::String(format!("0x{:0w$x} ({v})", u, w = bytes * 2))
    } else {
        Value::String(format!("0x{:0w$x}", u, w = bytes * 2))
    }
}

/// Raw bytes (buffers, timers, unused) as space-separated hex.
pub fn hex_bytes(b: &[u8]) -> Value {
    Value::String(
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

pub fn timer_json(t: vmstate_runtime::Timer) -> Value {
    hex_bytes(&t.expire_ns.unwrap_or(u64::MAX).to_be_bytes())
}

/// A hex dump for assertion messages.
pub fn dump(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[track_caller]
pub fn assert_bytes_eq(ours: &[u8], golden: &[u8]) {
    if ours != golden {
        panic!(
            "bytes differ\n--- ours ({} bytes)\n{}\n--- golden ({} bytes)\n{}",
            ours.len(),
            dump(ours),
            golden.len(),
            dump(golden)
        );
    }
}

/// Loads a payload; `true` when it loaded and was consumed exactly (leftover bytes are what a
/// stream reader reports as a missing footer).
pub fn try_load<T: VmState>(dev: &mut T, payload: &[u8], machine: &str, driver: &str) -> bool {
    let cat = catalog();
    let m = cat.resolve(machine).unwrap();
    let mut r = SliceReader::new(payload);
    dev.load_state(&mut r, 3, &mut LoadCx::new(GateCtx::new(&m, driver)))
        .is_ok()
        && r.remaining().is_empty()
}
