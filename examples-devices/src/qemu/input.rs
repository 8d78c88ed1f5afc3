//! Input device sections of QEMU 7.2's pc machines: the PS/2 keyboard and mouse (`ps2kbd`,
//! `ps2mouse`), the i8042 controller (`pckbd`) and the VMware mouse (`vmmouse`). State only.

use vmstate_runtime::{MachineType, VmState};

use super::QemuState;

/// The state every PS/2 device shares (`PS2 Common State`, nested, 272 bytes).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "PS2 Common State", version = 3, nested)]
pub struct Ps2Common {
    /// The command waiting for its parameter byte, -1 for none.
    pub write_cmd: i32,
    /// Queue read index.
    #[vmstate(rename = "queue.rptr")]
    pub rptr: i32,
    /// Queue write index.
    #[vmstate(rename = "queue.wptr")]
    pub wptr: i32,
    /// Bytes in the queue.
    #[vmstate(rename = "queue.count", range = 0..=256)]
    pub count: i32,
    /// The queue.
    #[vmstate(rename = "queue.data", buffer)]
    pub data: [u8; 256],
}

impl Default for Ps2Common {
    fn default() -> Self {
        Ps2Common {
            write_cmd: -1,
            rptr: 0,
            wptr: 0,
            count: 0,
            data: [0; 256],
        }
    }
}

/// The PS/2 keyboard (section `ps2kbd`, v3, min 2; 284 bytes without subsections).
///
/// Its subsections are re-sent exactly when the loaded stream had them: whether QEMU sends
/// them depends on keyboard behaviour this state-only struct does not model (see
/// `docs/qemu-sections.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "ps2kbd",
    version = 3,
    minimum_version = 2,
    subsection(name = "ps2kbd/ledstate", version = 3, minimum_version = 2,
               when = pred(Self::had_ledstate), pre_load = Self::got_ledstate),
    subsection(name = "ps2kbd/need_high_bit", version = 1, minimum_version = 1,
               when = pred(Self::had_need_high_bit), pre_load = Self::got_need_high_bit),
    subsection(name = "ps2kbd/command_reply_queue", version = 0, minimum_version = 0,
               when = pred(Self::had_reply_queue), pre_load = Self::got_reply_queue)
)]
pub struct Ps2Kbd {
    /// The common PS/2 state.
    pub parent_obj: Ps2Common,
    /// Scanning enabled.
    pub scan_enabled: i32,
    /// Scancode translation (set 2 → 1) in the controller.
    pub translate: i32,
    /// The scancode set, 1–3.
    #[vmstate(since = 3, default = 2)]
    pub scancode_set: i32,
    /// Keyboard LEDs.
    #[vmstate(subsection = "ps2kbd/ledstate", default)]
    pub ledstate: i32,
    /// The next key code needs the high bit (translated set 1).
    #[vmstate(subsection = "ps2kbd/need_high_bit", default)]
    pub need_high_bit: bool,
    /// Write index of the command reply part of the queue.
    #[vmstate(subsection = "ps2kbd/command_reply_queue", rename = "parent_obj.queue.cwptr", default = -1)]
    pub cwptr: i32,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 3],
}

as_received!(Ps2Kbd {
    0 => had_ledstate, got_ledstate;
    1 => had_need_high_bit, got_need_high_bit;
    2 => had_reply_queue, got_reply_queue;
});

impl QemuState for Ps2Kbd {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The i8042 keyboard controller's state (vmsd `pckbd` v3, nested in the section of the same
/// name; 4 bytes without subsections).
///
/// Its subsections are re-sent exactly when the loaded stream had them: QEMU sends
/// `pckbd_outport` when the output port differs from its default and `pckbd/extended_state`
/// depending on a compat property and the controller's state, which this state-only struct does
/// not model. `pckbd_outport` is one of QEMU's subsection names without the `<parent>/`
/// convention (QEMU's rule, which the derive follows, only requires the parent's name as prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "pckbd",
    version = 3,
    minimum_version = 3,
    nested,
    subsection(name = "pckbd_outport", version = 1, minimum_version = 1,
               when = pred(Self::had_outport), pre_load = Self::got_outport),
    subsection(name = "pckbd/extended_state", version = 0, minimum_version = 0,
               when = pred(Self::had_extended_state), pre_load = Self::got_extended_state)
)]
pub struct KbdState {
    /// The command waiting for its data byte.
    pub write_cmd: u8,
    /// Status register.
    pub status: u8,
    /// Controller command byte (mode).
    pub mode: u8,
    /// Pending interrupt sources, as QEMU saves them.
    pub pending_tmp: u8,
    /// Output port.
    #[vmstate(subsection = "pckbd_outport", default)]
    pub outport: u8,
    /// Migration flags (`pckbd/extended_state`).
    #[vmstate(subsection = "pckbd/extended_state", default)]
    pub migration_flags: u32,
    /// Source of the output buffer's byte.
    #[vmstate(subsection = "pckbd/extended_state", default)]
    pub obsrc: u32,
    /// The output buffer's byte.
    #[vmstate(subsection = "pckbd/extended_state", default)]
    pub obdata: u8,
    /// Controller command data byte.
    #[vmstate(subsection = "pckbd/extended_state", default)]
    pub cbdata: u8,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 2],
}

as_received!(KbdState {
    0 => had_outport, got_outport;
    1 => had_extended_state, got_extended_state;
});

/// The i8042 keyboard controller (section `pckbd`, v3): QEMU's section holds one field, the
/// controller state `kbd`, whose vmsd has the same name.
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "pckbd", version = 3, minimum_version = 3)]
pub struct PcKbd {
    /// The controller state.
    pub kbd: KbdState,
}

impl QemuState for PcKbd {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// The PS/2 mouse (section `ps2mouse`, v2, 291 bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "ps2mouse", version = 2, minimum_version = 2)]
pub struct Ps2Mouse {
    /// The common PS/2 state.
    pub parent_obj: Ps2Common,
    /// Status byte (stream mode, scaling, enabled, buttons).
    pub mouse_status: u8,
    /// Resolution (counts per mm, encoded).
    pub mouse_resolution: u8,
    /// Sample rate (reports per second).
    pub mouse_sample_rate: u8,
    /// Wrap (echo) mode.
    pub mouse_wrap: u8,
    /// 0 = PS/2, 3 = IntelliMouse, 4 = IntelliMouse Explorer.
    pub mouse_type: u8,
    /// Progress of the sample-rate knock that switches the type.
    pub mouse_detect_state: u8,
    /// Accumulated X motion.
    pub mouse_dx: i32,
    /// Accumulated Y motion.
    pub mouse_dy: i32,
    /// Accumulated wheel motion.
    pub mouse_dz: i32,
    /// Buttons held.
    pub mouse_buttons: u8,
}

impl QemuState for Ps2Mouse {
    fn for_machine(_: &MachineType) -> Self {
        Self::default()
    }
}

/// Entries of the VMware mouse's queue.
pub const VMMOUSE_QUEUE_SIZE: usize = 1024;

/// The VMware absolute mouse (section `vmmouse`, v0, 4105 bytes).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "vmmouse", version = 0, minimum_version = 0)]
pub struct VmMouse {
    /// Queue capacity: the destination's must be the same.
    #[vmstate(equal)]
    pub queue_size: i32,
    /// Queued event words.
    pub queue: [u32; VMMOUSE_QUEUE_SIZE],
    /// Words in the queue.
    #[vmstate(range = 0..=1024)]
    pub nb_queue: u16,
    /// Status word.
    pub status: u16,
    /// Absolute mode enabled.
    pub absolute: u8,
}

impl QemuState for VmMouse {
    fn for_machine(_: &MachineType) -> Self {
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        VmMouse {
            queue_size: VMMOUSE_QUEUE_SIZE as i32,
            queue: [0; VMMOUSE_QUEUE_SIZE],
            nb_queue: 0,
            status: 0,
            absolute: 0,
        }
    }
}
