//! The x86 CPU (section `cpu`, v12): QEMU 7.2's `X86CPU` state as the golden streams carry
//! it, every field and the subsections those streams hold. State only.
//!
//! The field list is the vmdesc QEMU 7.2 writes for version 12 (66 entries; `env.*` names
//! kept on the wire with `rename`). The x87 registers go through QEMU's temporary view
//! (`VMSTATE_WITH_TMP`): each `fpreg` element is written as `fpreg_tmp` (be64 mantissa, be16
//! sign and exponent), which [`FpReg`] keeps as a [`Tmp`] view of its 80-bit value.
//!
//! Subsections: QEMU decides from CPU behaviour (and the accelerator) which of its ~40
//! subsections it sends. The golden TCG streams carry `cpu/poll_control_msr`, QEMU's KVM
//! streams on this host `cpu/tsc_khz`; these two are declared and re-sent exactly when the
//! loaded stream had them. A stream with any other `cpu` subsection fails to load naming it
//! (unknown subsection) rather than being misread. Streams of versions before 12 are refused
//! (`minimum_version = 12`): which of these fields older versions lack is not recorded here.

use vmstate_runtime::{MachineType, Tmp, TmpView, VmState};

use super::QemuState;

/// A segment register or descriptor table (`segment`, v1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "segment", version = 1, minimum_version = 1, nested)]
pub struct Segment {
    /// Selector.
    pub selector: u32,
    /// Base address.
    pub base: u64,
    /// Limit.
    pub limit: u32,
    /// Attribute flags.
    pub flags: u32,
}

/// An 80-bit x87 register as the wire carries it (`fpreg_tmp`, v0): the temporary view.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "fpreg_tmp", version = 0, minimum_version = 0, nested)]
pub struct FpRegTmp {
    /// The 64-bit mantissa.
    pub tmp_mant: u64,
    /// Sign and 15-bit exponent.
    pub tmp_exp: u16,
}

/// One x87 register (`fpreg`, v0): its value, migrated only through [`FpRegTmp`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "fpreg", version = 0, minimum_version = 0, nested)]
pub struct FpReg {
    /// The view written in its place.
    pub tmp: Tmp<FpRegTmp>,
    /// The mantissa.
    #[vmstate(skip)]
    pub mant: u64,
    /// Sign and exponent.
    #[vmstate(skip)]
    pub exp: u16,
}

impl TmpView<FpReg> for FpRegTmp {
    type Error = std::convert::Infallible;

    fn save_view(reg: &FpReg) -> Result<Self, Self::Error> {
        Ok(FpRegTmp {
            tmp_mant: reg.mant,
            tmp_exp: reg.exp,
        })
    }

    fn load_view(self, reg: &mut FpReg) -> Result<(), Self::Error> {
        reg.mant = self.tmp_mant;
        reg.exp = self.tmp_exp;
        Ok(())
    }
}

/// The low 128 bits of a vector register (`xmm_reg`, v1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "xmm_reg", version = 1, minimum_version = 1, nested)]
pub struct XmmReg {
    /// Bits 0..64.
    #[vmstate(rename = "_q_ZMMReg[0]")]
    pub q0: u64,
    /// Bits 64..128.
    #[vmstate(rename = "_q_ZMMReg[1]")]
    pub q1: u64,
}

/// Bits 128..256 of a vector register (`ymmh_reg`, v1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "ymmh_reg", version = 1, minimum_version = 1, nested)]
pub struct YmmhReg {
    /// Bits 128..192.
    #[vmstate(rename = "_q_ZMMReg[2]")]
    pub q2: u64,
    /// Bits 192..256.
    #[vmstate(rename = "_q_ZMMReg[3]")]
    pub q3: u64,
}

/// A variable-range MTRR (`mtrr_var`, v1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, VmState)]
#[vmstate(name = "mtrr_var", version = 1, minimum_version = 1, nested)]
pub struct MtrrVar {
    /// `IA32_MTRR_PHYSBASEn`.
    pub base: u64,
    /// `IA32_MTRR_PHYSMASKn`.
    pub mask: u64,
}

/// The x86 CPU (section `cpu`, v12; one instance per vCPU). Field names follow QEMU's
/// (`env.regs` is `regs`, `env.cr[0]` is `cr0`, the two `env.xmm_regs` entries are `xmm_regs`
/// and `ymmh_regs`); each is documented by the QEMU field it carries.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "cpu",
    version = 12,
    minimum_version = 12,
    subsection(name = "cpu/tsc_khz", version = 1, minimum_version = 1,
               when = pred(Self::had_tsc_khz), pre_load = Self::got_tsc_khz),
    subsection(name = "cpu/poll_control_msr", version = 1, minimum_version = 1,
               when = pred(Self::had_poll_control_msr), pre_load = Self::got_poll_control_msr)
)]
pub struct X86Cpu {
    #[vmstate(rename = "env.regs")]
    pub regs: [u64; 16],
    #[vmstate(rename = "env.eip")]
    pub eip: u64,
    #[vmstate(rename = "env.eflags")]
    pub eflags: u64,
    #[vmstate(rename = "env.hflags")]
    pub hflags: u32,
    #[vmstate(rename = "env.fpuc")]
    pub fpuc: u16,
    #[vmstate(rename = "env.fpus_vmstate")]
    pub fpus_vmstate: u16,
    #[vmstate(rename = "env.fptag_vmstate")]
    pub fptag_vmstate: u16,
    #[vmstate(rename = "env.fpregs_format_vmstate")]
    pub fpregs_format_vmstate: u16,
    #[vmstate(rename = "env.fpregs")]
    pub fpregs: [FpReg; 8],
    #[vmstate(rename = "env.segs")]
    pub segs: [Segment; 6],
    #[vmstate(rename = "env.ldt")]
    pub ldt: Segment,
    #[vmstate(rename = "env.tr")]
    pub tr: Segment,
    #[vmstate(rename = "env.gdt")]
    pub gdt: Segment,
    #[vmstate(rename = "env.idt")]
    pub idt: Segment,
    #[vmstate(rename = "env.sysenter_cs")]
    pub sysenter_cs: u32,
    #[vmstate(rename = "env.sysenter_esp")]
    pub sysenter_esp: u64,
    #[vmstate(rename = "env.sysenter_eip")]
    pub sysenter_eip: u64,
    #[vmstate(rename = "env.cr[0]")]
    pub cr0: u64,
    #[vmstate(rename = "env.cr[2]")]
    pub cr2: u64,
    #[vmstate(rename = "env.cr[3]")]
    pub cr3: u64,
    #[vmstate(rename = "env.cr[4]")]
    pub cr4: u64,
    #[vmstate(rename = "env.dr")]
    pub dr: [u64; 8],
    #[vmstate(rename = "env.a20_mask")]
    pub a20_mask: i32,
    #[vmstate(rename = "env.mxcsr")]
    pub mxcsr: u32,
    #[vmstate(rename = "env.xmm_regs")]
    pub xmm_regs: [XmmReg; 16],
    #[vmstate(rename = "env.efer")]
    pub efer: u64,
    #[vmstate(rename = "env.star")]
    pub star: u64,
    #[vmstate(rename = "env.lstar")]
    pub lstar: u64,
    #[vmstate(rename = "env.cstar")]
    pub cstar: u64,
    #[vmstate(rename = "env.fmask")]
    pub fmask: u64,
    #[vmstate(rename = "env.kernelgsbase")]
    pub kernelgsbase: u64,
    #[vmstate(rename = "env.smbase")]
    pub smbase: u32,
    #[vmstate(rename = "env.pat")]
    pub pat: u64,
    #[vmstate(rename = "env.hflags2")]
    pub hflags2: u32,
    #[vmstate(rename = "env.vm_hsave")]
    pub vm_hsave: u64,
    #[vmstate(rename = "env.vm_vmcb")]
    pub vm_vmcb: u64,
    #[vmstate(rename = "env.tsc_offset")]
    pub tsc_offset: u64,
    #[vmstate(rename = "env.intercept")]
    pub intercept: u64,
    #[vmstate(rename = "env.intercept_cr_read")]
    pub intercept_cr_read: u16,
    #[vmstate(rename = "env.intercept_cr_write")]
    pub intercept_cr_write: u16,
    #[vmstate(rename = "env.intercept_dr_read")]
    pub intercept_dr_read: u16,
    #[vmstate(rename = "env.intercept_dr_write")]
    pub intercept_dr_write: u16,
    #[vmstate(rename = "env.intercept_exceptions")]
    pub intercept_exceptions: u32,
    #[vmstate(rename = "env.v_tpr")]
    pub v_tpr: u8,
    #[vmstate(rename = "env.mtrr_fixed")]
    pub mtrr_fixed: [u64; 11],
    #[vmstate(rename = "env.mtrr_deftype")]
    pub mtrr_deftype: u64,
    #[vmstate(rename = "env.mtrr_var")]
    pub mtrr_var: [MtrrVar; 8],
    #[vmstate(rename = "env.interrupt_injected")]
    pub interrupt_injected: i32,
    #[vmstate(rename = "env.mp_state")]
    pub mp_state: u32,
    #[vmstate(rename = "env.tsc")]
    pub tsc: u64,
    #[vmstate(rename = "env.exception_nr")]
    pub exception_nr: i32,
    #[vmstate(rename = "env.soft_interrupt")]
    pub soft_interrupt: u8,
    #[vmstate(rename = "env.nmi_injected")]
    pub nmi_injected: u8,
    #[vmstate(rename = "env.nmi_pending")]
    pub nmi_pending: u8,
    #[vmstate(rename = "env.has_error_code")]
    pub has_error_code: u8,
    #[vmstate(rename = "env.sipi_vector")]
    pub sipi_vector: u32,
    #[vmstate(rename = "env.mcg_cap")]
    pub mcg_cap: u64,
    #[vmstate(rename = "env.mcg_status")]
    pub mcg_status: u64,
    #[vmstate(rename = "env.mcg_ctl")]
    pub mcg_ctl: u64,
    #[vmstate(rename = "env.mce_banks")]
    pub mce_banks: [u64; 40],
    #[vmstate(rename = "env.tsc_aux")]
    pub tsc_aux: u64,
    #[vmstate(rename = "env.system_time_msr")]
    pub system_time_msr: u64,
    #[vmstate(rename = "env.wall_clock_msr")]
    pub wall_clock_msr: u64,
    #[vmstate(rename = "env.xcr0")]
    pub xcr0: u64,
    #[vmstate(rename = "env.xstate_bv")]
    pub xstate_bv: u64,
    #[vmstate(rename = "env.xmm_regs")]
    pub ymmh_regs: [YmmhReg; 16],
    /// `cpu/tsc_khz` (KVM): the guest TSC frequency.
    #[vmstate(subsection = "cpu/tsc_khz", rename = "env.tsc_khz", default)]
    pub tsc_khz: i64,
    /// `cpu/poll_control_msr`: `MSR_KVM_POLL_CONTROL`.
    #[vmstate(
        subsection = "cpu/poll_control_msr",
        rename = "env.poll_control_msr",
        default
    )]
    pub poll_control_msr: u64,
    /// Which subsections the loaded stream had (re-sent exactly so).
    #[vmstate(skip)]
    pub received: [bool; 2],
}

as_received!(X86Cpu {
    0 => had_tsc_khz, got_tsc_khz;
    1 => had_poll_control_msr, got_poll_control_msr;
});

impl QemuState for X86Cpu {
    fn for_machine(_: &MachineType) -> Self {
        X86Cpu {
            regs: [0; 16],
            eip: 0,
            eflags: 0,
            hflags: 0,
            fpuc: 0,
            fpus_vmstate: 0,
            fptag_vmstate: 0,
            fpregs_format_vmstate: 0,
            fpregs: [FpReg::default(); 8],
            segs: [Segment::default(); 6],
            ldt: Segment::default(),
            tr: Segment::default(),
            gdt: Segment::default(),
            idt: Segment::default(),
            sysenter_cs: 0,
            sysenter_esp: 0,
            sysenter_eip: 0,
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            dr: [0; 8],
            a20_mask: 0,
            mxcsr: 0,
            xmm_regs: [XmmReg::default(); 16],
            efer: 0,
            star: 0,
            lstar: 0,
            cstar: 0,
            fmask: 0,
            kernelgsbase: 0,
            smbase: 0,
            pat: 0,
            hflags2: 0,
            vm_hsave: 0,
            vm_vmcb: 0,
            tsc_offset: 0,
            intercept: 0,
            intercept_cr_read: 0,
            intercept_cr_write: 0,
            intercept_dr_read: 0,
            intercept_dr_write: 0,
            intercept_exceptions: 0,
            v_tpr: 0,
            mtrr_fixed: [0; 11],
            mtrr_deftype: 0,
            mtrr_var: [MtrrVar::default(); 8],
            interrupt_injected: 0,
            mp_state: 0,
            tsc: 0,
            exception_nr: 0,
            soft_interrupt: 0,
            nmi_injected: 0,
            nmi_pending: 0,
            has_error_code: 0,
            sipi_vector: 0,
            mcg_cap: 0,
            mcg_status: 0,
            mcg_ctl: 0,
            mce_banks: [0; 40],
            tsc_aux: 0,
            system_time_msr: 0,
            wall_clock_msr: 0,
            xcr0: 0,
            xstate_bv: 0,
            ymmh_regs: [YmmhReg::default(); 16],
            tsc_khz: 0,
            poll_control_msr: 0,
            received: [false; 2],
        }
    }
}
