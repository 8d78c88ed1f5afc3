//! QEMU's `PCIDevice` state as a library type: the config space and the INTx levels, with the
//! check QEMU makes when it loads a config space.
//!
//! Every PCI device section of QEMU embeds a `PCIDevice` (vmsd `PCIDevice` v2): `version_id`
//! (`int32 le`), the config space (a device-level codec, vmdesc type `pci config`: 256 bytes,
//! or 4096 for a PCI Express device; QEMU's vmsd lists both entries, each behind a test) and
//! `irq_state` (`pci irq state`, four be32 levels).
//!
//! **The load check.** The destination's device model knows which config bits are read-only
//! for its guest: `cmask` marks the bits that must be the same on both sides (QEMU sets it for
//! the vendor and device id, the capability-list status bit, revision, class code, header type,
//! the capability pointer and each capability it adds), `wmask` the bits the guest may write and
//! `w1cmask` the write-1-to-clear bits. A stream whose config space differs from the
//! destination's in a bit that is in `cmask` and in neither `wmask` nor `w1cmask` comes from
//! another device (another model, revision or set of capabilities): QEMU refuses it with
//! "Bad config data", and so does [`PciDevice`], naming the register, its offset, both values and
//! the checked bits. A capability list that differs (other capabilities, or the same in another
//! order) is reported as such first. The config space is left as it was before the load; loaded
//! through a `Registry`, the whole device is (the registry loads into a staged copy).
//!
//! A device model builds its destination state with [`PciDevice::new`] from a [`PciHeader`]
//! (the read-only identity QEMU puts in `cmask`), or sets [`PciDevice::rules`] itself.

use std::fmt;

use vmstate_runtime::VmState;

/// Bytes of a conventional config space.
pub const CONFIG_SIZE: usize = 256;
/// Bytes of a PCI Express config space.
pub const EXPRESS_CONFIG_SIZE: usize = 4096;
/// The capability pointer register.
const CAP_PTR: usize = 0x34;
/// The status register's "capability list" bit.
const STATUS_CAP_LIST: u8 = 0x10;

/// Which config bits the destination checks, may be written by the guest, or are
/// write-1-to-clear (QEMU's `cmask`, `wmask`, `w1cmask`), one byte per config byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciConfigRules {
    /// Bits that must match the destination's (unless writable or write-1-to-clear).
    pub cmask: Vec<u8>,
    /// Bits the guest may write.
    pub wmask: Vec<u8>,
    /// Write-1-to-clear bits.
    pub w1cmask: Vec<u8>,
}

impl PciConfigRules {
    /// No bit checked: any config space loads (a device model that does not know its masks).
    #[must_use]
    pub fn none(size: usize) -> Self {
        PciConfigRules {
            cmask: vec![0; size],
            wmask: vec![0; size],
            w1cmask: vec![0; size],
        }
    }

    /// The bits of config byte `i` a load must not change.
    fn checked(&self, i: usize) -> u8 {
        let get = |v: &[u8]| v.get(i).copied().unwrap_or(0);
        get(&self.cmask) & !get(&self.wmask) & !get(&self.w1cmask)
    }
}

/// The read-only identity of a conventional (type 0) function, as its config space holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PciHeader {
    /// Vendor id (0x00).
    pub vendor: u16,
    /// Device id (0x02).
    pub device: u16,
    /// Revision id (0x08).
    pub revision: u8,
    /// Class code (0x09..=0x0b): base class, sub-class, programming interface.
    pub class: [u8; 3],
    /// Header type (0x0e; bit 7: multi-function).
    pub header_type: u8,
    /// Subsystem vendor and subsystem id (0x2c, 0x2e).
    pub subsystem: (u16, u16),
    /// Interrupt pin (0x3d; 0 = none, 1..=4 = INTA..INTD).
    pub interrupt_pin: u8,
    /// The capabilities in list order: (offset, capability id).
    pub capabilities: Vec<(u8, u8)>,
}

/// QEMU's `PCIDevice` (vmsd `PCIDevice` v2, nested in every PCI device section).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "PCIDevice",
    version = 2,
    minimum_version = 1,
    nested,
    pre_load = Self::remember_config,
    post_load = Self::check_config,
    validate = Self::check_irq_state
)]
pub struct PciDevice {
    /// The vmsd version of the sender's config layout: at most the destination's.
    #[vmstate(le)]
    pub version_id: i32,
    /// A conventional function's config space.
    #[vmstate(
        buffer,
        vmdesc_type = "pci config",
        rename = "config",
        when = pred(Self::is_conventional),
        keep
    )]
    pub config: [u8; CONFIG_SIZE],
    /// A PCI Express function's config space (all 4096 bytes on the wire).
    #[vmstate(
        buffer,
        vmdesc_type = "pci config",
        rename = "config",
        when = pred(Self::is_express),
        keep
    )]
    pub express_config: [u8; EXPRESS_CONFIG_SIZE],
    /// The level of INTA..INTD as the device drives them (0 or 1).
    /// QEMU's field version 2: the nested struct is always loaded at its own version 2.
    #[vmstate(vmdesc_type = "pci irq state", since = 2, default)]
    pub irq_state: [i32; 4],
    /// Whether this is a PCI Express function (configuration: the destination's own).
    #[vmstate(skip)]
    pub express: bool,
    /// What the destination checks on load (configuration: the destination's own).
    #[vmstate(skip)]
    pub rules: PciConfigRules,
    /// The config space before the load in progress.
    #[vmstate(skip)]
    before_load: Vec<u8>,
}

impl PciDevice {
    /// A conventional function with `header` in its config space and QEMU's checks on it:
    /// vendor, device, revision, class code, header type, the capability pointer, the
    /// capability-list status bit and each capability's id and next pointer must match.
    #[must_use]
    pub fn new(header: &PciHeader) -> Self {
        let mut config = [0u8; CONFIG_SIZE];
        let mut cmask = vec![0u8; CONFIG_SIZE];
        let mut set = |at: usize, bytes: &[u8], checked: bool| {
            config[at..at + bytes.len()].copy_from_slice(bytes);
            if checked {
                cmask[at..at + bytes.len()].fill(0xff);
            }
        };
        set(0x00, &header.vendor.to_le_bytes(), true);
        set(0x02, &header.device.to_le_bytes(), true);
        set(0x08, &[header.revision], true);
        set(
            0x09,
            &[header.class[2], header.class[1], header.class[0]],
            true,
        );
        set(0x0e, &[header.header_type], true);
        set(0x2c, &header.subsystem.0.to_le_bytes(), false);
        set(0x2e, &header.subsystem.1.to_le_bytes(), false);
        set(0x3d, &[header.interrupt_pin], false);
        let first = header.capabilities.first().map_or(0, |c| c.0);
        set(CAP_PTR, &[first], true);
        for (i, &(at, id)) in header.capabilities.iter().enumerate() {
            let next = header.capabilities.get(i + 1).map_or(0, |c| c.0);
            set(usize::from(at), &[id, next], true);
        }
        if first != 0 {
            config[0x06] |= STATUS_CAP_LIST;
        }
        cmask[0x06] = STATUS_CAP_LIST;
        PciDevice {
            version_id: 2,
            config,
            express_config: [0; EXPRESS_CONFIG_SIZE],
            irq_state: [0; 4],
            express: false,
            rules: PciConfigRules {
                cmask,
                ..PciConfigRules::none(CONFIG_SIZE)
            },
            before_load: Vec::new(),
        }
    }

    /// The config space in use (256 or 4096 bytes).
    #[must_use]
    pub fn config_space(&self) -> &[u8] {
        if self.express {
            &self.express_config[..]
        } else {
            &self.config
        }
    }

    fn config_space_mut(&mut self) -> &mut [u8] {
        if self.express {
            &mut self.express_config[..]
        } else {
            &mut self.config
        }
    }

    fn is_conventional(&self) -> bool {
        !self.express
    }

    fn is_express(&self) -> bool {
        self.express
    }

    #[allow(clippy::unnecessary_wraps)]
    fn remember_config(&mut self) -> Result<(), std::convert::Infallible> {
        self.before_load = self.config_space().to_vec();
        Ok(())
    }

    fn check_config(&mut self, _version: u32) -> Result<(), PciConfigError> {
        let local = std::mem::take(&mut self.before_load);
        if local.is_empty() {
            return Ok(());
        }
        match compare_config(self.config_space(), &local, &self.rules) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The destination keeps its config space.
                self.config_space_mut().copy_from_slice(&local);
                Err(e)
            }
        }
    }

    fn check_irq_state(&self) -> Result<(), String> {
        match self.irq_state.iter().position(|&l| l != 0 && l != 1) {
            None => Ok(()),
            Some(pin) => Err(format!(
                "irq_state[{pin}] (INT{}) is {}: a PCI interrupt level is 0 or 1",
                char::from(b'A' + pin as u8),
                self.irq_state[pin]
            )),
        }
    }
}

impl Default for PciDevice {
    fn default() -> Self {
        PciDevice::new(&PciHeader::default())
    }
}

/// Why a config space from the stream does not fit the destination's device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciConfigError {
    /// The capability lists differ.
    Capabilities {
        /// The stream's list: (offset, id).
        stream: Vec<(u8, u8)>,
        /// The destination's list.
        local: Vec<(u8, u8)>,
    },
    /// A checked read-only bit differs.
    ReadOnly {
        /// The register's name.
        register: String,
        /// Its offset.
        offset: usize,
        /// Its width in bytes.
        width: usize,
        /// Its value in the stream (little-endian, as the guest reads it).
        stream: u32,
        /// Its value on the destination.
        local: u32,
        /// Its checked bits.
        checked: u32,
    },
}

impl fmt::Display for PciConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciConfigError::Capabilities { stream, local } => write!(
                f,
                "PCI capability list differs: stream {}, destination {} (the destination's \
                 device has other capabilities, or in another order: same device model and \
                 properties on both sides)",
                caps_text(stream),
                caps_text(local)
            ),
            PciConfigError::ReadOnly {
                register,
                offset,
                width,
                stream,
                local,
                checked,
            } => {
                let w = width * 2;
                write!(
                    f,
                    "PCI config register {register} (offset {offset:#04x}, {width} byte{}): \
                     stream {stream:#0p$x}, destination {local:#0p$x}, read-only bits \
                     {checked:#0p$x} (the destination's device is another model, revision or \
                     configuration: same device model and properties on both sides)",
                    if *width == 1 { "" } else { "s" },
                    p = w + 2
                )
            }
        }
    }
}

impl std::error::Error for PciConfigError {}

fn caps_text(caps: &[(u8, u8)]) -> String {
    if caps.is_empty() {
        return "[none]".to_owned();
    }
    let items: Vec<String> = caps
        .iter()
        .map(|&(at, id)| format!("{at:#04x} {}", cap_name(id)))
        .collect();
    format!("[{}]", items.join(", "))
}

fn cap_name(id: u8) -> String {
    match id {
        0x01 => "power management".into(),
        0x05 => "MSI".into(),
        0x09 => "vendor-specific".into(),
        0x10 => "PCI Express".into(),
        0x11 => "MSI-X".into(),
        0x12 => "SATA".into(),
        other => format!("id {other:#04x}"),
    }
}

/// The capability list of a config space: (offset, id) in list order. A pointer below 0x40,
/// past the end, or back to an offset already seen ends the walk (a loop in hostile input).
#[must_use]
pub fn capabilities(config: &[u8]) -> Vec<(u8, u8)> {
    let mut out = Vec::new();
    if config.len() <= CAP_PTR || config[0x06] & STATUS_CAP_LIST == 0 {
        return out;
    }
    let mut at = usize::from(config[CAP_PTR] & !3);
    while at >= 0x40 && at + 1 < config.len().min(CONFIG_SIZE) {
        if out.iter().any(|&(o, _)| usize::from(o) == at) {
            break;
        }
        // at < 256 here.
        out.push((at as u8, config[at]));
        at = usize::from(config[at + 1] & !3);
    }
    out
}

/// QEMU's config check: the capability lists, then every checked bit.
fn compare_config(
    stream: &[u8],
    local: &[u8],
    rules: &PciConfigRules,
) -> Result<(), PciConfigError> {
    if rules.checked(CAP_PTR) != 0 {
        let (s, l) = (capabilities(stream), capabilities(local));
        if s != l {
            return Err(PciConfigError::Capabilities {
                stream: s,
                local: l,
            });
        }
    }
    for i in 0..stream.len().min(local.len()) {
        if (stream[i] ^ local[i]) & rules.checked(i) == 0 {
            continue;
        }
        let (register, offset, width) = register_at(i, local);
        let read = |v: &[u8]| {
            let mut b = [0u8; 4];
            b[..width].copy_from_slice(&v[offset..offset + width]);
            u32::from_le_bytes(b)
        };
        let mut mask = [0u8; 4];
        for (k, m) in mask.iter_mut().enumerate().take(width) {
            *m = rules.checked(offset + k);
        }
        return Err(PciConfigError::ReadOnly {
            register,
            offset,
            width,
            stream: read(stream),
            local: read(local),
            checked: u32::from_le_bytes(mask),
        });
    }
    Ok(())
}

/// The register holding config byte `i`: (name, offset, width). Type 0 header names; past the
/// header, the capability it is in (on the destination), else "device-specific".
fn register_at(i: usize, local: &[u8]) -> (String, usize, usize) {
    let named = |name: &str, at: usize, w: usize| (name.to_owned(), at, w);
    match i {
        0x00..=0x01 => named("vendor id", 0x00, 2),
        0x02..=0x03 => named("device id", 0x02, 2),
        0x04..=0x05 => named("command", 0x04, 2),
        0x06..=0x07 => named("status", 0x06, 2),
        0x08 => named("revision id", 0x08, 1),
        0x09 => named("programming interface", 0x09, 1),
        0x0a => named("sub-class", 0x0a, 1),
        0x0b => named("class", 0x0b, 1),
        0x0c => named("cache line size", 0x0c, 1),
        0x0d => named("latency timer", 0x0d, 1),
        0x0e => named("header type", 0x0e, 1),
        0x0f => named("BIST", 0x0f, 1),
        0x10..=0x27 => {
            let bar = (i - 0x10) / 4;
            (format!("BAR{bar}"), 0x10 + bar * 4, 4)
        }
        0x28..=0x2b => named("CardBus CIS pointer", 0x28, 4),
        0x2c..=0x2d => named("subsystem vendor id", 0x2c, 2),
        0x2e..=0x2f => named("subsystem id", 0x2e, 2),
        0x30..=0x33 => named("expansion ROM base", 0x30, 4),
        0x34 => named("capabilities pointer", 0x34, 1),
        0x3c => named("interrupt line", 0x3c, 1),
        0x3d => named("interrupt pin", 0x3d, 1),
        0x3e => named("min grant", 0x3e, 1),
        0x3f => named("max latency", 0x3f, 1),
        0x35..=0x3b => named("reserved", i, 1),
        _ => {
            let caps = capabilities(local);
            // The capability starting at or below `i` whose extent (up to the next capability
            // above it, at most 64 bytes) covers it.
            let start = caps
                .iter()
                .map(|&(at, id)| (usize::from(at), id))
                .filter(|&(at, _)| at <= i)
                .max_by_key(|&(at, _)| at);
            let inside = start.filter(|&(at, _)| {
                let end = caps
                    .iter()
                    .map(|&(o, _)| usize::from(o))
                    .filter(|&o| o > at)
                    .min()
                    .unwrap_or(at + 64);
                i < end.min(at + 64)
            });
            match inside {
                Some((at, id)) => (
                    format!("{} capability at {at:#04x}, byte {}", cap_name(id), i - at),
                    i,
                    1,
                ),
                None => named("device-specific", i, 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ahci() -> PciHeader {
        PciHeader {
            vendor: 0x8086,
            device: 0x2922,
            revision: 0x02,
            class: [0x01, 0x06, 0x01],
            header_type: 0,
            subsystem: (0x1af4, 0x1100),
            interrupt_pin: 1,
            capabilities: vec![(0x80, 0x05), (0xa8, 0x12)],
        }
    }

    #[test]
    fn header_layout_and_capabilities() {
        let d = PciDevice::new(&ahci());
        assert_eq!(&d.config[..4], &[0x86, 0x80, 0x22, 0x29]);
        assert_eq!(&d.config[8..12], &[0x02, 0x01, 0x06, 0x01]);
        assert_eq!((d.config[6], d.config[0x34]), (0x10, 0x80));
        assert_eq!(capabilities(&d.config), vec![(0x80, 0x05), (0xa8, 0x12)]);
        assert_eq!(d.rules.checked(0x04), 0, "command is not checked");
        assert_eq!(d.rules.checked(0x02), 0xff);
    }

    #[test]
    fn messages_name_register_offset_values_and_bits() {
        let d = PciDevice::new(&ahci());
        let mut s = d.config;
        s[0x02] = 0x18;
        let e = compare_config(&s, &d.config, &d.rules)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "PCI config register device id (offset 0x02, 2 bytes): stream 0x2918, \
                 destination 0x2922, read-only bits 0xffff"
            ),
            "{e}"
        );
        let mut s = d.config;
        s[0xa8] = 0x11; // another capability where SATA was
        let e = compare_config(&s, &d.config, &d.rules)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "PCI capability list differs: stream [0x80 MSI, 0xa8 MSI-X], destination \
                 [0x80 MSI, 0xa8 SATA]"
            ),
            "{e}"
        );
        let mut s = d.config;
        s[0x81] = 0; // MSI's next pointer: the list ends after MSI
        let e = compare_config(&s, &d.config, &d.rules)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "PCI capability list differs: stream [0x80 MSI], destination [0x80 MSI, 0xa8 SATA]"
            ),
            "{e}"
        );
        // Writable registers may differ.
        let mut s = d.config;
        s[0x04] = 0x07;
        s[0x3c] = 0x0b;
        assert_eq!(compare_config(&s, &d.config, &d.rules), Ok(()));
    }

    #[test]
    fn hostile_capability_loops_end() {
        let mut c = [0u8; CONFIG_SIZE];
        c[0x06] = STATUS_CAP_LIST;
        c[0x34] = 0x40;
        c[0x40] = 0x05;
        c[0x41] = 0x40; // points at itself
        assert_eq!(capabilities(&c), vec![(0x40, 0x05)]);
        c[0x41] = 0xff; // past the end (aligned down to 0xfc, then 0xfd is the last byte)
        c[0xfc] = 0x11;
        c[0xfd] = 0x10; // below 0x40: ends
        assert_eq!(capabilities(&c), vec![(0x40, 0x05), (0xfc, 0x11)]);
    }
}
