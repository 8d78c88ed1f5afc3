//! The disk controllers of QEMU 7.2's pc machines: the PIIX3 IDE function on i440fx (section
//! `0000:00:01.1/ide`) and the ICH9 AHCI function on q35 (section `0000:00:1f.2/ich9_ahci`),
//! with the IDE bus and drive state they share. State only.
//!
//! Field lists from QEMU 7.2's `-dump-vmstate` (`ich9-ahci` holds `ide_bus` and `ide_drive`
//! with their subsections; QEMU's dump has no `piix3-ide`, whose vmsd `ide` QEMU registers by
//! hand, so its own two `ide bmdma` subsections are named as QEMU 7.2 declares them) and the
//! golden streams' vmdesc.
//!
//! Subsections: QEMU sends `ide_bus/error`, `ide_drive/tray_state`,
//! `ide_drive/atapi/gesn_state` and `ide bmdma_current` when their own registers say so
//! (error status, tray, media events, current PRD length not zero), which are the gates here;
//! `ide_drive/pio_state` (a PIO transfer in flight, read from the drive's and the bus's state)
//! and `ide bmdma/status` (status bits older QEMUs kept elsewhere) are re-sent exactly as
//! received.

use vmstate_runtime::{MachineType, VmState};

use super::pci::PciDevice;
use super::pcidev::{function, function_with_caps};
use super::QemuState;

/// An IDE bus's command and selected unit (`ide_bus`, nested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "ide_bus",
    version = 1,
    minimum_version = 1,
    nested,
    subsection(name = "ide_bus/error", version = 2, minimum_version = 1,
               when = pred(Self::error_needed))
)]
pub struct IdeBus {
    /// Device control register.
    pub cmd: u8,
    /// The selected drive (0 or 1).
    pub unit: u8,
    /// A failed request to retry after migration (QEMU's `IDE_RETRY_*` bits).
    #[vmstate(subsection = "ide_bus/error", default)]
    pub error_status: i32,
    /// The retried request's first sector.
    #[vmstate(subsection = "ide_bus/error", since = 2, default)]
    pub retry_sector_num: i64,
    /// The retried request's sector count.
    #[vmstate(subsection = "ide_bus/error", since = 2, default)]
    pub retry_nsector: u32,
    /// The retried request's drive.
    #[vmstate(subsection = "ide_bus/error", since = 2, default)]
    pub retry_unit: u8,
}

impl IdeBus {
    fn error_needed(&self) -> bool {
        self.error_status != 0
    }
}

/// Bytes of a drive's PIO buffer (QEMU: 256 sectors of 512 bytes, plus 4).
pub const IO_BUFFER_LEN: usize = 256 * 512 + 4;

/// A drive's PIO buffer, on the heap (128 KiB; on the wire it is the array itself, as QEMU's
/// `uint8` variable array of `IO_BUFFER_LEN` elements).
pub type IoBuffer = Box<[u8; IO_BUFFER_LEN]>;

/// An IDE drive's registers (`ide_drive`, nested, v3).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "ide_drive",
    version = 3,
    minimum_version = 0,
    nested,
    subsection(name = "ide_drive/pio_state", version = 1, minimum_version = 1,
               when = pred(Self::had_pio_state), pre_load = Self::got_pio_state),
    subsection(name = "ide_drive/tray_state", version = 1, minimum_version = 1,
               when = pred(Self::tray_state_needed)),
    subsection(name = "ide_drive/atapi/gesn_state", version = 1, minimum_version = 1,
               when = pred(Self::gesn_needed))
)]
pub struct IdeDrive {
    pub mult_sectors: i32,
    /// The guest ran IDENTIFY: `identify_data` follows.
    pub identify_set: i32,
    /// The IDENTIFY data, sent when `identify_set` is not zero.
    #[vmstate(buffer, when = pred(Self::is_identify_set), keep)]
    pub identify_data: [u8; 512],
    pub feature: u8,
    pub error: u8,
    pub nsector: u32,
    pub sector: u8,
    pub lcyl: u8,
    pub hcyl: u8,
    pub hob_feature: u8,
    pub hob_sector: u8,
    pub hob_nsector: u8,
    pub hob_lcyl: u8,
    pub hob_hcyl: u8,
    pub select: u8,
    pub status: u8,
    pub lba48: u8,
    pub sense_key: u8,
    pub asc: u8,
    /// QEMU's field version 3, the struct's own version (absent only at an older one).
    #[vmstate(since = 3, default)]
    pub cdrom_changed: u8,
    /// Sectors per PIO request.
    #[vmstate(subsection = "ide_drive/pio_state", default)]
    pub req_nb_sectors: i32,
    /// The PIO buffer: `io_buffer_total_len` bytes (QEMU's `uint8` variable array counted by
    /// that unmigrated field).
    #[vmstate(
        subsection = "ide_drive/pio_state",
        since = 1,
        local_count = io_buffer_total_len,
        max = 131076,
        keep
    )]
    pub io_buffer: IoBuffer,
    /// Bytes of the PIO buffer (QEMU's `io_buffer_total_len`, [`IO_BUFFER_LEN`]):
    /// configuration, not sent.
    #[vmstate(skip)]
    pub io_buffer_total_len: i32,
    #[vmstate(subsection = "ide_drive/pio_state", default)]
    pub cur_io_buffer_offset: i32,
    #[vmstate(subsection = "ide_drive/pio_state", default)]
    pub cur_io_buffer_len: i32,
    /// Which transfer-end function runs next (QEMU's table index).
    #[vmstate(subsection = "ide_drive/pio_state", default)]
    pub end_transfer_fn_idx: u8,
    #[vmstate(subsection = "ide_drive/pio_state", default)]
    pub elementary_transfer_size: i32,
    #[vmstate(subsection = "ide_drive/pio_state", default)]
    pub packet_transfer_size: i32,
    /// The CD-ROM tray is open.
    #[vmstate(subsection = "ide_drive/tray_state", default)]
    pub tray_open: bool,
    /// The CD-ROM tray is locked.
    #[vmstate(subsection = "ide_drive/tray_state", default)]
    pub tray_locked: bool,
    /// GET EVENT STATUS NOTIFICATION: new media.
    #[vmstate(
        subsection = "ide_drive/atapi/gesn_state",
        rename = "events.new_media",
        default
    )]
    pub new_media: bool,
    /// GET EVENT STATUS NOTIFICATION: eject request.
    #[vmstate(
        subsection = "ide_drive/atapi/gesn_state",
        rename = "events.eject_request",
        default
    )]
    pub eject_request: bool,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 1],
}

as_received!(IdeDrive {
    0 => had_pio_state, got_pio_state;
});

impl IdeDrive {
    fn is_identify_set(&self) -> bool {
        self.identify_set != 0
    }

    fn tray_state_needed(&self) -> bool {
        self.tray_open || self.tray_locked
    }

    fn gesn_needed(&self) -> bool {
        self.new_media || self.eject_request
    }
}

impl Default for IdeDrive {
    fn default() -> Self {
        IdeDrive {
            mult_sectors: 0,
            identify_set: 0,
            identify_data: [0; 512],
            feature: 0,
            error: 0,
            nsector: 0,
            sector: 0,
            lcyl: 0,
            hcyl: 0,
            hob_feature: 0,
            hob_sector: 0,
            hob_nsector: 0,
            hob_lcyl: 0,
            hob_hcyl: 0,
            select: 0,
            status: 0,
            lba48: 0,
            sense_key: 0,
            asc: 0,
            cdrom_changed: 0,
            req_nb_sectors: 0,
            io_buffer: Box::new([0; IO_BUFFER_LEN]),
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            io_buffer_total_len: IO_BUFFER_LEN as i32,
            cur_io_buffer_offset: 0,
            cur_io_buffer_len: 0,
            end_transfer_fn_idx: 0,
            elementary_transfer_size: 0,
            packet_transfer_size: 0,
            tray_open: false,
            tray_locked: false,
            new_media: false,
            eject_request: false,
            received: [false; 1],
        }
    }
}

/// One bus-master DMA channel of the PIIX IDE function (`ide bmdma`, nested, v3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "ide bmdma",
    version = 3,
    minimum_version = 0,
    nested,
    subsection(name = "ide bmdma_current", version = 1, minimum_version = 1,
               when = pred(Self::current_needed)),
    subsection(name = "ide bmdma/status", version = 1, minimum_version = 1,
               when = pred(Self::had_status), pre_load = Self::got_status)
)]
pub struct Bmdma {
    /// Bus-master command register.
    pub cmd: u8,
    /// The status register as older QEMUs sent it (with retry bits folded in).
    pub migration_compat_status: u8,
    /// PRD table address.
    pub addr: u32,
    /// A failed request to retry: first sector.
    pub migration_retry_sector_num: i64,
    /// A failed request to retry: sector count.
    pub migration_retry_nsector: u32,
    /// A failed request to retry: drive.
    pub migration_retry_unit: u8,
    /// Current PRD entry's address.
    #[vmstate(subsection = "ide bmdma_current", default)]
    pub cur_addr: u32,
    /// Current PRD entry is the last.
    #[vmstate(subsection = "ide bmdma_current", default)]
    pub cur_prd_last: u32,
    /// Current PRD entry's buffer address.
    #[vmstate(subsection = "ide bmdma_current", default)]
    pub cur_prd_addr: u32,
    /// Bytes left in the current PRD entry.
    #[vmstate(subsection = "ide bmdma_current", default)]
    pub cur_prd_len: u32,
    /// Bus-master status register.
    #[vmstate(subsection = "ide bmdma/status", default)]
    pub status: u8,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 1],
}

as_received!(Bmdma {
    0 => had_status, got_status;
});

impl Bmdma {
    fn current_needed(&self) -> bool {
        self.cur_prd_len != 0
    }
}

/// The PIIX3 IDE function, 8086:7010 (section `0000:00:01.1/ide`, v3): two bus-master DMA
/// channels, two buses, two drives on each.
///
/// QEMU's vmsd accepts versions from 0, with the buses from version 1 and the drives from 3;
/// this struct accepts version 3 only.
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "ide", version = 3, minimum_version = 3)]
pub struct PciIde {
    /// The function's PCI state.
    pub parent_obj: PciDevice,
    /// The DMA channels.
    pub bmdma: [Bmdma; 2],
    /// The buses.
    pub bus: [IdeBus; 2],
    /// The primary bus's drives.
    #[vmstate(rename = "bus[0].ifs")]
    pub bus0_ifs: [IdeDrive; 2],
    /// The secondary bus's drives.
    #[vmstate(rename = "bus[1].ifs")]
    pub bus1_ifs: [IdeDrive; 2],
}

impl QemuState for PciIde {
    fn for_machine(_: &MachineType) -> Self {
        PciIde {
            parent_obj: function(0x7010, 0x00, [0x01, 0x01, 0x80], false, 0),
            bmdma: [Bmdma::default(); 2],
            bus: [IdeBus::default(); 2],
            bus0_ifs: [IdeDrive::default(), IdeDrive::default()],
            bus1_ifs: [IdeDrive::default(), IdeDrive::default()],
        }
    }
}

/// One NCQ command slot of an AHCI port (`ncq state`, nested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "ncq state", version = 1, minimum_version = 0, nested)]
pub struct NcqTfs {
    /// Sectors to transfer.
    pub sector_count: u32,
    /// First sector.
    pub lba: u64,
    /// NCQ tag.
    pub tag: u8,
    /// ATA command.
    pub cmd: u8,
    /// Command slot.
    pub slot: u8,
    /// The slot is in use.
    pub used: bool,
    /// The command halted on an error.
    pub halt: bool,
}

/// NCQ slots per port (QEMU's `AHCI_MAX_CMDS`).
pub const AHCI_MAX_CMDS: usize = 32;

/// One AHCI port (`ahci port`, nested).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "ahci port", version = 1, minimum_version = 0, nested)]
pub struct AhciPort {
    /// The port's IDE bus.
    #[vmstate(since = 1, default)]
    pub port: IdeBus,
    /// The port's drive.
    #[vmstate(rename = "port.ifs[0]", since = 1, default)]
    pub drive: IdeDrive,
    pub port_state: u32,
    pub finished: u32,
    #[vmstate(rename = "port_regs.lst_addr")]
    pub lst_addr: u32,
    #[vmstate(rename = "port_regs.lst_addr_hi")]
    pub lst_addr_hi: u32,
    #[vmstate(rename = "port_regs.fis_addr")]
    pub fis_addr: u32,
    #[vmstate(rename = "port_regs.fis_addr_hi")]
    pub fis_addr_hi: u32,
    #[vmstate(rename = "port_regs.irq_stat")]
    pub irq_stat: u32,
    #[vmstate(rename = "port_regs.irq_mask")]
    pub irq_mask: u32,
    #[vmstate(rename = "port_regs.cmd")]
    pub cmd: u32,
    #[vmstate(rename = "port_regs.tfdata")]
    pub tfdata: u32,
    #[vmstate(rename = "port_regs.sig")]
    pub sig: u32,
    #[vmstate(rename = "port_regs.scr_stat")]
    pub scr_stat: u32,
    #[vmstate(rename = "port_regs.scr_ctl")]
    pub scr_ctl: u32,
    #[vmstate(rename = "port_regs.scr_err")]
    pub scr_err: u32,
    #[vmstate(rename = "port_regs.scr_act")]
    pub scr_act: u32,
    #[vmstate(rename = "port_regs.cmd_issue")]
    pub cmd_issue: u32,
    pub done_first_drq: bool,
    pub busy_slot: i32,
    pub init_d2h_sent: bool,
    /// The NCQ command slots.
    #[vmstate(since = 1, default)]
    pub ncq_tfs: [NcqTfs; AHCI_MAX_CMDS],
}

impl Default for AhciPort {
    fn default() -> Self {
        AhciPort {
            port: IdeBus::default(),
            drive: IdeDrive::default(),
            port_state: 0,
            finished: 0,
            lst_addr: 0,
            lst_addr_hi: 0,
            fis_addr: 0,
            fis_addr_hi: 0,
            irq_stat: 0,
            irq_mask: 0,
            cmd: 0,
            tfdata: 0,
            sig: 0,
            scr_stat: 0,
            scr_ctl: 0,
            scr_err: 0,
            scr_act: 0,
            cmd_issue: 0,
            done_first_drq: false,
            busy_slot: -1,
            init_d2h_sent: false,
            ncq_tfs: [NcqTfs::default(); AHCI_MAX_CMDS],
        }
    }
}

/// Ports of the ICH9 AHCI function.
pub const ICH9_AHCI_PORTS: usize = 6;

/// The AHCI controller (`ahci`, nested).
///
/// QEMU sends `dev` as a variable array counted by `ports`, which is not on the wire before it
/// (`ports` comes last and must equal the destination's): the count is the destination's port
/// count (`local_count = ports`), six on ICH9.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "ahci", version = 1, minimum_version = 0, nested)]
pub struct Ahci {
    /// The ports: as many as the destination's `ports`.
    #[vmstate(local_count = ports, max = 32)]
    pub dev: Vec<AhciPort>,
    #[vmstate(rename = "control_regs.cap")]
    pub cap: u32,
    #[vmstate(rename = "control_regs.ghc")]
    pub ghc: u32,
    #[vmstate(rename = "control_regs.irqstatus")]
    pub irqstatus: u32,
    #[vmstate(rename = "control_regs.impl")]
    pub impl_: u32,
    #[vmstate(rename = "control_regs.version")]
    pub version: u32,
    /// Index/data pair: the selected register.
    pub idp_index: u32,
    /// Ports: the destination's must be the same.
    #[vmstate(equal)]
    pub ports: i32,
}

/// The ICH9 AHCI function, 8086:2922 (section `0000:00:1f.2/ich9_ahci`, v1): capabilities MSI
/// at 0x80, then SATA at 0xa8.
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "ich9_ahci", version = 1, minimum_version = 0)]
pub struct Ich9Ahci {
    /// The function's PCI state.
    pub parent_obj: PciDevice,
    /// The controller.
    pub ahci: Ahci,
}

impl QemuState for Ich9Ahci {
    fn for_machine(_: &MachineType) -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        Ich9Ahci {
            parent_obj: function_with_caps(
                0x2922,
                0x02,
                [0x01, 0x06, 0x01],
                true,
                1,
                vec![(0x80, 0x05), (0xa8, 0x12)],
            ),
            ahci: Ahci {
                dev: vec![AhciPort::default(); ICH9_AHCI_PORTS],
                cap: 0,
                ghc: 0,
                irqstatus: 0,
                impl_: 0,
                version: 0,
                idp_index: 0,
                ports: ICH9_AHCI_PORTS as i32,
            },
        }
    }
}
