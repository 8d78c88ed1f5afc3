//! CPUID feature names, for the vCPU part of a configuration manifest
//! (`vmstate_runtime::manifest::CpuModel`): which features a guest's CPUID shows, and hiding
//! some of them (to make a destination that lacks them, on purpose).
//!
//! The table holds the features of leaves 1, 7.0, 0xd.1 and 0x8000_0001 under the names Linux
//! prints in `/proc/cpuinfo` (bit positions from the Intel SDM and AMD APM).

use std::collections::BTreeSet;

/// One CPUID leaf as a VMM gives it to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidEntry {
    /// EAX input (the leaf).
    pub function: u32,
    /// ECX input (the sub-leaf).
    pub index: u32,
    /// Output EAX.
    pub eax: u32,
    /// Output EBX.
    pub ebx: u32,
    /// Output ECX.
    pub ecx: u32,
    /// Output EDX.
    pub edx: u32,
}

#[derive(Clone, Copy)]
enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// (name, leaf, sub-leaf, register, bit).
const FEATURES: &[(&str, u32, u32, Reg, u8)] = {
    use Reg::{Eax, Ebx, Ecx, Edx};
    &[
        ("fpu", 1, 0, Edx, 0),
        ("vme", 1, 0, Edx, 1),
        ("de", 1, 0, Edx, 2),
        ("pse", 1, 0, Edx, 3),
        ("tsc", 1, 0, Edx, 4),
        ("msr", 1, 0, Edx, 5),
        ("pae", 1, 0, Edx, 6),
        ("mce", 1, 0, Edx, 7),
        ("cx8", 1, 0, Edx, 8),
        ("apic", 1, 0, Edx, 9),
        ("sep", 1, 0, Edx, 11),
        ("mtrr", 1, 0, Edx, 12),
        ("pge", 1, 0, Edx, 13),
        ("mca", 1, 0, Edx, 14),
        ("cmov", 1, 0, Edx, 15),
        ("pat", 1, 0, Edx, 16),
        ("pse36", 1, 0, Edx, 17),
        ("clflush", 1, 0, Edx, 19),
        ("mmx", 1, 0, Edx, 23),
        ("fxsr", 1, 0, Edx, 24),
        ("sse", 1, 0, Edx, 25),
        ("sse2", 1, 0, Edx, 26),
        ("ht", 1, 0, Edx, 28),
        ("pni", 1, 0, Ecx, 0),
        ("pclmulqdq", 1, 0, Ecx, 1),
        ("monitor", 1, 0, Ecx, 3),
        ("vmx", 1, 0, Ecx, 5),
        ("ssse3", 1, 0, Ecx, 9),
        ("fma", 1, 0, Ecx, 12),
        ("cx16", 1, 0, Ecx, 13),
        ("pcid", 1, 0, Ecx, 17),
        ("sse4_1", 1, 0, Ecx, 19),
        ("sse4_2", 1, 0, Ecx, 20),
        ("x2apic", 1, 0, Ecx, 21),
        ("movbe", 1, 0, Ecx, 22),
        ("popcnt", 1, 0, Ecx, 23),
        ("tsc_deadline_timer", 1, 0, Ecx, 24),
        ("aes", 1, 0, Ecx, 25),
        ("xsave", 1, 0, Ecx, 26),
        ("avx", 1, 0, Ecx, 28),
        ("f16c", 1, 0, Ecx, 29),
        ("rdrand", 1, 0, Ecx, 30),
        ("hypervisor", 1, 0, Ecx, 31),
        ("fsgsbase", 7, 0, Ebx, 0),
        ("bmi1", 7, 0, Ebx, 3),
        ("hle", 7, 0, Ebx, 4),
        ("avx2", 7, 0, Ebx, 5),
        ("smep", 7, 0, Ebx, 7),
        ("bmi2", 7, 0, Ebx, 8),
        ("erms", 7, 0, Ebx, 9),
        ("invpcid", 7, 0, Ebx, 10),
        ("rtm", 7, 0, Ebx, 11),
        ("mpx", 7, 0, Ebx, 14),
        ("avx512f", 7, 0, Ebx, 16),
        ("avx512dq", 7, 0, Ebx, 17),
        ("rdseed", 7, 0, Ebx, 18),
        ("adx", 7, 0, Ebx, 19),
        ("smap", 7, 0, Ebx, 20),
        ("avx512ifma", 7, 0, Ebx, 21),
        ("clflushopt", 7, 0, Ebx, 23),
        ("clwb", 7, 0, Ebx, 24),
        ("avx512cd", 7, 0, Ebx, 28),
        ("sha_ni", 7, 0, Ebx, 29),
        ("avx512bw", 7, 0, Ebx, 30),
        ("avx512vl", 7, 0, Ebx, 31),
        ("avx512vbmi", 7, 0, Ecx, 1),
        ("umip", 7, 0, Ecx, 2),
        ("pku", 7, 0, Ecx, 3),
        ("waitpkg", 7, 0, Ecx, 5),
        ("avx512_vbmi2", 7, 0, Ecx, 6),
        ("gfni", 7, 0, Ecx, 8),
        ("vaes", 7, 0, Ecx, 9),
        ("vpclmulqdq", 7, 0, Ecx, 10),
        ("avx512_vnni", 7, 0, Ecx, 11),
        ("avx512_bitalg", 7, 0, Ecx, 12),
        ("avx512_vpopcntdq", 7, 0, Ecx, 14),
        ("la57", 7, 0, Ecx, 16),
        ("rdpid", 7, 0, Ecx, 22),
        ("md_clear", 7, 0, Edx, 10),
        ("serialize", 7, 0, Edx, 14),
        ("arch_lbr", 7, 0, Edx, 19),
        ("amx_bf16", 7, 0, Edx, 22),
        ("avx512_fp16", 7, 0, Edx, 23),
        ("amx_tile", 7, 0, Edx, 24),
        ("amx_int8", 7, 0, Edx, 25),
        ("spec_ctrl", 7, 0, Edx, 26),
        ("intel_stibp", 7, 0, Edx, 27),
        ("flush_l1d", 7, 0, Edx, 28),
        ("arch_capabilities", 7, 0, Edx, 29),
        ("ssbd", 7, 0, Edx, 31),
        ("xsaveopt", 0xd, 1, Eax, 0),
        ("xsavec", 0xd, 1, Eax, 1),
        ("xgetbv1", 0xd, 1, Eax, 2),
        ("xsaves", 0xd, 1, Eax, 3),
        ("lahf_lm", 0x8000_0001, 0, Ecx, 0),
        ("abm", 0x8000_0001, 0, Ecx, 5),
        ("sse4a", 0x8000_0001, 0, Ecx, 6),
        ("3dnowprefetch", 0x8000_0001, 0, Ecx, 8),
        ("syscall", 0x8000_0001, 0, Edx, 11),
        ("nx", 0x8000_0001, 0, Edx, 20),
        ("pdpe1gb", 0x8000_0001, 0, Edx, 26),
        ("rdtscp", 0x8000_0001, 0, Edx, 27),
        ("lm", 0x8000_0001, 0, Edx, 29),
    ]
};

fn reg(e: &mut CpuidEntry, r: Reg) -> &mut u32 {
    match r {
        Reg::Eax => &mut e.eax,
        Reg::Ebx => &mut e.ebx,
        Reg::Ecx => &mut e.ecx,
        Reg::Edx => &mut e.edx,
    }
}

/// Whether `entry` is the leaf a table row names (sub-leaves matter for leaves 7 and 0xd only).
fn is_leaf(entry: &CpuidEntry, function: u32, index: u32) -> bool {
    entry.function == function && (!matches!(function, 7 | 0xd) || entry.index == index)
}

/// The names of the features `entries` show.
#[must_use]
pub fn features(entries: &[CpuidEntry]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for e in entries {
        let mut e = *e;
        for &(name, f, i, r, bit) in FEATURES {
            if is_leaf(&e, f, i) && *reg(&mut e, r) & (1 << bit) != 0 {
                out.insert(name.to_owned());
            }
        }
    }
    out
}

/// Clears the bits of the named features in `entries`.
///
/// # Errors
/// The first name the table does not know, with the known names.
pub fn hide(entries: &mut [CpuidEntry], names: &[String]) -> Result<(), String> {
    for name in names {
        let Some(&(_, f, i, r, bit)) = FEATURES.iter().find(|t| t.0 == name) else {
            let known: Vec<&str> = FEATURES.iter().map(|t| t.0).collect();
            return Err(format!(
                "unknown CPU feature `{name}` (known: {})",
                known.join(", ")
            ));
        };
        for e in entries.iter_mut().filter(|e| is_leaf(e, f, i)) {
            *reg(e, r) &= !(1 << bit);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_hiding() {
        let mut leaves = vec![
            CpuidEntry {
                function: 1,
                ecx: (1 << 28) | (1 << 21),
                edx: 1 << 26,
                ..CpuidEntry::default()
            },
            CpuidEntry {
                function: 7,
                index: 0,
                ebx: (1 << 5) | (1 << 16),
                ..CpuidEntry::default()
            },
            // Sub-leaf 1 of leaf 7: not the sub-leaf the table reads.
            CpuidEntry {
                function: 7,
                index: 1,
                ebx: 1 << 16,
                ..CpuidEntry::default()
            },
        ];
        let f: Vec<String> = features(&leaves).into_iter().collect();
        assert_eq!(f, ["avx", "avx2", "avx512f", "sse2", "x2apic"]);
        hide(&mut leaves, &["avx512f".into(), "x2apic".into()]).unwrap();
        let f: Vec<String> = features(&leaves).into_iter().collect();
        assert_eq!(f, ["avx", "avx2", "sse2"]);
        assert_eq!(leaves[2].ebx, 1 << 16, "other sub-leaves untouched");
        let err = hide(&mut leaves, &["avx1024".into()]).unwrap_err();
        assert!(
            err.starts_with("unknown CPU feature `avx1024` (known: fpu, vme"),
            "{err}"
        );
    }
}
