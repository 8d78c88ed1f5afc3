//! The allowances of QEMU's `scripts/vmstate-static-checker.py`, as data: section renames that
//! kept the wire format, per-Description groups of interchangeable field names, and fields
//! moved into a nested struct.

use super::dump::{Desc, Field};

/// Section (QOM type) renames that kept the wire format.
const SECTION_RENAMES: &[(&str, &str)] = &[("ICH9 LPC", "ICH9-LPC"), ("e1000-82540em", "e1000")];

pub(crate) fn renamed_section(key: &str) -> Option<&'static str> {
    SECTION_RENAMES.iter().find_map(|&(a, b)| {
        if a == key {
            Some(b)
        } else if b == key {
            Some(a)
        } else {
            None
        }
    })
}

/// Per Description (or, for Description names, per section): groups of names that are
/// interchangeable. Any two names of one group match.
const CHANGED_NAMES: &[(&str, &[&str])] = &[
    ("apic", &["timer", "timer_expiry"]),
    ("e1000", &["dev", "parent_obj"]),
    ("ehci", &["dev", "pcidev"]),
    ("I440FX", &["dev", "parent_obj"]),
    ("ich9_ahci", &["card", "parent_obj"]),
    ("ich9-ahci", &["ahci", "ich9_ahci"]),
    ("ioh3420", &["PCIDevice", "PCIEDevice"]),
    (
        "ioh-3240-express-root-port",
        &[
            "port.br.dev",
            "parent_obj.parent_obj.parent_obj",
            "port.br.dev.exp.aer_log",
            "parent_obj.parent_obj.parent_obj.exp.aer_log",
        ],
    ),
    (
        "cirrus_vga",
        &[
            "hw_cursor_x",
            "vga.hw_cursor_x",
            "hw_cursor_y",
            "vga.hw_cursor_y",
        ],
    ),
    ("lsiscsi", &["dev", "parent_obj"]),
    ("mch", &["d", "parent_obj"]),
    (
        "pci_bridge",
        &["bridge.dev", "parent_obj", "bridge.dev.shpc", "shpc"],
    ),
    ("pcnet", &["pci_dev", "parent_obj"]),
    ("PIIX3", &["pci_irq_levels", "pci_irq_levels_vmstate"]),
    (
        "piix4_pm",
        &[
            "dev",
            "parent_obj",
            "pci0_status",
            "acpi_pci_hotplug.acpi_pcihp_pci_status[0x0]",
            "pm1a.sts",
            "ar.pm1.evt.sts",
            "pm1a.en",
            "ar.pm1.evt.en",
            "pm1_cnt.cnt",
            "ar.pm1.cnt.cnt",
            "tmr.timer",
            "ar.tmr.timer",
            "tmr.overflow_time",
            "ar.tmr.overflow_time",
            "gpe",
            "ar.gpe",
        ],
    ),
    ("rtl8139", &["dev", "parent_obj"]),
    ("qxl", &["num_surfaces", "ssd.num_surfaces"]),
    (
        "usb-ccid",
        &["abProtocolDataStructure", "abProtocolDataStructure.data"],
    ),
    ("usb-host", &["dev", "parent_obj"]),
    ("usb-mouse", &["usb-ptr-queue", "HIDPointerEventQueue"]),
    ("usb-tablet", &["usb-ptr-queue", "HIDPointerEventQueue"]),
    ("vmware_vga", &["card", "parent_obj"]),
    ("vmware_vga_internal", &["depth", "new_depth"]),
    ("xhci", &["pci_dev", "parent_obj"]),
    ("x3130-upstream", &["PCIDevice", "PCIEDevice"]),
    (
        "xio3130-express-downstream-port",
        &[
            "port.br.dev",
            "parent_obj.parent_obj.parent_obj",
            "port.br.dev.exp.aer_log",
            "parent_obj.parent_obj.parent_obj.exp.aer_log",
        ],
    ),
    ("xio3130-downstream", &["PCIDevice", "PCIEDevice"]),
    (
        "xio3130-express-upstream-port",
        &[
            "br.dev",
            "parent_obj.parent_obj",
            "br.dev.exp.aer_log",
            "parent_obj.parent_obj.exp.aer_log",
        ],
    ),
    (
        "spapr_pci",
        &[
            "dma_liobn[0]",
            "mig_liobn",
            "mem_win_addr",
            "mig_mem_win_addr",
            "mem_win_size",
            "mig_mem_win_size",
            "io_win_addr",
            "mig_io_win_addr",
            "io_win_size",
            "mig_io_win_size",
        ],
    ),
];

/// Whether `a` and `b` are the same name, or both in the allowlist group of `scope`.
pub(crate) fn names_match(scope: &str, a: &str, b: &str) -> bool {
    a == b
        || CHANGED_NAMES
            .iter()
            .find(|(s, _)| *s == scope)
            .is_some_and(|(_, group)| group.contains(&a) && group.contains(&b))
}

/// If `field` is a nested struct whose first field matches `name`, that struct's Description.
pub(crate) fn substruct_starting_with<'f>(field: &'f Field, name: &str) -> Option<&'f Desc> {
    let desc = field.desc.as_ref()?;
    let first = desc.fields.as_ref()?.first()?;
    names_match(&desc.name, &first.name, name).then_some(desc)
}
