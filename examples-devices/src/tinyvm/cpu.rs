//! The vCPU state of a tinyvm guest as a derived VmState type: section `tinyvm-cpu` v1.
//!
//! [`CpuState`] holds what the KVM `get_*` ioctls return (registers, special registers, FPU,
//! a fixed set of MSRs, the local APIC page), converted field by field: no kernel struct is
//! copied as raw bytes in either direction (hostile-input class E), and every field a loaded
//! value could index with is range-checked on load (segment attribute bits, the MSR count, the
//! MSR indexes, which must be in [`SAVED_MSRS`]).
//!
//! The special registers are all of `kvm_sregs`, so the 64-bit guest's long mode migrates with
//! no field added: EFER (LME, LMA), CR0 (PG), CR3 (its page tables, which are in guest RAM),
//! CR4 (PAE) and the segments' `l` and `db` bits (a 64-bit code segment).
//!
//! Wire layout (big-endian, in field order): the 18 `kvm_regs` words, 8 [`Segment`]s, 2
//! [`DTable`]s, the control registers, the interrupt bitmap, the [`Fpu`], `msr_count` (u32)
//! and that many [`Msr`] entries (at most [`MAX_MSRS`]), then the 1024-byte LAPIC page.

use kvm_bindings::{kvm_dtable, kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment};
use kvm_bindings::{kvm_sregs, Msrs};
use vmstate_runtime::VmState;

/// `From` in both directions between one of our migrated structs and the KVM struct it mirrors:
/// the listed fields are copied one by one (never the kernel struct as raw bytes), and the KVM
/// struct's padding fields get the values after the `;`.
macro_rules! mirror_kvm_struct {
    ($ours:ident <=> $kvm:ident { $($field:ident),+; $($pad:ident: $zero:expr),+ $(,)? }) => {
        impl From<&$kvm> for $ours {
            fn from(k: &$kvm) -> Self {
                $ours { $($field: k.$field),+ }
            }
        }

        impl From<&$ours> for $kvm {
            fn from(o: &$ours) -> Self {
                $kvm { $($field: o.$field,)+ $($pad: $zero),+ }
            }
        }
    };
}

/// The MSRs saved and restored, where the host's KVM lists them (`KVM_GET_MSR_INDEX_LIST`).
pub const SAVED_MSRS: [u32; 11] = [
    0x10,        // IA32_TIME_STAMP_COUNTER
    0x174,       // IA32_SYSENTER_CS
    0x175,       // IA32_SYSENTER_ESP
    0x176,       // IA32_SYSENTER_EIP
    0x1a0,       // IA32_MISC_ENABLE
    0x277,       // IA32_PAT
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // FMASK (SF_MASK)
    0xc000_0102, // KERNEL_GS_BASE
];

/// Room for MSR entries in [`CpuState::msrs`]; a stream with a larger `msr_count` is refused.
pub const MAX_MSRS: usize = 16;

/// A segment register (`kvm_segment`, without its padding byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, VmState)]
#[vmstate(name = "tinyvm-segment", version = 1, minimum_version = 1, nested)]
pub struct Segment {
    /// Base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u32,
    /// Selector.
    pub selector: u16,
    /// Descriptor type (4 bits).
    #[vmstate(range = 0..=15, rename = "type")]
    pub type_: u8,
    /// Present.
    #[vmstate(range = 0..=1)]
    pub present: u8,
    /// Descriptor privilege level.
    #[vmstate(range = 0..=3)]
    pub dpl: u8,
    /// Default operation size (D/B).
    #[vmstate(range = 0..=1)]
    pub db: u8,
    /// Code/data (1) or system (0) descriptor.
    #[vmstate(range = 0..=1)]
    pub s: u8,
    /// 64-bit code segment.
    #[vmstate(range = 0..=1)]
    pub l: u8,
    /// Granularity.
    #[vmstate(range = 0..=1)]
    pub g: u8,
    /// Available for software.
    #[vmstate(range = 0..=1)]
    pub avl: u8,
    /// Unusable (null selector loaded).
    #[vmstate(range = 0..=1)]
    pub unusable: u8,
}

mirror_kvm_struct!(Segment <=> kvm_segment {
    base, limit, selector, type_, present, dpl, db, s, l, g, avl, unusable;
    padding: 0,
});

/// A descriptor table register (`kvm_dtable`: GDTR or IDTR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, VmState)]
#[vmstate(name = "tinyvm-dtable", version = 1, minimum_version = 1, nested)]
pub struct DTable {
    /// Linear base address.
    pub base: u64,
    /// Limit in bytes.
    pub limit: u16,
}

mirror_kvm_struct!(DTable <=> kvm_dtable {
    base, limit;
    padding: [0; 3],
});

/// x87/SSE state (`kvm_fpu`, without padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, VmState)]
#[vmstate(name = "tinyvm-fpu", version = 1, minimum_version = 1, nested)]
pub struct Fpu {
    /// ST0–ST7 / MM0–MM7, 16 bytes each (80 bits used).
    pub fpr: [[u8; 16]; 8],
    /// x87 control word.
    pub fcw: u16,
    /// x87 status word.
    pub fsw: u16,
    /// Abridged x87 tag word.
    pub ftwx: u8,
    /// Last x87 opcode.
    pub last_opcode: u16,
    /// Last x87 instruction pointer.
    pub last_ip: u64,
    /// Last x87 data pointer.
    pub last_dp: u64,
    /// XMM0–XMM15.
    pub xmm: [[u8; 16]; 16],
    /// SSE control/status.
    pub mxcsr: u32,
}

mirror_kvm_struct!(Fpu <=> kvm_fpu {
    fpr, fcw, fsw, ftwx, last_opcode, last_ip, last_dp, xmm, mxcsr;
    pad1: 0,
    pad2: 0,
});

/// One MSR: index and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, VmState)]
#[vmstate(name = "tinyvm-msr", version = 1, minimum_version = 1, nested)]
pub struct Msr {
    /// MSR index (one of [`SAVED_MSRS`]; checked on load).
    pub index: u32,
    /// Value.
    pub data: u64,
}

/// The vCPU state: section `tinyvm-cpu` v1 (register it under idstr `tinyvm-cpu`, instance
/// = vCPU index).
#[derive(Debug, Clone, PartialEq, Eq, VmState)]
#[vmstate(
    name = "tinyvm-cpu",
    version = 1,
    minimum_version = 1,
    validate = Self::validate
)]
pub struct CpuState {
    /// RAX.
    pub rax: u64,
    /// RBX.
    pub rbx: u64,
    /// RCX.
    pub rcx: u64,
    /// RDX.
    pub rdx: u64,
    /// RSI.
    pub rsi: u64,
    /// RDI.
    pub rdi: u64,
    /// RSP.
    pub rsp: u64,
    /// RBP.
    pub rbp: u64,
    /// R8.
    pub r8: u64,
    /// R9.
    pub r9: u64,
    /// R10.
    pub r10: u64,
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
    /// RIP.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,

    /// CS.
    pub cs: Segment,
    /// DS.
    pub ds: Segment,
    /// ES.
    pub es: Segment,
    /// FS.
    pub fs: Segment,
    /// GS.
    pub gs: Segment,
    /// SS.
    pub ss: Segment,
    /// Task register.
    pub tr: Segment,
    /// LDTR.
    pub ldt: Segment,
    /// GDTR.
    pub gdt: DTable,
    /// IDTR.
    pub idt: DTable,
    /// CR0.
    pub cr0: u64,
    /// CR2.
    pub cr2: u64,
    /// CR3.
    pub cr3: u64,
    /// CR4.
    pub cr4: u64,
    /// CR8 (TPR).
    pub cr8: u64,
    /// IA32_EFER.
    pub efer: u64,
    /// IA32_APIC_BASE.
    pub apic_base: u64,
    /// Pending external interrupts, one bit per vector (`kvm_sregs.interrupt_bitmap`).
    pub interrupt_bitmap: [u64; 4],

    /// x87 / SSE state.
    pub fpu: Fpu,

    /// Entries used in `msrs`.
    pub msr_count: u32,
    /// The saved MSRs, `msr_count` of them.
    #[vmstate(count = msr_count, max = 16)]
    pub msrs: [Msr; MAX_MSRS],

    /// The local APIC register page (`kvm_lapic_state.regs`).
    pub lapic: [u8; 1024],
}

impl Default for CpuState {
    fn default() -> Self {
        let s = Segment::default();
        let d = DTable::default();
        CpuState {
            rax: 0,
            rbx: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            rsp: 0,
            rbp: 0,
            r8: 0,
            r9: 0,
            r10: 0,
            r11: 0,
            r12: 0,
            r13: 0,
            r14: 0,
            r15: 0,
            rip: 0,
            rflags: 0,
            cs: s,
            ds: s,
            es: s,
            fs: s,
            gs: s,
            ss: s,
            tr: s,
            ldt: s,
            gdt: d,
            idt: d,
            cr0: 0,
            cr2: 0,
            cr3: 0,
            cr4: 0,
            cr8: 0,
            efer: 0,
            apic_base: 0,
            interrupt_bitmap: [0; 4],
            fpu: Fpu::default(),
            msr_count: 0,
            msrs: [Msr::default(); MAX_MSRS],
            lapic: [0; 1024],
        }
    }
}

impl CpuState {
    /// Copies the general-purpose registers, RIP and RFLAGS in.
    pub fn set_from_regs(&mut self, r: &kvm_regs) {
        self.rax = r.rax;
        self.rbx = r.rbx;
        self.rcx = r.rcx;
        self.rdx = r.rdx;
        self.rsi = r.rsi;
        self.rdi = r.rdi;
        self.rsp = r.rsp;
        self.rbp = r.rbp;
        self.r8 = r.r8;
        self.r9 = r.r9;
        self.r10 = r.r10;
        self.r11 = r.r11;
        self.r12 = r.r12;
        self.r13 = r.r13;
        self.r14 = r.r14;
        self.r15 = r.r15;
        self.rip = r.rip;
        self.rflags = r.rflags;
    }

    /// The general-purpose registers, RIP and RFLAGS for `KVM_SET_REGS`.
    #[must_use]
    pub fn regs(&self) -> kvm_regs {
        kvm_regs {
            rax: self.rax,
            rbx: self.rbx,
            rcx: self.rcx,
            rdx: self.rdx,
            rsi: self.rsi,
            rdi: self.rdi,
            rsp: self.rsp,
            rbp: self.rbp,
            r8: self.r8,
            r9: self.r9,
            r10: self.r10,
            r11: self.r11,
            r12: self.r12,
            r13: self.r13,
            r14: self.r14,
            r15: self.r15,
            rip: self.rip,
            rflags: self.rflags,
        }
    }

    /// Copies the special registers in.
    pub fn set_from_sregs(&mut self, s: &kvm_sregs) {
        self.cs = (&s.cs).into();
        self.ds = (&s.ds).into();
        self.es = (&s.es).into();
        self.fs = (&s.fs).into();
        self.gs = (&s.gs).into();
        self.ss = (&s.ss).into();
        self.tr = (&s.tr).into();
        self.ldt = (&s.ldt).into();
        self.gdt = (&s.gdt).into();
        self.idt = (&s.idt).into();
        self.cr0 = s.cr0;
        self.cr2 = s.cr2;
        self.cr3 = s.cr3;
        self.cr4 = s.cr4;
        self.cr8 = s.cr8;
        self.efer = s.efer;
        self.apic_base = s.apic_base;
        self.interrupt_bitmap = s.interrupt_bitmap;
    }

    /// The special registers for `KVM_SET_SREGS`.
    #[must_use]
    pub fn sregs(&self) -> kvm_sregs {
        kvm_sregs {
            cs: (&self.cs).into(),
            ds: (&self.ds).into(),
            es: (&self.es).into(),
            fs: (&self.fs).into(),
            gs: (&self.gs).into(),
            ss: (&self.ss).into(),
            tr: (&self.tr).into(),
            ldt: (&self.ldt).into(),
            gdt: (&self.gdt).into(),
            idt: (&self.idt).into(),
            cr0: self.cr0,
            cr2: self.cr2,
            cr3: self.cr3,
            cr4: self.cr4,
            cr8: self.cr8,
            efer: self.efer,
            apic_base: self.apic_base,
            interrupt_bitmap: self.interrupt_bitmap,
        }
    }

    /// Copies the MSR entries in (at most [`MAX_MSRS`]; the rest are dropped).
    pub fn set_from_msrs(&mut self, entries: &[kvm_msr_entry]) {
        self.msrs = [Msr::default(); MAX_MSRS];
        let n = entries.len().min(MAX_MSRS);
        for (dst, src) in self.msrs.iter_mut().zip(&entries[..n]) {
            *dst = Msr {
                index: src.index,
                data: src.data,
            };
        }
        // n <= MAX_MSRS = 16.
        self.msr_count = u32::try_from(n).unwrap_or(0);
    }

    /// The used MSR entries (`msr_count` of them, clamped to [`MAX_MSRS`]).
    #[must_use]
    pub fn used_msrs(&self) -> &[Msr] {
        let n = usize::try_from(self.msr_count)
            .unwrap_or(MAX_MSRS)
            .min(MAX_MSRS);
        &self.msrs[..n]
    }

    /// The MSR entries for `KVM_SET_MSRS`.
    ///
    /// # Errors
    ///
    /// If kvm-bindings cannot build the list (more than its maximum entries).
    pub fn kvm_msrs(&self) -> Result<Msrs, String> {
        let entries: Vec<kvm_msr_entry> = self
            .used_msrs()
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                reserved: 0,
                data: m.data,
            })
            .collect();
        Msrs::from_entries(&entries).map_err(|e| format!("MSR list: {e:?}"))
    }

    /// Copies the LAPIC register page in.
    pub fn set_from_lapic(&mut self, l: &kvm_lapic_state) {
        for (dst, &src) in self.lapic.iter_mut().zip(l.regs.iter()) {
            *dst = src.to_ne_bytes()[0];
        }
    }

    /// The LAPIC register page for `KVM_SET_LAPIC`.
    #[must_use]
    pub fn kvm_lapic(&self) -> kvm_lapic_state {
        let mut l = kvm_lapic_state::default();
        for (dst, &src) in l.regs.iter_mut().zip(self.lapic.iter()) {
            *dst = std::ffi::c_char::from_ne_bytes([src]);
        }
        l
    }

    /// Load-time check: every used MSR entry names one of [`SAVED_MSRS`], once.
    fn validate(&self) -> Result<(), String> {
        let used = self.used_msrs();
        for (i, m) in used.iter().enumerate() {
            if !SAVED_MSRS.contains(&m.index) {
                return Err(format!(
                    "msrs[{i}].index: MSR {:#x} is not one tinyvm migrates",
                    m.index
                ));
            }
            if used[..i].iter().any(|p| p.index == m.index) {
                return Err(format!("msrs[{i}].index: MSR {:#x} appears twice", m.index));
            }
        }
        Ok(())
    }
}
