//! Configuration manifests: what one side of a migration is, compared with the other side
//! before any byte of guest state moves.
//!
//! A [`Manifest`] lists a VMM's machine type, every section it registered (the version it writes
//! for that machine type, the versions it loads, and whether it will send it now), its RAM blocks
//! with their sizes, the effective value of every compat property its devices declare, and
//! optionally its vCPU model (CPUID features and MSRs). The source sends its manifest first; the
//! destination compares it with its own ([`compare`]) and answers with the list of
//! [`Mismatch`]es — each naming the thing, both values and the usual fix — so a migration that
//! cannot work fails in milliseconds, with the source still running, instead of after gigabytes
//! when the first unknown section or short RAM block arrives.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use vmstate_runtime::manifest::{compare, Manifest, Severity};
//! use vmstate_runtime::{MachineCatalog, Registry, VmState};
//!
//! #[derive(VmState, Clone, Default)]
//! #[vmstate(name = "uart", version = 2, minimum_version = 1)]
//! struct Uart { lcr: u8 }
//!
//! #[derive(VmState, Clone, Default)]
//! #[vmstate(name = "nic", version = 1)]
//! struct Nic { mac: [u8; 6] }
//!
//! let machine = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
//! let mut src = Registry::new();
//! src.register(Arc::new(Mutex::new(Uart::default()))).unwrap();
//! src.register(Arc::new(Mutex::new(Nic::default()))).unwrap();
//! let mut dst = Registry::new();
//! dst.register(Arc::new(Mutex::new(Uart::default()))).unwrap();
//!
//! let source = Manifest::of(&src, &machine).unwrap().with_ram([("pc.ram", 1 << 30)]);
//! let dest = Manifest::of(&dst, &machine).unwrap().with_ram([("pc.ram", 1 << 30)]);
//! let found = compare(&source, &dest);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].severity, Severity::Error);
//! assert_eq!(
//!     found[0].to_string(),
//!     "section `nic` instance 0: the source sends it, the destination has no such device — \
//!      start the destination with the same devices at the same addresses"
//! );
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::context::GateCtx;
use crate::error::{Error, ErrorKind, Result};
use crate::machine::{MachineType, MIGRATION_DRIVER};
use crate::registry::Registry;

/// Largest manifest accepted from a peer or a file, in bytes of JSON.
pub const MAX_MANIFEST: usize = 4 << 20;
/// Most entries of any one list in a manifest from a peer or a file.
pub const MAX_ENTRIES: usize = 65_536;

/// One registered section as a manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionEntry {
    /// The section's idstr (`[bus path "/"] name`).
    pub idstr: String,
    /// Its instance id.
    pub instance_id: u32,
    /// The version it writes for the manifest's machine type.
    pub version: u32,
    /// The lowest version it loads.
    pub min_version: u32,
    /// The highest version it loads.
    pub max_version: u32,
    /// Whether it would send the section now (a section-level gate may leave it out).
    pub sent: bool,
}

impl SectionEntry {
    fn key(&self) -> (&str, u32) {
        (&self.idstr, self.instance_id)
    }
}

/// A RAM block: name and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RamEntry {
    /// Block name (`pc.ram`, `pc.rom`, `/rom@etc/acpi/tables`, …).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// A vCPU model: on a source, what the guest uses; on a destination, what the host can give.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuModel {
    /// The model's name (e.g. `host`, `Skylake-Server`), for messages.
    pub name: String,
    /// CPUID feature names (`avx512f`, `x2apic`, …).
    pub features: BTreeSet<String>,
    /// MSR indices: on a source those it sends, on a destination those it can set.
    pub msrs: BTreeSet<u32>,
}

/// What one side of a migration is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The writer's build (e.g. crate version and git describe), for messages only.
    #[serde(default)]
    pub build: Option<String>,
    /// The machine type's name.
    pub machine: String,
    /// Every registered section, in save order.
    pub sections: Vec<SectionEntry>,
    /// RAM blocks in order.
    #[serde(default)]
    pub ram: Vec<RamEntry>,
    /// The effective value of each compat property (`driver.property`): every property the
    /// registered sections declare, and the stream-framing properties the machine type sets.
    #[serde(default)]
    pub compat: BTreeMap<String, bool>,
    /// The vCPU model, when the VMM states one.
    #[serde(default)]
    pub cpu: Option<CpuModel>,
}

impl Manifest {
    /// The manifest of `registry` on `machine`: its sections with the versions each writes and
    /// loads (whether it would send each is decided now, on a snapshot of the device, as a save
    /// decides it) and the compat properties. Add RAM and the vCPU with [`Manifest::with_ram`]
    /// and [`Manifest::with_cpu`].
    ///
    /// # Errors
    /// When a device's state cannot be read (a poisoned lock).
    pub fn of(registry: &Registry, machine: &MachineType) -> Result<Manifest> {
        let mut sections = Vec::new();
        let mut compat = BTreeMap::new();
        for (key, schema, sent) in registry.sections_sent(machine)? {
            let gates = GateCtx::new(machine, &schema.name);
            sections.push(SectionEntry {
                idstr: key.idstr.clone(),
                instance_id: key.instance_id,
                version: schema.version_for(machine.version()),
                min_version: schema.min_version,
                max_version: schema.version,
                sent,
            });
            for p in schema.props.iter() {
                compat.insert(
                    format!("{}.{}", schema.name, p.name),
                    gates.prop(&p.name, p.default),
                );
            }
        }
        for (driver, property, value) in machine.compat_entries() {
            if driver == MIGRATION_DRIVER {
                compat.insert(format!("{driver}.{property}"), value);
            }
        }
        Ok(Manifest {
            build: None,
            machine: machine.name().to_owned(),
            sections,
            ram: Vec::new(),
            compat,
            cpu: None,
        })
    }

    /// With these RAM blocks (name, size in bytes).
    #[must_use]
    pub fn with_ram<S: Into<String>>(mut self, blocks: impl IntoIterator<Item = (S, u64)>) -> Self {
        self.ram = blocks
            .into_iter()
            .map(|(name, size)| RamEntry {
                name: name.into(),
                size,
            })
            .collect();
        self
    }

    /// With this vCPU model.
    #[must_use]
    pub fn with_cpu(mut self, cpu: CpuModel) -> Self {
        self.cpu = Some(cpu);
        self
    }

    /// With the writer's build named.
    #[must_use]
    pub fn with_build(mut self, build: impl Into<String>) -> Self {
        self.build = Some(build.into());
        self
    }

    /// The manifest as JSON.
    ///
    /// # Panics
    /// Never: the manifest serializes infallibly.
    #[must_use]
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a manifest from a peer or a file: at most [`MAX_MANIFEST`] bytes and
    /// [`MAX_ENTRIES`] entries per list.
    ///
    /// # Errors
    /// [`ErrorKind::LengthTooLarge`] or [`ErrorKind::ValidationFailed`] naming what is wrong.
    pub fn from_json(json: &[u8]) -> Result<Manifest> {
        if json.len() > MAX_MANIFEST {
            return Err(Error::without_offset(ErrorKind::LengthTooLarge {
                len: json.len() as u64,
                limit: MAX_MANIFEST as u64,
            }));
        }
        let m: Manifest = serde_json::from_slice(json).map_err(|e| {
            Error::without_offset(ErrorKind::ValidationFailed {
                message: format!("not a configuration manifest: {e}"),
            })
        })?;
        let lists = [
            ("sections", m.sections.len()),
            ("ram", m.ram.len()),
            ("compat", m.compat.len()),
            (
                "cpu",
                m.cpu
                    .as_ref()
                    .map_or(0, |c| c.features.len().max(c.msrs.len())),
            ),
        ];
        if let Some((what, n)) = lists.into_iter().find(|&(_, n)| n > MAX_ENTRIES) {
            return Err(Error::without_offset(ErrorKind::ValidationFailed {
                message: format!("manifest: {n} {what} entries, at most {MAX_ENTRIES} accepted"),
            }));
        }
        Ok(m)
    }
}

/// How bad a difference is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The migration cannot work: the destination refuses it.
    Error,
    /// It works, but probably not as meant (e.g. a destination device that gets no state).
    Warning,
}

/// One difference between the source's manifest and the destination's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// How bad it is.
    pub severity: Severity,
    /// The thing that differs (`section `serial` instance 0`, `RAM block `pc.rom``, …).
    pub what: String,
    /// What differs, with both values.
    pub detail: String,
    /// The usual fix.
    pub fix: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} — {}", self.what, self.detail, self.fix)
    }
}

fn mismatch(severity: Severity, what: String, detail: String, fix: &str) -> Mismatch {
    Mismatch {
        severity,
        what,
        detail,
        fix: fix.to_owned(),
    }
}

/// Everything in `source` that `dest` cannot take, and what is probably not meant, in a stable
/// order: machine type, sections, RAM, compat properties, vCPU. Empty when the migration can
/// go ahead. The source's manifest says what it will send; the destination's what it loads.
#[must_use]
pub fn compare(source: &Manifest, dest: &Manifest) -> Vec<Mismatch> {
    use Severity::{Error as E, Warning as W};
    let mut out = Vec::new();
    if source.machine != dest.machine {
        out.push(mismatch(
            E,
            "machine type".into(),
            format!(
                "source `{}`, destination `{}`",
                source.machine, dest.machine
            ),
            "start the destination with the source's machine type (-M)",
        ));
    }

    let dst_sections: BTreeMap<(&str, u32), &SectionEntry> =
        dest.sections.iter().map(|s| (s.key(), s)).collect();
    let src_sections: BTreeMap<(&str, u32), &SectionEntry> =
        source.sections.iter().map(|s| (s.key(), s)).collect();
    for s in source.sections.iter().filter(|s| s.sent) {
        let what = format!("section `{}` instance {}", s.idstr, s.instance_id);
        match dst_sections.get(&s.key()) {
            None => out.push(mismatch(
                E,
                what,
                "the source sends it, the destination has no such device".into(),
                "start the destination with the same devices at the same addresses",
            )),
            Some(d) if s.version < d.min_version || s.version > d.max_version => {
                let (detail, fix) = if s.version > d.max_version {
                    (
                        format!(
                            "the source writes version {}, the destination loads {}..={}",
                            s.version, d.min_version, d.max_version
                        ),
                        "the destination's build is older: use a machine type for which the \
                         source writes a version it loads (a pin), or upgrade the destination",
                    )
                } else {
                    (
                        format!(
                            "the source writes version {}, the destination loads {}..={} (it no \
                             longer loads versions that old)",
                            s.version, d.min_version, d.max_version
                        ),
                        "migrate through a build that loads both, or keep the older minimum \
                         version on the destination",
                    )
                };
                out.push(mismatch(E, what, detail, fix));
            }
            Some(_) => {}
        }
    }
    for d in dest.sections.iter().filter(|d| d.sent) {
        if !src_sections.get(&d.key()).is_some_and(|s| s.sent) {
            out.push(mismatch(
                E,
                format!("section `{}` instance {}", d.idstr, d.instance_id),
                "the destination has this device, the source sends no state for it: it would \
                 keep its reset state under a guest that never saw it reset"
                    .into(),
                "same command line / devices on both sides (a device new in this build belongs \
                 behind a machine type or property that leaves it out for older ones)",
            ));
        }
    }

    let dst_ram: BTreeMap<&str, u64> = dest.ram.iter().map(|r| (r.name.as_str(), r.size)).collect();
    let src_ram: BTreeSet<&str> = source.ram.iter().map(|r| r.name.as_str()).collect();
    for r in &source.ram {
        let what = format!("RAM block `{}`", r.name);
        match dst_ram.get(r.name.as_str()) {
            None => out.push(mismatch(
                E,
                what,
                format!(
                    "source {:#x} bytes, the destination has no such block",
                    r.size
                ),
                "same memory, ROM and device configuration on both sides",
            )),
            Some(&d) if d != r.size => {
                let fix = if r.name.contains("rom") || r.name.contains("bios") {
                    "ROM images must be padded to a fixed size (the same file size on both hosts)"
                } else {
                    "start the destination with the same memory size (-m) and devices"
                };
                out.push(mismatch(
                    E,
                    what,
                    format!("source {:#x} bytes, destination {d:#x}", r.size),
                    fix,
                ));
            }
            Some(_) => {}
        }
    }
    // The RAM loader takes exactly the destination's block list (vmstate-migration's RamLoader
    // refuses a stream without one of its blocks), so an extra block is an error too.
    for r in dest
        .ram
        .iter()
        .filter(|r| !src_ram.contains(r.name.as_str()))
    {
        out.push(mismatch(
            E,
            format!("RAM block `{}`", r.name),
            format!(
                "destination {:#x} bytes, the source has no such block",
                r.size
            ),
            "same memory, ROM and device configuration on both sides",
        ));
    }

    for (key, &sv) in &source.compat {
        if let Some(&dv) = dest.compat.get(key) {
            if sv != dv {
                out.push(mismatch(
                    E,
                    format!("compat property `{key}`"),
                    format!(
                        "source {}, destination {} on machine type `{}`",
                        on_off(sv),
                        on_off(dv),
                        source.machine
                    ),
                    "the two builds define this machine type differently (a compat table \
                     changed): set the property explicitly on the destination, or fix the \
                     compat table",
                ));
            }
        }
    }

    if let (Some(s), Some(d)) = (&source.cpu, &dest.cpu) {
        let missing: Vec<&str> = s
            .features
            .difference(&d.features)
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            out.push(mismatch(
                E,
                "vCPU".into(),
                format!(
                    "the source's guest uses {} that the destination's CPU (`{}`) lacks",
                    list(&missing),
                    d.name
                ),
                "choose a CPU model both hosts support",
            ));
        }
        let msrs: Vec<String> = s
            .msrs
            .difference(&d.msrs)
            .map(|m| format!("{m:#x}"))
            .collect();
        if !msrs.is_empty() {
            let msrs: Vec<&str> = msrs.iter().map(String::as_str).collect();
            out.push(mismatch(
                E,
                "vCPU".into(),
                format!(
                    "the source sends MSR{} {} that the destination cannot set",
                    if msrs.len() == 1 { "" } else { "s" },
                    list(&msrs)
                ),
                "choose a CPU model both hosts support (the destination's kernel or CPU lacks \
                 these MSRs)",
            ));
        }
    } else if source.cpu.is_some() {
        out.push(mismatch(
            W,
            "vCPU".into(),
            format!(
                "the source states its model (`{}`), the destination does not: not compared",
                source.cpu.as_ref().map_or("", |c| c.name.as_str())
            ),
            "give the destination's manifest its CPU model",
        ));
    }
    out
}

fn on_off(v: bool) -> &'static str {
    if v {
        "on"
    } else {
        "off"
    }
}

fn list(items: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = items.iter().take(SHOWN).map(|i| format!("`{i}`")).collect();
    if items.len() > SHOWN {
        s.push(format!("and {} more", items.len() - SHOWN));
    }
    s.join(", ")
}

/// Whether the mismatches let the migration go ahead (no [`Severity::Error`]).
#[must_use]
pub fn accepted(found: &[Mismatch]) -> bool {
    found.iter().all(|m| m.severity != Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(machine: &str) -> Manifest {
        Manifest {
            build: None,
            machine: machine.into(),
            sections: vec![SectionEntry {
                idstr: "serial".into(),
                instance_id: 0,
                version: 3,
                min_version: 2,
                max_version: 3,
                sent: true,
            }],
            ram: vec![
                RamEntry {
                    name: "pc.ram".into(),
                    size: 1 << 30,
                },
                RamEntry {
                    name: "pc.rom".into(),
                    size: 0x20000,
                },
            ],
            compat: BTreeMap::from([("kvmclock.x-mach-use-reliable-get-clock".into(), true)]),
            cpu: Some(CpuModel {
                name: "host".into(),
                features: ["sse2", "avx2", "avx512f"].map(String::from).into(),
                msrs: [0x10, 0x1b, 0x6e0].into(),
            }),
        }
    }

    #[test]
    fn equal_manifests_match() {
        let m = manifest("pc-q35-7.2");
        assert_eq!(compare(&m, &m), []);
        assert!(accepted(&compare(&m, &m)));
    }

    #[test]
    fn every_kind_of_difference_is_one_line_with_both_values_and_a_fix() {
        let src = manifest("pc-q35-7.2");
        let mut dst = manifest("pc-q35-7.1");
        dst.sections[0].max_version = 2;
        dst.sections.push(SectionEntry {
            idstr: "0000:00:03.0/virtio-net".into(),
            instance_id: 0,
            version: 11,
            min_version: 11,
            max_version: 11,
            sent: true,
        });
        dst.ram[1].size = 0x10000;
        dst.compat
            .insert("kvmclock.x-mach-use-reliable-get-clock".into(), false);
        if let Some(c) = dst.cpu.as_mut() {
            c.name = "Haswell".into();
            c.features.remove("avx512f");
            c.msrs.remove(&0x6e0);
        }
        let found: Vec<String> = compare(&src, &dst)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            found,
            [
                "machine type: source `pc-q35-7.2`, destination `pc-q35-7.1` — start the \
                 destination with the source's machine type (-M)",
                "section `serial` instance 0: the source writes version 3, the destination \
                 loads 2..=2 — the destination's build is older: use a machine type for which \
                 the source writes a version it loads (a pin), or upgrade the destination",
                "section `0000:00:03.0/virtio-net` instance 0: the destination has this device, \
                 the source sends no state for it: it would keep its reset state under a guest \
                 that never saw it reset — same command line / devices on both sides (a device \
                 new in this build belongs behind a machine type or property that leaves it out \
                 for older ones)",
                "RAM block `pc.rom`: source 0x20000 bytes, destination 0x10000 — ROM images \
                 must be padded to a fixed size (the same file size on both hosts)",
                "compat property `kvmclock.x-mach-use-reliable-get-clock`: source on, \
                 destination off on machine type `pc-q35-7.2` — the two builds define this \
                 machine type differently (a compat table changed): set the property \
                 explicitly on the destination, or fix the compat table",
                "vCPU: the source's guest uses `avx512f` that the destination's CPU (`Haswell`) \
                 lacks — choose a CPU model both hosts support",
                "vCPU: the source sends MSR `0x6e0` that the destination cannot set — choose a CPU \
                 model both hosts support (the destination's kernel or CPU lacks these MSRs)",
            ]
        );
        let sev: Vec<Severity> = compare(&src, &dst).iter().map(|m| m.severity).collect();
        assert_eq!(sev.iter().filter(|s| **s == Severity::Warning).count(), 0);
        assert!(!accepted(&compare(&src, &dst)));
    }

    #[test]
    fn json_round_trip_and_bounds() {
        let m = manifest("pc-q35-7.2");
        assert_eq!(Manifest::from_json(m.to_json().as_bytes()).unwrap(), m);
        let err = Manifest::from_json(b"{\"machine\": 3}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a configuration manifest"), "{err}");
        let big = vec![b' '; MAX_MANIFEST + 1];
        assert!(Manifest::from_json(&big).is_err());
    }
}
