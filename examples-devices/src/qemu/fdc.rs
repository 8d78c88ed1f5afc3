//! The ISA floppy disk controller (section `fdc`). State only.
//!
//! Every subsection here is re-sent exactly when the loaded stream had it: whether QEMU sends
//! one depends on controller and drive behaviour this struct does not model (a subsection
//! `pre_load` hook records its arrival in a `skip` field, the subsection's gate reads it).

use vmstate_runtime::{MachineType, Timer, VmState};

use super::QemuState;

/// One floppy drive (`fdrive`, nested, 3 bytes plus subsections).
#[derive(Debug, Clone, Default, PartialEq, Eq, VmState)]
#[vmstate(
    name = "fdrive",
    version = 1,
    nested,
    subsection(name = "fdrive/media_changed", version = 1, minimum_version = 1,
               when = pred(Self::had_media_changed), pre_load = Self::got_media_changed),
    subsection(name = "fdrive/media_rate", version = 1, minimum_version = 1,
               when = pred(Self::had_media_rate), pre_load = Self::got_media_rate),
    subsection(name = "fdrive/perpendicular", version = 1, minimum_version = 1,
               when = pred(Self::had_perpendicular), pre_load = Self::got_perpendicular)
)]
pub struct Fdrive {
    /// Current head.
    pub head: u8,
    /// Current track.
    pub track: u8,
    /// Current sector.
    pub sect: u8,
    /// Media changed flag.
    #[vmstate(subsection = "fdrive/media_changed", default)]
    pub media_changed: u8,
    /// Data rate of the inserted medium.
    #[vmstate(subsection = "fdrive/media_rate", default)]
    pub media_rate: u8,
    /// Perpendicular recording mode.
    #[vmstate(subsection = "fdrive/perpendicular", default)]
    pub perpendicular: u8,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 3],
}

as_received!(Fdrive {
    0 => had_media_changed, got_media_changed;
    1 => had_media_rate, got_media_rate;
    2 => had_perpendicular, got_perpendicular;
});

/// Drives per controller.
pub const MAX_FD: usize = 2;

/// The controller proper (`fdc`, nested, v2).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "fdc",
    version = 2,
    nested,
    subsection(name = "fdc/reset_sensei", version = 1, minimum_version = 1,
               when = pred(Self::had_reset_sensei), pre_load = Self::got_reset_sensei),
    subsection(name = "fdc/result_timer", version = 1, minimum_version = 1,
               when = pred(Self::had_result_timer), pre_load = Self::got_result_timer),
    subsection(name = "fdc/phase", version = 1, minimum_version = 1,
               when = pred(Self::had_phase), pre_load = Self::got_phase)
)]
pub struct FdcState {
    /// Status register A.
    pub sra: u8,
    /// Status register B.
    pub srb: u8,
    /// Digital output register.
    pub dor_vmstate: u8,
    /// Tape drive register.
    pub tdr: u8,
    /// Data-rate select register.
    pub dsr: u8,
    /// Main status register.
    pub msr: u8,
    /// ST0.
    pub status0: u8,
    /// ST1.
    pub status1: u8,
    /// ST2.
    pub status2: u8,
    /// Command/data FIFO.
    pub fifo: [u8; 512],
    /// Position in the FIFO.
    pub data_pos: u32,
    /// Length of the transfer.
    pub data_len: u32,
    /// Transfer state.
    pub data_state: u8,
    /// Transfer direction.
    pub data_dir: u8,
    /// End of track.
    pub eot: u8,
    /// SPECIFY: step rate / head unload.
    pub timer0: u8,
    /// SPECIFY: head load / non-DMA.
    pub timer1: u8,
    /// Precompensation start track.
    pub precomp_trk: u8,
    /// CONFIGURE byte.
    pub config: u8,
    /// LOCK.
    pub lock: u8,
    /// Power-down mode.
    pub pwrd: u8,
    /// Drives configured: the destination's must be the same.
    #[vmstate(equal)]
    pub num_floppies: u8,
    /// The drives.
    #[vmstate(since = 1)]
    pub drives: [Fdrive; MAX_FD],
    /// Pending SENSE INTERRUPT results after a reset.
    #[vmstate(subsection = "fdc/reset_sensei", default)]
    pub reset_sensei: i32,
    /// The result-phase timer.
    #[vmstate(subsection = "fdc/result_timer", default)]
    pub result_timer: Timer,
    /// Command phase.
    #[vmstate(subsection = "fdc/phase", default)]
    pub phase: u8,
    /// Subsections the loaded stream carried (re-sent as received).
    #[vmstate(skip)]
    pub received: [bool; 3],
}

as_received!(FdcState {
    0 => had_reset_sensei, got_reset_sensei;
    1 => had_result_timer, got_result_timer;
    2 => had_phase, got_phase;
});

/// The ISA floppy controller (section `fdc`, v2, 593 bytes with both drives' `media_rate`).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(name = "fdc", version = 2, minimum_version = 2)]
pub struct Fdc {
    /// The controller.
    pub state: FdcState,
}

impl QemuState for Fdc {
    fn for_machine(_: &MachineType) -> Self {
        Fdc {
            state: FdcState {
                sra: 0,
                srb: 0,
                dor_vmstate: 0,
                tdr: 0,
                dsr: 0,
                msr: 0,
                status0: 0,
                status1: 0,
                status2: 0,
                fifo: [0; 512],
                data_pos: 0,
                data_len: 0,
                data_state: 0,
                data_dir: 0,
                eot: 0,
                timer0: 0,
                timer1: 0,
                precomp_trk: 0,
                config: 0,
                lock: 0,
                pwrd: 0,
                num_floppies: MAX_FD as u8,
                drives: Default::default(),
                reset_sensei: 0,
                result_timer: Timer::disarmed(),
                phase: 0,
                received: [false; 3],
            },
        }
    }
}
