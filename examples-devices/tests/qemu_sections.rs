//! The typed QEMU 7.2 sections (`examples_devices::qemu`) against the golden streams QEMU 7.2
//! wrote: every section loads, saves the same bytes and describes itself in the vmdesc exactly
//! as QEMU did; and the re-encoder types exactly the sections the table lists.

mod common;
mod tools;

use examples_devices::qemu::{self, QemuState, SectionCx};
use examples_devices::reencode::{reencode, ReencodeOptions};
use vmstate_runtime::decode::{decode_stream, SectionKind};
use vmstate_runtime::vmdesc::{write_device, DescBody, DescDevice};

use common::{golden_dir, golden_with_vmdesc};

fn machine_of(stem: &str, named: Option<&str>) -> vmstate_runtime::MachineType {
    let name = named.unwrap_or(if stem.contains("q35") {
        "pc-q35-7.2"
    } else {
        "pc-i440fx-7.2"
    });
    examples_devices::catalog().resolve(name).unwrap()
}

/// QEMU's vmdesc entry for (idstr, instance) in `input`, as JSON text.
fn qemu_entry(input: &[u8], idstr: &str, inst: u32) -> String {
    let d = decode_stream(input).unwrap();
    let (range, _) = d.vmdesc.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&input[range.start + 5..range.end]).unwrap();
    let dev = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == idstr && d["instance_id"] == inst)
        .unwrap_or_else(|| panic!("{idstr} {inst} not in the vmdesc"))
        .clone();
    dev.to_string()
}

/// Every section with vmsd name `name` in every golden stream: loads into `T`, saves the
/// same bytes and the same vmdesc entry as QEMU wrote. Returns the loaded states.
fn check_section<T: QemuState>(name: &str) -> Vec<(String, u32, T)> {
    let mut seen = Vec::new();
    let options = ReencodeOptions::default();
    for (stem, named) in golden_with_vmdesc() {
        let input = std::fs::read(golden_dir().join(format!("{stem}.mig"))).unwrap();
        let m = machine_of(&stem, named);
        let d = decode_stream(&input).unwrap();
        for s in d
            .sections
            .iter()
            .filter(|s| s.kind == SectionKind::Full && qemu::vmsd_name(&s.idstr) == name)
        {
            let cx = SectionCx::of(&input, s, &m, None, &options);
            let (bytes, desc, dev) = qemu::load_and_save(T::for_machine(&m), &cx)
                .unwrap_or_else(|e| panic!("{stem} {}: {e}", s.idstr));
            assert_eq!(bytes, cx.payload, "{stem} {} {}", s.idstr, s.instance_id);
            let mut ours = String::new();
            write_device(
                &mut ours,
                &DescDevice {
                    name: s.idstr.clone(),
                    instance_id: s.instance_id,
                    body: DescBody::Vmsd(desc),
                },
            );
            // Compact re-serialisations (key order kept: preserve_order) must be equal.
            let ours = serde_json::from_str::<serde_json::Value>(&ours)
                .unwrap()
                .to_string();
            let theirs = qemu_entry(&input, &s.idstr, s.instance_id);
            assert_eq!(ours, theirs, "{stem} {} vmdesc", s.idstr);
            seen.push((stem.clone(), s.instance_id, dev));
        }
    }
    assert!(!seen.is_empty(), "no golden stream has `{name}`");
    assert_eq!(<T as vmstate_runtime::VmState>::SCHEMA.name, name);
    seen
}

fn in_stream<'a, T>(v: &'a [(String, u32, T)], stem: &str, inst: u32) -> &'a T {
    &v.iter()
        .find(|(s, i, _)| s == stem && *i == inst)
        .unwrap_or_else(|| panic!("{stem} {inst}"))
        .2
}

/// The typed sections of each golden stream after a re-encode; grows as sections are typed.
const TYPED_7_2: &[&str] = &[
    "timer",
    "cpu_common",
    "kvm-tpr-opt",
    "apic",
    "fw_cfg",
    "PCIHost",
    "PCIBUS",
    "dma",
    "i8259",
    "ioapic",
    "hpet",
    "mc146818rtc",
    "i8254",
    "pcspk",
    "fdc",
    "ps2kbd",
    "ps2mouse",
    "pckbd",
    "vmmouse",
    "port92",
    "i2c_bus",
    "serial",
    "acpi_build",
    "globalstate",
    "I440FX",
    "PIIX3",
    "mch",
    "ich9_smb",
    "cpu",
    "ICH9LPC",
    "piix4_pm",
    "ide",
    "ich9_ahci",
];

#[test]
fn reencode_types_the_table_sections_of_every_golden_stream() {
    let cat = examples_devices::catalog();
    for (stem, named) in golden_with_vmdesc() {
        let input = std::fs::read(golden_dir().join(format!("{stem}.mig"))).unwrap();
        let options = ReencodeOptions {
            machine: named.map(str::to_owned),
            ..ReencodeOptions::default()
        };
        let (out, report) =
            reencode(&input, &cat, &options).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(out, input, "{stem}");
        assert!(
            report.identical_before_vmdesc && report.identical_vmdesc,
            "{stem}"
        );
        let d = decode_stream(&input).unwrap();
        let full: Vec<&str> = d
            .sections
            .iter()
            .filter(|s| s.kind == SectionKind::Full)
            .map(|s| qemu::vmsd_name(&s.idstr))
            .collect();
        let typed: Vec<&str> = report
            .typed
            .iter()
            .map(|(i, _, _)| qemu::vmsd_name(i))
            .collect();
        let opaque: Vec<&str> = report
            .opaque
            .iter()
            .map(|(i, _)| qemu::vmsd_name(i))
            .collect();
        let want_typed: Vec<&str> = full
            .iter()
            .copied()
            .filter(|n| TYPED_7_2.contains(n))
            .collect();
        let want_opaque: Vec<&str> = full
            .iter()
            .copied()
            .filter(|n| !TYPED_7_2.contains(n))
            .collect();
        assert_eq!(typed, want_typed, "{stem}");
        assert_eq!(opaque, want_opaque, "{stem}");
        // Every device section of QEMU 7.2's pc machines is typed: nothing is opaque, and
        // the only sections copied are RAM's (iterative, START/PART/END).
        assert!(
            opaque.is_empty() && want_opaque.is_empty(),
            "{stem}: {opaque:?}"
        );
        assert!(
            !report.copied.is_empty() && report.copied.iter().all(|(i, _, _)| i == "ram"),
            "{stem}: {:?}",
            report.copied
        );
        for n in [
            "cpu",
            "timer",
            "cpu_common",
            "fw_cfg",
            "PCIBUS",
            "dma",
            "i8259",
            "globalstate",
            "pckbd",
        ] {
            assert!(typed.contains(&n), "{stem}: {n} {typed:?}");
        }
    }
}

#[test]
fn timer() {
    let v = check_section::<qemu::misc::TimerState>("timer");
    assert_eq!(in_stream(&v, "rtc-vm", 0).cpu_clock_offset, 0x596e_9a31);
    assert_eq!(in_stream(&v, "idle", 0).cpu_clock_offset, 0);
}

#[test]
fn cpu_common() {
    let v = check_section::<qemu::cpu::CpuCommon>("cpu_common");
    assert_eq!(in_stream(&v, "idle", 0).halted, 0);
    // The "cli; hlt" firmware leaves the CPU halted.
    assert_eq!(in_stream(&v, "rtc-vm", 0).halted, 1);
}

#[test]
fn kvm_tpr_opt() {
    let v = check_section::<qemu::cpu::KvmTprOpt>("kvm-tpr-opt");
    let t = in_stream(&v, "idle", 0);
    assert_eq!((t.state, t.rom_state.up.get_tpr.len()), (0, 8));
}

#[test]
fn fw_cfg() {
    let v = check_section::<qemu::misc::FwCfg>("fw_cfg");
    // 7.2: both subsections (the ACPI blob sizes); 2.3: neither.
    let f = in_stream(&v, "idle", 0);
    assert_eq!(
        (f.table_mr_size, f.linker_mr_size, f.rsdp_mr_size),
        (0x20000, 0x1000, 20)
    );
    assert_eq!(in_stream(&v, "machine-pc-i440fx-2.3", 0).table_mr_size, 0);
}

/// `fw_cfg` version 1 sent the read offset as 16 bits (QEMU's `VMSTATE_UINT16_HACK`, only in
/// version-1 streams): such a payload loads into `cur_offset`, and the state saves as version
/// 2 with the 32-bit offset.
#[test]
fn fw_cfg_loads_version_1_with_its_16_bit_offset() {
    use vmstate_runtime::{load_payload, save_payload, MachineCatalog};
    let m = MachineCatalog::qemu_pc().resolve("pc-i440fx-2.4").unwrap();
    let mut f = qemu::misc::FwCfg::default();
    load_payload(&mut f, &[0x00, 0x19, 0x12, 0x34], 1, &m).unwrap();
    assert_eq!(
        (f.cur_entry, f.cur_offset, f.cur_offset_v1),
        (0x19, 0x1234, 0)
    );
    let (v, bytes, desc) = save_payload(&f, &m).unwrap();
    assert_eq!((v, bytes), (2, vec![0x00, 0x19, 0x00, 0x00, 0x12, 0x34]));
    // The vmdesc names the sent entry as QEMU's does (the second `cur_offset`).
    let names: Vec<_> = desc.fields.iter().map(|f| f.name.to_string()).collect();
    assert_eq!(names, ["cur_entry", "cur_offset[1]"]);
}

#[test]
fn kvmclock_subsection_follows_the_compat_property() {
    // The bytes QEMU 7.2 with KVM writes (`needs_kvm_and_qemu` checks them against QEMU): be64
    // clock, then on 2.9 and later the subsection `kvmclock/clock_is_reliable` v1 with one bool.
    let clock = qemu::misc::KvmClock {
        clock: 0x848_de23,
        clock_is_reliable: true,
    };
    let save = |m: &str| {
        let m = examples_devices::catalog().resolve(m).unwrap();
        vmstate_runtime::save_payload(&clock, &m).unwrap().1
    };
    let plain = [0, 0, 0, 0, 0x08, 0x48, 0xde, 0x23];
    assert_eq!(save("pc-i440fx-2.8"), plain);
    let mut with_sub = plain.to_vec();
    with_sub.push(0x05); // QEMU_VM_SUBSECTION
    with_sub.push(26);
    with_sub.extend_from_slice(b"kvmclock/clock_is_reliable");
    with_sub.extend_from_slice(&[0, 0, 0, 1, 1]);
    assert_eq!(save("pc-i440fx-2.9"), with_sub);
    assert_eq!(save("pc-q35-7.2"), with_sub);
}

#[test]
fn pci_functions() {
    let v = check_section::<qemu::pcidev::I440fx>("I440FX");
    let cfg = &in_stream(&v, "idle", 0).parent_obj;
    assert_eq!(
        (cfg.version_id, &cfg.config[..4]),
        (2, &[0x86, 0x80, 0x37, 0x12][..])
    );
    let p = check_section::<qemu::pcidev::Piix3>("PIIX3");
    assert_eq!(in_stream(&p, "idle", 0).dev.config[0x0e], 0x80); // multi-function
    let m = check_section::<qemu::pcidev::Mch>("mch");
    assert_eq!(
        &in_stream(&m, "machine-pc-q35-7.2", 0).parent_obj.config[..4],
        &[0x86, 0x80, 0xc0, 0x29]
    );
    let s = check_section::<qemu::pcidev::Ich9Smb>("ich9_smb");
    let smb = in_stream(&s, "machine-pc-q35-7.2", 0);
    assert!(smb.smb.op_done && !smb.irq_enabled);
    assert_eq!(smb.dev.config[0x3d], 1); // INTA
}

/// A PCI Express function sends its 4096-byte config space, described as QEMU's second
/// `config` entry, and the load check covers the extended space.
#[test]
fn express_functions_send_4096_bytes_under_config_1() {
    use vmstate_runtime::schema::MachineVersion;
    use vmstate_runtime::vmdesc::{write_device, DescBody, DescDevice};
    use vmstate_runtime::{load_payload, save_payload, MachineType, VmState};

    #[derive(Debug, Clone, PartialEq, Eq, VmState)]
    #[vmstate(name = "nvme", version = 1)]
    struct Nvme {
        parent_obj: qemu::pci::PciDevice,
    }
    let m = MachineType::bare("myvm-1.0", MachineVersion { major: 1, minor: 0 });
    let mut dev = Nvme {
        parent_obj: qemu::pci::PciDevice::new(&qemu::pci::PciHeader {
            vendor: 0x1b36,
            device: 0x0010,
            revision: 2,
            class: [0x01, 0x08, 0x02],
            capabilities: vec![(0x40, 0x10)],
            ..qemu::pci::PciHeader::default()
        }),
    };
    dev.parent_obj.express = true;
    dev.parent_obj.express_config[..256].copy_from_slice(&dev.parent_obj.config);
    dev.parent_obj.express_config[0x100] = 0x01; // an extended capability header
    dev.parent_obj.rules = qemu::pci::PciConfigRules {
        cmask: {
            let mut c = dev.parent_obj.rules.cmask.clone();
            c.resize(qemu::pci::EXPRESS_CONFIG_SIZE, 0);
            c[0x100] = 0xff;
            c
        },
        ..qemu::pci::PciConfigRules::none(qemu::pci::EXPRESS_CONFIG_SIZE)
    };
    let (v, bytes, desc) = save_payload(&dev, &m).unwrap();
    assert_eq!(bytes.len(), 4 + qemu::pci::EXPRESS_CONFIG_SIZE + 16);
    let mut json = String::new();
    write_device(
        &mut json,
        &DescDevice {
            name: "nvme".into(),
            instance_id: 0,
            body: DescBody::Vmsd(desc),
        },
    );
    assert!(
        json.contains(r#"{"name": "config[1]", "type": "pci config", "size": 4096}"#),
        "{json}"
    );
    let mut back = dev.clone();
    load_payload(&mut back, &bytes, v, &m).unwrap();
    assert_eq!(back, dev);
    // A checked bit in the extended space differs: refused, naming the offset.
    let mut bad = bytes.clone();
    bad[4 + 0x100] = 0x02;
    let err = load_payload(&mut back, &bad, v, &m)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("PCI config register device-specific (offset 0x100, 1 byte): stream 0x02, destination 0x01"),
        "{err}"
    );
    assert_eq!(back.parent_obj.express_config[0x100], 0x01);
}

#[test]
fn ich9_lpc() {
    let v = check_section::<qemu::acpi::Ich9Lpc>("ICH9LPC");
    let lpc = in_stream(&v, "machine-pc-q35-7.2", 0);
    assert_eq!(&lpc.d.config[..4], &[0x86, 0x80, 0x18, 0x29]);
    assert_eq!(lpc.d.config[0x0e], 0x80); // multi-function
    assert_eq!(lpc.pm.pm1_evt_sts, 0x0001);
    // The TCO watchdog's registers (subsection ich9_pm/tco) as QEMU reset them.
    let tco = &lpc.pm.tco_regs;
    assert_eq!((tco.cnt2, tco.tmr, tco.sw_irq_gen), (0x0008, 0x0004, 0x03));
    assert_eq!(tco.expire_time, -1);
    assert_eq!(lpc.rst_cnt, 0);
}

#[test]
fn piix4_pm() {
    let v = check_section::<qemu::acpi::Piix4Pm>("piix4_pm");
    let pm = in_stream(&v, "idle", 0);
    assert_eq!(&pm.parent_obj.config[..4], &[0x86, 0x80, 0x13, 0x71]);
    assert_eq!(pm.parent_obj.config[0x3d], 1); // INTA
    assert_eq!(pm.pm1_evt_sts, 0x0001);
    assert!(pm.smb.op_done && pm.smb.smb_auxctl == 0x02);
    // pc-i440fx-2.3: no SMBus state (before 4.0) and no acpi_index (before 7.0); the golden
    // stream's bytes and vmdesc say so, and the struct keeps its defaults there.
    let old = in_stream(&v, "machine-pc-i440fx-2.3", 0);
    assert_eq!(old.smb, qemu::pcidev::PmSmb::default());
    assert_eq!(old.acpi_index, 0);
}

#[test]
fn ide_and_ahci() {
    let v = check_section::<qemu::ide::PciIde>("ide");
    let ide = in_stream(&v, "idle", 0);
    assert_eq!(&ide.parent_obj.config[..4], &[0x86, 0x80, 0x10, 0x70]);
    assert_eq!(&ide.parent_obj.config[0x09..0x0c], &[0x80, 0x01, 0x01]);
    let d0 = &ide.bus0_ifs[0];
    assert_eq!((d0.mult_sectors, d0.select, d0.status), (16, 0xa0, 0x50));
    assert!(ide.bus0_ifs.iter().all(|d| d.identify_set == 0));
    let a = check_section::<qemu::ide::Ich9Ahci>("ich9_ahci");
    let ahci = in_stream(&a, "machine-pc-q35-7.2", 0);
    assert_eq!(&ahci.parent_obj.config[..4], &[0x86, 0x80, 0x22, 0x29]);
    assert_eq!(ahci.ahci.ports, 6);
    // Capabilities: MSI at 0x80, then SATA at 0xa8.
    let c = &ahci.parent_obj.config;
    assert_eq!(
        (c[0x34], c[0x80], c[0x81], c[0xa8]),
        (0x80, 0x05, 0xa8, 0x12)
    );
}

/// A stream whose AHCI function lists its capabilities in the other order (SATA at 0xa8
/// first, then MSI at 0x80) is refused before any register is compared, naming both lists.
#[test]
fn ahci_capabilities_in_another_order_are_refused() {
    let mut input = std::fs::read(golden_dir().join("machine-pc-q35-7.2.mig")).unwrap();
    let d = decode_stream(&input).unwrap();
    let s = d
        .sections
        .iter()
        .find(|s| s.kind == SectionKind::Full && s.idstr.ends_with("/ich9_ahci"))
        .unwrap();
    let cfg = s.payload_range.start + 4;
    input[cfg + 0x34] = 0xa8; // list head → SATA
    input[cfg + 0xa9] = 0x80; // SATA → MSI
    input[cfg + 0x81] = 0x00; // MSI ends the list
    let err = reencode(
        &input,
        &examples_devices::catalog(),
        &ReencodeOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("PCI capability list differs: stream [0xa8 SATA, 0x80 MSI], destination [0x80 MSI, 0xa8 SATA]"),
        "{err}"
    );
    assert!(err.contains("ich9_ahci"), "{err}");
}

/// `idle.mig` with the config byte `at` of the I440FX section's PCI state set to `value`.
fn i440fx_config_changed(changes: &[(usize, u8)]) -> Vec<u8> {
    let mut input = std::fs::read(golden_dir().join("idle.mig")).unwrap();
    let payload = i440fx_payload(&input);
    // The payload starts with PCIDevice's be32 version_id, then the 256 config bytes.
    for &(at, value) in changes {
        input[payload.start + 4 + at] = value;
    }
    input
}

/// Where the I440FX section's payload is in a stream.
fn i440fx_payload(input: &[u8]) -> std::ops::Range<usize> {
    let d = decode_stream(input).unwrap();
    d.sections
        .iter()
        .find(|s| s.kind == SectionKind::Full && s.idstr.ends_with("/I440FX"))
        .unwrap()
        .payload_range
        .clone()
}

#[test]
fn pci_config_from_another_device_is_refused_naming_the_register() {
    let cat = examples_devices::catalog();
    let options = ReencodeOptions::default();
    // Device id 0x1237 → 0x1238: a read-only register QEMU checks.
    let err = reencode(&i440fx_config_changed(&[(0x02, 0x38)]), &cat, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "PCI config register device id (offset 0x02, 2 bytes): stream 0x1238, \
             destination 0x1237, read-only bits 0xffff"
        ),
        "{err}"
    );
    assert!(
        err.contains("I440FX") && err.contains("parent_obj"),
        "{err}"
    );
    // Class code: the sub-class byte.
    let err = reencode(&i440fx_config_changed(&[(0x0a, 0x04)]), &cat, &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("register sub-class (offset 0x0a, 1 byte)"),
        "{err}"
    );
    // A capability list where the destination has none.
    // (Status 0x10: the capability list bit; MSI at 0x40.)
    let input = i440fx_config_changed(&[(0x34, 0x40), (0x06, 0x10), (0x40, 0x05)]);
    let err = reencode(&input, &cat, &options).unwrap_err().to_string();
    assert!(
        err.contains("PCI capability list differs: stream [0x40 MSI], destination [none]"),
        "{err}"
    );
    // Writable registers (command, interrupt line) may differ: the stream's values load.
    let input = i440fx_config_changed(&[(0x04, 0x07), (0x3c, 0x0b)]);
    let (out, report) = reencode(&input, &cat, &options).unwrap();
    assert_eq!(out, input);
    assert!(report.typed.iter().any(|t| t.0.ends_with("/I440FX")));
}

#[test]
fn pci_load_errors_leave_the_config_space_unchanged() {
    use qemu::QemuState;
    let m = machine_of("idle", None);
    let input = i440fx_config_changed(&[(0x02, 0x38)]);
    let mut dev = qemu::pcidev::I440fx::for_machine(&m);
    let before = dev.clone();
    let payload = &input[i440fx_payload(&input)];
    assert!(vmstate_runtime::load_payload(&mut dev, payload, 3, &m).is_err());
    assert_eq!(dev.parent_obj.config, before.parent_obj.config);
    // An INTx level other than 0 or 1 is refused (QEMU's `pci irq state` rule).
    let mut bad = payload.to_vec();
    bad[4 + 256 + 3] = 2; // irq_state[0] = 2
    let mut dev = qemu::pcidev::I440fx::for_machine(&m);
    bad[4 + 2] = 0x37; // a valid device id again
    let err = vmstate_runtime::load_payload(&mut dev, &bad, 3, &m)
        .unwrap_err()
        .to_string();
    assert!(err.contains("irq_state[0] (INTA) is 2"), "{err}");
}

#[test]
fn x86_cpu() {
    use qemu::x86cpu::X86Cpu;
    let v = check_section::<X86Cpu>("cpu");
    let cpu = in_stream(&v, "idle", 0);
    // A CPU at reset: CS base 0xffff0000 and IP 0xfff0, CR0 with CD, NW and ET, MXCSR's default,
    // and the TCG streams' one subsection.
    assert_eq!((cpu.segs[1].base, cpu.eip), (0xffff_0000, 0xfff0));
    assert_eq!(cpu.cr0, 0x6000_0010);
    assert_eq!(cpu.mxcsr, 0x1f80);
    assert_eq!(cpu.received, [false, true]);
    assert_eq!(cpu.fpregs.len(), 8);
}

/// The x87 registers travel through QEMU's temporary view (`fpreg_tmp`): the wire's mantissa
/// and exponent land in the register and are written back from it.
#[test]
fn x86_cpu_fpregs_go_through_the_temporary_view() {
    use qemu::x86cpu::X86Cpu;
    let input = std::fs::read(golden_dir().join("idle.mig")).unwrap();
    let d = decode_stream(&input).unwrap();
    let s = d.sections.iter().find(|s| s.idstr == "cpu").unwrap();
    let mut payload = input[s.payload_range.clone()].to_vec();
    // env.fpregs follows regs (16 × 8), eip, eflags (8 each), hflags (4) and four u16s.
    let at = 16 * 8 + 8 + 8 + 4 + 4 * 2 + 3 * 10; // fpregs[3]
    payload[at..at + 8].copy_from_slice(&0x8000_0000_0000_0001u64.to_be_bytes());
    payload[at + 8..at + 10].copy_from_slice(&0x3fffu16.to_be_bytes());
    let m = machine_of("idle", None);
    let opts = ReencodeOptions::default();
    let cx = SectionCx {
        payload: &payload,
        version: s.version,
        base: 0,
        instance_id: 0,
        machine: &m,
        vclock: None,
        options: &opts,
    };
    let (bytes, _, cpu) = qemu::load_and_save(X86Cpu::for_machine(&m), &cx).unwrap();
    assert_eq!(bytes, payload);
    assert_eq!(
        (cpu.fpregs[3].mant, cpu.fpregs[3].exp),
        (0x8000_0000_0000_0001, 0x3fff)
    );
    assert_eq!(cpu.fpregs[2].mant, 0);
    // A subsection this model does not declare fails the load, naming it.
    let extra = with_subsection(&payload, "cpu/msr_smi_count", 1, &7u64.to_be_bytes());
    let cx = SectionCx {
        payload: &extra,
        ..cx
    };
    let err = qemu::load_and_save(X86Cpu::for_machine(&m), &cx)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cpu/msr_smi_count"), "{err}");
}

#[test]
fn pci_host_and_bus() {
    let h = check_section::<qemu::chipset::PciHost>("PCIHost");
    assert!(h.iter().all(|(s, _, _)| s != "machine-pc-i440fx-2.3"));
    let b = check_section::<qemu::chipset::PciBus>("PCIBUS");
    assert_eq!(in_stream(&b, "idle", 0).irq_count.len(), 4);
    assert_eq!(in_stream(&b, "machine-pc-q35-7.2", 0).nirq, 8);
    assert_eq!(in_stream(&b, "machine-pc-q35-7.2", 0).irq_count.len(), 8);
}

#[test]
fn pci_bus_line_count_must_match_the_destination() {
    // An i440fx stream (4 lines) into a q35 bus (8 lines) is refused, naming the field.
    let input = std::fs::read(golden_dir().join("idle.mig")).unwrap();
    let d = decode_stream(&input).unwrap();
    let s = d.sections.iter().find(|s| s.idstr == "PCIBUS").unwrap();
    let q35 = examples_devices::catalog().resolve("pc-q35-7.2").unwrap();
    let options = ReencodeOptions::default();
    let cx = SectionCx::of(&input, s, &q35, None, &options);
    let e = qemu::load_and_save(qemu::chipset::PciBus::for_machine(&q35), &cx).unwrap_err();
    assert!(e.to_string().contains("nirq"), "{e}");
}

#[test]
fn dma_and_i8259() {
    let d = check_section::<qemu::chipset::Dma>("dma");
    assert_eq!(in_stream(&d, "idle", 0).dshift, 0);
    assert_eq!(in_stream(&d, "idle", 1).dshift, 1);
    let p = check_section::<qemu::chipset::I8259>("i8259");
    assert_eq!(p.iter().filter(|(s, _, _)| s == "idle").count(), 2);
    // Nothing ran: both PICs hold their reset state (no vector base programmed).
    assert_eq!(in_stream(&p, "idle", 0).irq_base, 0);
    assert_eq!(in_stream(&p, "idle", 1).irq_base, 0);
}

#[test]
fn small_board_sections() {
    let s = check_section::<qemu::misc::Pcspk>("pcspk");
    assert_eq!(in_stream(&s, "idle", 0).data_on, 0);
    let p = check_section::<qemu::misc::Port92>("port92");
    assert_eq!(in_stream(&p, "idle", 0).outport, 0);
    let i = check_section::<qemu::misc::I2cBus>("i2c_bus");
    // No transfer in progress: QEMU saves the "no device" address 0xff.
    assert_eq!(in_stream(&i, "machine-pc-q35-7.2", 0).saved_address, 0xff);
    let a = check_section::<qemu::misc::AcpiBuild>("acpi_build");
    assert_eq!(in_stream(&a, "idle", 0).patched, 0);
    let g = check_section::<qemu::misc::GlobalState>("globalstate");
    assert_eq!(in_stream(&g, "idle", 0).runstate(), "prelaunch");
    assert_eq!(in_stream(&g, "idle", 0).size, 10);
    assert_eq!(in_stream(&g, "rtc-vm", 0).runstate(), "paused");
}

#[test]
fn ioapic_apic_hpet() {
    let io = check_section::<qemu::irq::IoApic>("ioapic");
    // Nothing programmed: every redirection entry masked (bit 16).
    assert!(in_stream(&io, "idle", 0)
        .ioredtbl
        .iter()
        .all(|e| e & (1 << 16) != 0));
    let a = check_section::<qemu::irq::Apic>("apic");
    let apic = in_stream(&a, "idle", 0);
    // The BSP's APIC base: enabled, BSP, at 0xfee00000; no timer armed.
    assert_eq!(apic.apicbase, 0xfee0_0900);
    assert_eq!(apic.timer_expiry, -1);
    let h = check_section::<qemu::irq::Hpet>("hpet");
    let hpet = in_stream(&h, "idle", 0);
    assert_eq!((hpet.num_timers, hpet.timer.len()), (3, 3));
    assert_eq!(hpet.timer[2].tn, 2);
    assert_eq!(hpet.received, [false, false]);
}

#[test]
fn ps2_and_vmmouse() {
    let k = check_section::<qemu::input::Ps2Kbd>("ps2kbd");
    let kbd = in_stream(&k, "idle", 0);
    assert_eq!((kbd.scancode_set, kbd.received), (2, [false; 3]));
    let m = check_section::<qemu::input::Ps2Mouse>("ps2mouse");
    assert_eq!(in_stream(&m, "idle", 0).parent_obj.count, 0);
    let v = check_section::<qemu::input::VmMouse>("vmmouse");
    assert_eq!(in_stream(&v, "machine-pc-q35-7.2", 0).queue_size, 1024);
}

/// The i8042 controller: QEMU 7.2 machine types send `pckbd/extended_state`, pc-i440fx-2.3
/// does not; `pckbd_outport` (a name without the `pckbd/` convention) round-trips too.
#[test]
fn pckbd() {
    let k = check_section::<qemu::input::PcKbd>("pckbd");
    assert_eq!(in_stream(&k, "idle", 0).kbd.received, [false, true]);
    assert_eq!(
        in_stream(&k, "machine-pc-i440fx-2.3", 0).kbd.received,
        [false, false]
    );
    let input = std::fs::read(golden_dir().join("idle.mig")).unwrap();
    let d = decode_stream(&input).unwrap();
    let s = d.sections.iter().find(|s| s.idstr == "pckbd").unwrap();
    let payload = &input[s.payload_range.clone()];
    // The controller's four bytes, then `pckbd_outport` (declared first), then what followed.
    let mut with_outport = with_subsection(&payload[..4], "pckbd_outport", 1, &[0xcf]);
    with_outport.extend_from_slice(&payload[4..]);
    let m = examples_devices::catalog()
        .resolve("pc-i440fx-7.2")
        .unwrap();
    let opts = ReencodeOptions::default();
    let cx = SectionCx {
        payload: &with_outport,
        version: s.version,
        base: 0,
        instance_id: 0,
        machine: &m,
        vclock: None,
        options: &opts,
    };
    let (bytes, desc, dev) = qemu::load_and_save(qemu::input::PcKbd::for_machine(&m), &cx).unwrap();
    assert_eq!(bytes, with_outport);
    assert_eq!((dev.kbd.outport, dev.kbd.received), (0xcf, [true, true]));
    let kbd = desc
        .fields
        .first()
        .and_then(|f| f.strukt.as_deref())
        .unwrap();
    let subs: Vec<&str> = kbd.subsections.iter().map(|s| &*s.vmsd_name).collect();
    assert_eq!(subs, ["pckbd_outport", "pckbd/extended_state"]);
}

#[test]
fn vmmouse_queue_size_must_match() {
    let input = std::fs::read(golden_dir().join("idle.mig")).unwrap();
    let d = decode_stream(&input).unwrap();
    let s = d.sections.iter().find(|s| s.idstr == "vmmouse").unwrap();
    let m = examples_devices::catalog()
        .resolve("pc-i440fx-7.2")
        .unwrap();
    let options = ReencodeOptions::default();
    let cx = SectionCx::of(&input, s, &m, None, &options);
    let mut local = qemu::input::VmMouse::for_machine(&m);
    local.queue_size = 512;
    let e = qemu::load_and_save(local, &cx).unwrap_err();
    assert!(e.to_string().contains("queue_size"), "{e}");
}

#[test]
fn fdc() {
    let v = check_section::<qemu::fdc::Fdc>("fdc");
    let f = &in_stream(&v, "idle", 0).state;
    assert_eq!(f.num_floppies, 2);
    // Both drives carried `fdrive/media_rate`, nothing else; the controller no subsection.
    assert!(f.drives.iter().all(|d| d.received == [false, true, false]));
    assert_eq!(f.received, [false; 3]);
    assert!(v.iter().all(|(s, _, _)| s != "machine-pc-q35-7.2"));
}

mod needs_qemu {
    use std::io::Write;
    use std::process::{Command, Stdio};

    use super::*;

    /// A stream from QEMU 7.2 for `machine`, paused before the first instruction, after the
    /// HMP commands `before` (e.g. port writes with `o`).
    fn qemu_stream(machine: &str, name: &str, before: &[&str]) -> Vec<u8> {
        qemu_stream_with(machine, name, before, "tcg")
    }

    /// [`qemu_stream`] with the accelerator `accel` (`tcg` or `kvm`).
    pub(crate) fn qemu_stream_with(
        machine: &str,
        name: &str,
        before: &[&str],
        accel: &str,
    ) -> Vec<u8> {
        qemu_stream_args(machine, name, before, accel, &[])
    }

    /// [`qemu_stream_with`] with more QEMU arguments (`extra`).
    fn qemu_stream_args(
        machine: &str,
        name: &str,
        before: &[&str],
        accel: &str,
        extra: &[&str],
    ) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("qemu-sections-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{name}.mig"));
        let mut child = Command::new("qemu-system-x86_64")
            .args([
                "-nodefaults",
                "-display",
                "none",
                "-accel",
                accel,
                "-m",
                "32",
            ])
            .args(["-machine", machine, "-device", "isa-serial", "-S"])
            .args(extra)
            .args(["-monitor", "stdio"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 runs");
        // HMP's `migrate` returns once the migration completed; `quit` follows it.
        let mut stdin = child.stdin.take().unwrap();
        for c in before {
            writeln!(stdin, "{c}").unwrap();
        }
        writeln!(stdin, "migrate \"exec:cat > {}\"\nquit", file.display()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success(), "{machine}");
        std::fs::read(&file).unwrap()
    }

    /// The `fw_cfg` subsections follow the machine type (dma from 2.5, acpi_mr from 5.0):
    /// streams QEMU 7.2 makes for the machine types around both steps re-encode byte for byte
    /// with `fw_cfg` typed.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn older_machine_types_reencode_identically() {
        crate::tools::require_qemu();
        let cat = examples_devices::catalog();
        for (machine, fw_cfg_len) in [
            ("pc-i440fx-2.4", 6),
            ("pc-i440fx-2.5", 30),
            ("pc-i440fx-4.2", 30),
            ("pc-i440fx-5.0", 74),
            ("pc-q35-5.0", 74),
        ] {
            let input = qemu_stream(machine, machine, &[]);
            let (out, report) = reencode(&input, &cat, &ReencodeOptions::default())
                .unwrap_or_else(|e| panic!("{machine}: {e}"));
            assert!(report.identical_before_vmdesc, "{machine}");
            assert_eq!(out, input, "{machine}");
            let fw = report.typed.iter().find(|t| t.0 == "fw_cfg").unwrap();
            assert_eq!(fw.2, fw_cfg_len, "{machine}");
            for n in ["timer", "PCIBUS", "hpet", "ps2kbd", "globalstate"] {
                assert!(report.typed.iter().any(|t| t.0 == n), "{machine}: {n}");
            }
        }
    }

    /// `ich9_smb` sends its SMBus state from pc-q35-4.0 on (a machine-type gate): streams
    /// QEMU 7.2 makes for pc-q35-3.1 and 4.0 re-encode byte for byte with the PCI functions
    /// typed.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn ich9_smb_follows_the_machine_type() {
        crate::tools::require_qemu();
        let cat = examples_devices::catalog();
        for (machine, smb_len) in [("pc-q35-3.1", 276), ("pc-q35-4.0", 325)] {
            let input = qemu_stream(machine, machine, &[]);
            let (out, report) = reencode(&input, &cat, &ReencodeOptions::default())
                .unwrap_or_else(|e| panic!("{machine}: {e}"));
            assert_eq!(out, input, "{machine}");
            let smb = report.typed.iter().find(|t| t.0.ends_with("/ich9_smb"));
            assert_eq!(smb.map(|t| t.2), Some(smb_len), "{machine}");
            assert!(
                report.typed.iter().any(|t| t.0.ends_with("/mch")),
                "{machine}"
            );
        }
    }

    /// The ACPI PM functions follow the machine type (QEMU's compat tables): PIIX4 sends its
    /// SMBus state from pc-i440fx-4.0 (48 bytes) and `acpi_index` from 7.0 (4 bytes); ICH9
    /// sends `ich9_pm/pcihp` from pc-q35-6.1 (a 2,075-byte subsection: header 1 + 1 + 13 + 4,
    /// `hotplug_select`, 256 × 8 bytes of bus status, `acpi_index`). Streams QEMU 7.2 makes for
    /// the machine types on both sides of each step re-encode byte for byte with `piix4_pm`,
    /// `ide`, `ICH9LPC` and `ich9_ahci` typed, nothing opaque and only `ram` copied.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn acpi_pm_follows_the_machine_type() {
        crate::tools::require_qemu();
        let cat = examples_devices::catalog();
        let mut len = std::collections::BTreeMap::new();
        for (machine, pm) in [
            ("pc-i440fx-3.1", "piix4_pm"),
            ("pc-i440fx-4.0", "piix4_pm"),
            ("pc-i440fx-6.2", "piix4_pm"),
            ("pc-i440fx-7.0", "piix4_pm"),
            ("pc-q35-6.0", "ICH9LPC"),
            ("pc-q35-6.1", "ICH9LPC"),
        ] {
            let input = qemu_stream(machine, machine, &[]);
            let (out, report) = reencode(&input, &cat, &ReencodeOptions::default())
                .unwrap_or_else(|e| panic!("{machine}: {e}"));
            assert_eq!(out, input, "{machine}");
            assert!(report.identical_before_vmdesc, "{machine}");
            let disk = if pm == "ICH9LPC" { "ich9_ahci" } else { "ide" };
            for n in [pm, disk] {
                assert!(
                    report.typed.iter().any(|t| qemu::vmsd_name(&t.0) == n),
                    "{machine}: {n}"
                );
            }
            assert!(report.opaque.is_empty(), "{machine}: {:?}", report.opaque);
            assert!(
                report.copied.iter().all(|(i, _, _)| i == "ram"),
                "{machine}: {:?}",
                report.copied
            );
            let t = report.typed.iter().find(|t| qemu::vmsd_name(&t.0) == pm);
            len.insert(machine, t.unwrap().2);
        }
        assert_eq!(len["pc-i440fx-4.0"] - len["pc-i440fx-3.1"], 48);
        assert_eq!(len["pc-i440fx-7.0"] - len["pc-i440fx-6.2"], 4);
        assert_eq!(len["pc-i440fx-6.2"], len["pc-i440fx-4.0"]);
        assert_eq!(len["pc-q35-6.1"] - len["pc-q35-6.0"], 2075);
    }

    /// `ICH9LPC/rst_cnt` is sent when the reset control register (port 0xcf9) is not zero:
    /// after the guest writes 0x02 (no reset bit) QEMU 7.2's stream carries it, and it
    /// re-encodes byte for byte with its vmdesc.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn ich9_reset_control_reencodes_identically() {
        crate::tools::require_qemu();
        let cat = examples_devices::catalog();
        let input = qemu_stream("pc-q35-7.2", "q35-rst-cnt", &["o /b 0xcf9 0x02"]);
        let (out, report) =
            reencode(&input, &cat, &ReencodeOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, input);
        assert!(report.identical_vmdesc);
        let desc = qemu_entry(&input, "0000:00:1f.0/ICH9LPC", 0);
        assert!(desc.contains("\"vmsd_name\":\"ICH9LPC/rst_cnt\""), "{desc}");
    }

    /// An IDE disk that ran IDENTIFY DEVICE (HMP port writes: drive 0 selected, command 0xec)
    /// and has not been read yet: QEMU 7.2 sends the drive's `identify_data` (vmdesc type
    /// `buffer`, 512 bytes, gated on `identify_set`) and `ide_drive/pio_state` with the whole
    /// 131,076-byte PIO buffer; the stream re-encodes byte for byte with its vmdesc.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn ide_identify_in_flight_reencodes_identically() {
        crate::tools::require_qemu();
        let dir = std::env::temp_dir().join(format!("qemu-sections-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("disk.img");
        std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
        let drive = format!("file={},format=raw,if=ide", disk.display());
        let input = qemu_stream_args(
            "pc-i440fx-7.2",
            "ide-identify",
            &["o /b 0x1f6 0xa0", "o /b 0x1f7 0xec"],
            "tcg",
            &["-drive", &drive],
        );
        let cat = examples_devices::catalog();
        let (out, report) =
            reencode(&input, &cat, &ReencodeOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, input);
        assert!(report.identical_vmdesc);
        let ide = report.typed.iter().find(|t| t.0.ends_with("/ide")).unwrap();
        assert!(ide.2 > 131_076 + 512, "{}", ide.2);
        let desc = qemu_entry(&input, "0000:00:01.1/ide", 0);
        assert!(
            desc.contains("\"vmsd_name\":\"ide_drive/pio_state\""),
            "{desc}"
        );
        assert!(desc.contains("\"name\":\"identify_data\""), "{desc}");
    }

    /// The hotplug arrays QEMU sizes by configuration it does not migrate (`local_count`):
    /// streams from QEMU 7.2 with `-m 1G,slots=4,maxmem=4G` (memory hotplug `devs`: one per
    /// DIMM slot) and with `-smp 1,maxcpus=4` after the guest switched to the modern CPU
    /// hotplug interface (CPU hotplug `devs`: one per possible CPU), on pc and q35, re-encode
    /// byte for byte, vmdesc included, when the destination is configured like the source
    /// ([`Board`]); configured as the default machine, the same streams are refused.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn hotplug_arrays_follow_the_board() {
        use examples_devices::qemu::acpi::Board;
        crate::tools::require_qemu();
        let cat = examples_devices::catalog();
        // (machine, PM section, the legacy CPU hotplug port whose write of 0 switches to the
        // modern interface)
        for (machine, pm, cpuhp_port) in [
            ("pc-i440fx-7.2", "0000:00:01.3/piix4_pm", "0xaf00"),
            ("pc-q35-7.2", "0000:00:1f.0/ICH9LPC", "0xcd8"),
        ] {
            let switch = [format!("o /b {cpuhp_port} 0")];
            let switch: Vec<&str> = switch.iter().map(String::as_str).collect();
            let cases = [
                (
                    "slots",
                    &[][..],
                    &["-m", "1G,slots=4,maxmem=4G"][..],
                    Board {
                        dimm_slots: 4,
                        max_cpus: 1,
                    },
                    "memhp",
                ),
                (
                    "maxcpus",
                    &switch[..],
                    &["-smp", "1,maxcpus=4"][..],
                    Board {
                        dimm_slots: 0,
                        max_cpus: 4,
                    },
                    "cpuhp",
                ),
            ];
            for (name, before, extra, board, sub) in cases {
                let tag = format!("{machine}-{name}");
                let input = qemu_stream_args(machine, &tag, before, "tcg", extra);
                let desc = qemu_entry(&input, pm, 0);
                assert!(desc.contains(&format!("/{sub}\"")), "{tag}: {desc}");
                let options = ReencodeOptions {
                    board,
                    ..ReencodeOptions::default()
                };
                let (out, report) =
                    reencode(&input, &cat, &options).unwrap_or_else(|e| panic!("{tag}: {e}"));
                assert_eq!(out, input, "{tag}");
                assert!(report.identical_vmdesc, "{tag}");
                assert!(report.typed.iter().any(|t| t.0 == pm), "{tag}");
                assert!(report.opaque.is_empty(), "{tag}: {:?}", report.opaque);
                // QEMU's vmdesc says 4 elements: the count the destination must have.
                assert!(desc.contains("\"array_len\":4"), "{tag}: {desc}");
                // A destination configured as the default machine reads the wrong length.
                let err = reencode(&input, &cat, &ReencodeOptions::default())
                    .err()
                    .unwrap_or_else(|| panic!("{tag}: loaded on the default board"));
                let err = err.to_string();
                assert!(err.contains(pm), "{tag}: {err}");
                assert!(
                    err.contains("this destination has 0 DIMM slots and 1 possible CPUs"),
                    "{tag}: {err}"
                );
            }
        }
    }

    /// Streams whose `ps2kbd` and `fdc` carry the subsections QEMU sends after port writes
    /// (keyboard LEDs set: `ledstate` + `command_reply_queue`; controller reset:
    /// `fdc/reset_sensei`) re-encode byte for byte, vmdesc included.
    #[test]
    #[ignore = "needs qemu-system-x86_64: apt-get install qemu-system-x86"]
    fn behaviour_gated_subsections_from_qemu_reencode_identically() {
        crate::tools::require_qemu();
        let cat = examples_devices::catalog();
        let cases: [(&str, &[&str], &str, &[&str]); 2] = [
            (
                "kbd-leds",
                &["o /b 0x60 0xed", "o /b 0x60 0x07"],
                "ps2kbd",
                &["ps2kbd/ledstate", "ps2kbd/command_reply_queue"],
            ),
            (
                "fdc-reset",
                &["o /b 0x3f2 0x00", "o /b 0x3f2 0x0c"],
                "fdc",
                &["fdc/reset_sensei"],
            ),
        ];
        for (name, before, idstr, subs) in cases {
            let input = qemu_stream("pc-i440fx-7.2", name, before);
            let (out, report) = reencode(&input, &cat, &ReencodeOptions::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out, input, "{name}");
            assert!(report.identical_vmdesc, "{name}");
            assert!(report.typed.iter().any(|t| t.0 == idstr), "{name}");
            let desc = qemu_entry(&input, idstr, 0);
            for sub in subs {
                assert!(
                    desc.contains(&format!("\"vmsd_name\":\"{sub}\"")),
                    "{name}: {desc}"
                );
            }
        }
    }
}

/// `payload` + one subsection `name` (version `version`) with body `body`.
fn with_subsection(payload: &[u8], name: &str, version: u32, body: &[u8]) -> Vec<u8> {
    let mut v = payload.to_vec();
    v.push(0x05);
    v.push(u8::try_from(name.len()).unwrap());
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&version.to_be_bytes());
    v.extend_from_slice(body);
    v
}

/// Subsections whose presence QEMU decides from behaviour are re-sent exactly as received.
#[test]
fn behaviour_gated_subsections_round_trip_as_received() {
    let input = std::fs::read(golden_dir().join("idle.mig")).unwrap();
    let d = decode_stream(&input).unwrap();
    let m = examples_devices::catalog()
        .resolve("pc-i440fx-7.2")
        .unwrap();
    let payload_of = |idstr: &str| {
        let s = d.sections.iter().find(|s| s.idstr == idstr).unwrap();
        (input[s.payload_range.clone()].to_vec(), s.version)
    };
    let opts = ReencodeOptions::default();
    let cx = |payload, version| SectionCx {
        payload,
        version,
        base: 0,
        instance_id: 0,
        machine: &m,
        vclock: None,
        options: &opts,
    };
    // ps2kbd with its LED state and the reply queue pointer.
    let (kbd, v) = payload_of("ps2kbd");
    let kbd = with_subsection(&kbd, "ps2kbd/ledstate", 3, &4i32.to_be_bytes());
    let kbd = with_subsection(&kbd, "ps2kbd/command_reply_queue", 0, &7i32.to_be_bytes());
    let (bytes, desc, dev) =
        qemu::load_and_save(qemu::input::Ps2Kbd::for_machine(&m), &cx(&kbd, v)).unwrap();
    assert_eq!(bytes, kbd);
    assert_eq!(
        (dev.ledstate, dev.cwptr, dev.received),
        (4, 7, [true, false, true])
    );
    let subs: Vec<&str> = desc.subsections.iter().map(|s| &*s.vmsd_name).collect();
    assert_eq!(subs, ["ps2kbd/ledstate", "ps2kbd/command_reply_queue"]);
    // hpet with the counter offset.
    let (hpet, v) = payload_of("hpet");
    let hpet = with_subsection(&hpet, "hpet/offset", 1, &0x1234u64.to_be_bytes());
    let (bytes, _, dev) =
        qemu::load_and_save(qemu::irq::Hpet::for_machine(&m), &cx(&hpet, v)).unwrap();
    assert_eq!(bytes, hpet);
    assert_eq!((dev.hpet_offset, dev.received), (0x1234, [false, true]));
}

mod needs_kvm_and_qemu {
    use super::*;

    /// QEMU 7.2 with KVM writes the in-kernel variants of the interrupt controllers, PIT and
    /// APIC (same sections, same vmsds) and a `kvmclock` section. Streams it makes for machine
    /// types on both sides of kvmclock's compat step (`kvmclock/clock_is_reliable` from 2.9)
    /// re-encode byte for byte with all of them typed.
    #[test]
    #[ignore = "needs /dev/kvm and qemu-system-x86_64 (apt-get install qemu-system-x86)"]
    fn kvm_streams_reencode_identically() {
        crate::tools::require_qemu();
        assert!(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/kvm")
                .is_ok(),
            "/dev/kvm does not open read-write"
        );
        let cat = examples_devices::catalog();
        for (machine, kvmclock_len) in [
            ("pc-i440fx-2.8", 8),
            ("pc-i440fx-2.9", 41),
            ("pc-i440fx-7.2", 41),
            ("pc-q35-7.2", 41),
        ] {
            let name = format!("kvm-{machine}");
            let input = super::needs_qemu::qemu_stream_with(machine, &name, &[], "kvm");
            let (out, report) = reencode(&input, &cat, &ReencodeOptions::default())
                .unwrap_or_else(|e| panic!("{machine}: {e}"));
            assert!(report.identical_before_vmdesc, "{machine}");
            // Every device section typed: only `ram` (iterative) is copied.
            assert!(report.opaque.is_empty(), "{machine}: {:?}", report.opaque);
            let clock = report.typed.iter().find(|t| t.0 == "kvmclock");
            assert_eq!(clock.map(|t| t.2), Some(kvmclock_len), "{machine}");
            for n in [
                "apic",
                "i8259",
                "ioapic",
                "i8254",
                "kvm-tpr-opt",
                "hpet",
                "cpu",
            ] {
                assert!(report.typed.iter().any(|t| t.0 == n), "{machine}: {n}");
            }
            // Every device section typed on KVM streams too.
            assert!(report.opaque.is_empty(), "{machine}: {:?}", report.opaque);
            // The vmdesc is QEMU's, byte for byte, unless QEMU's own length would defeat
            // analyze-migration.py's locator (a 0x7b byte in it): then ours is the same JSON
            // padded to a length the script finds.
            let qemu_len = vmdesc_len(&input);
            if vmstate_runtime::stream::vmdesc_len_is_safe(qemu_len) {
                assert!(report.identical_vmdesc, "{machine}");
                assert_eq!(out, input, "{machine}");
            } else {
                assert!(!report.identical_vmdesc, "{machine}");
                assert!(vmstate_runtime::stream::vmdesc_len_is_safe(vmdesc_len(
                    &out
                )));
                assert_eq!(vmdesc_json(&out), vmdesc_json(&input), "{machine}");
            }
        }
    }

    fn vmdesc_len(stream: &[u8]) -> u32 {
        let d = decode_stream(stream).unwrap();
        let (range, _) = d.vmdesc.unwrap();
        u32::try_from(range.len() - 5).unwrap()
    }

    fn vmdesc_json(stream: &[u8]) -> serde_json::Value {
        let d = decode_stream(stream).unwrap();
        let (range, _) = d.vmdesc.unwrap();
        serde_json::from_slice(&stream[range.start + 5..range.end]).unwrap()
    }
}
