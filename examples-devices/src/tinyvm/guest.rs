//! The tinyvm guest: 45 bytes of hand-assembled 16-bit real-mode code (the default 1 MiB
//! guest), 75 bytes of 32-bit protected-mode code (any other size up to 3 GiB, or a dirty-rate
//! limit; see [`GUEST_CODE32`]), 86 bytes of 64-bit long-mode code (above 3 GiB, RAM split
//! around the hole under 4 GiB; see [`GUEST_CODE64`]), the [`Workload`] (RAM size and dirty rate), the page [`Budget`] that paces
//! the dirty rate, and the check of the memory pattern both programs write.
//!
//! # Layout (1 MiB of RAM at guest physical address 0; larger RAM has more pattern pages)
//!
//! | range | use |
//! |---|---|
//! | `0x0000..0x1000` | page 0: real-mode stack (SS:SP = 0:0x1000, grows down) |
//! | `0x1000..0x102d` | page 1: the code below, entered at CS:IP = 0:0x1000 |
//! | `0x2000..0x100000` | pages 2–255: one little-endian `u32` counter at the start of each page |
//! | `0x2000..size` | (other sizes) pages 2 to the last: one counter each, as above |
//!
//! # Program
//!
//! The guest prints `A` once, then loops forever: one *pass* increments the counter of every
//! pattern page, in ascending address order (page 2 first, page 255 last), then prints `B`.
//! A page is reached through ES: segment `page << 8` puts the page at `ES:0`, and the walk ends
//! when adding `0x100` to the segment wraps to 0 (past page 255). `putc` polls the UART's Line
//! Status Register at port 0x3fd until THRE (bit 5) is set, then writes the byte to THR at
//! 0x3f8. Interrupts are off (`cli`); nothing else leaves the guest but the port I/O.
//!
//! ```text
//! 0x1000  fa                 cli
//! 0x1001  b4 41              mov  ah, 'A'
//! 0x1003  e8 18 00           call putc                  ; 0x101e
//! outer:
//! 0x1006  bb 00 02           mov  bx, 0x0200            ; segment of page 2
//! inner:
//! 0x1009  8e c3              mov  es, bx
//! 0x100b  26 66 ff 06 00 00  inc  dword [es:0x0000]     ; this page's counter
//! 0x1011  81 c3 00 01        add  bx, 0x0100            ; next page
//! 0x1015  75 f2              jnz  inner                 ; until bx wraps past page 255
//! 0x1017  b4 42              mov  ah, 'B'
//! 0x1019  e8 02 00           call putc                  ; 0x101e
//! 0x101c  eb e8              jmp  outer                 ; 0x1006
//! putc:
//! 0x101e  ba fd 03           mov  dx, 0x3fd             ; LSR
//! 0x1021  ec                 in   al, dx
//! 0x1022  a8 20              test al, 0x20              ; THRE
//! 0x1024  74 fb              jz   0x1021
//! 0x1026  ba f8 03           mov  dx, 0x3f8             ; THR
//! 0x1029  88 e0              mov  al, ah
//! 0x102b  ee                 out  dx, al
//! 0x102c  c3                 ret
//! ```
//!
//! # The 32-bit program
//!
//! For any other RAM size, or with a dirty-rate limit, the VMM starts the vCPU directly in
//! 32-bit protected mode (CR0.PE, flat 4 GiB code and data segments set through
//! `KVM_SET_SREGS`, no GDT needed; the migrated vCPU state carries the segment caches and CR0),
//! with EIP = ESP = 0x1000 and EDI = the RAM size, and [`GUEST_CODE32`] walks the same pattern
//! over every page up to EDI (so up to 3 GiB, [`LOW_RAM_MAX`]; larger guests run the 64-bit
//! program below). Before each page it takes one
//! page from its budget (ESI); when that is empty it reads a new budget, a `u32`, from port
//! [`BUDGET_PORT`]: the number of pages the VMM lets it dirty now ([`Budget::grant`]); 0 means
//! `pause` and ask again.
//!
//! ```text
//! 0x1000  fa                cli
//! 0x1001  b0 41             mov  al, 'A'
//! 0x1003  e8 30 00 00 00    call putc                  ; 0x1038
//! 0x1008  31 f6             xor  esi, esi              ; no budget yet
//! outer:
//! 0x100a  bb 00 20 00 00    mov  ebx, 0x2000           ; page 2
//! inner:
//! 0x100f  85 f6             test esi, esi
//! 0x1011  75 0f             jnz  have
//! ask:
//! 0x1013  66 ba f0 07       mov  dx, 0x7f0             ; BUDGET_PORT
//! 0x1017  ed                in   eax, dx
//! 0x1018  89 c6             mov  esi, eax
//! 0x101a  85 f6             test esi, esi
//! 0x101c  75 04             jnz  have
//! 0x101e  f3 90             pause
//! 0x1020  eb f1             jmp  ask
//! have:
//! 0x1022  ff 03             inc  dword [ebx]           ; this page's counter
//! 0x1024  4e                dec  esi
//! 0x1025  81 c3 00 10 00 00 add  ebx, 0x1000           ; next page
//! 0x102b  39 fb             cmp  ebx, edi              ; RAM size
//! 0x102d  72 e0             jb   inner
//! 0x102f  b0 42             mov  al, 'B'
//! 0x1031  e8 02 00 00 00    call putc
//! 0x1036  eb d2             jmp  outer
//! putc:                                                ; al = the byte
//! 0x1038  88 c4             mov  ah, al
//! 0x103a  66 ba fd 03       mov  dx, 0x3fd             ; LSR
//! 0x103e  ec                in   al, dx
//! 0x103f  a8 20             test al, 0x20              ; THRE
//! 0x1041  74 fb             jz   0x103e
//! 0x1043  66 ba f8 03       mov  dx, 0x3f8             ; THR
//! 0x1047  88 e0             mov  al, ah
//! 0x1049  ee                out  dx, al
//! 0x104a  c3                ret
//! ```
//!
//! # The 64-bit program
//!
//! Above [`LOW_RAM_MAX`] (3 GiB) RAM is split as on a PC: the first 3 GiB at guest addresses
//! `0..0xc000_0000`, the rest from [`HIGH_RAM_BASE`] (4 GiB) up, leaving the hole under 4 GiB
//! (IOAPIC, local APIC, KVM's TSS pages) free ([`ram_layout`]). It is still one RAM block
//! (`pc.ram`, one host mapping, as QEMU's `pc.ram` seen through its `ram-below-4g` and
//! `ram-above-4g` aliases) registered as two KVM memory slots, so snapshots, migration streams
//! and the pattern check see one block in which the walk is ascending. The VMM writes identity
//! page tables with 2 MiB pages at [`PAGE_TABLES_ADDR`] ([`page_tables`]; pages 2..64 are
//! reserved, the pattern starts at page [`LONG_FIRST_PATTERN_PAGE`]) and starts the vCPU in
//! 64-bit long mode through `KVM_SET_SREGS`: CR3 = the PML4, CR4.PAE, EFER.LME|LMA, CR0.PE|PG,
//! CS a 64-bit code segment (L = 1, D = 0), flat data segments. RIP = RSP = 0x1000, RDI = the
//! end of the low RAM, R8 = 4 GiB, R9 = the end of the high RAM. [`GUEST_CODE64`] is the 32-bit
//! walk with 64-bit addresses and one jump over the hole; the budget port and the serial
//! protocol are the same. All of this (registers, EFER, CR0/CR3/CR4, the segments' L bits)
//! migrates in the `tinyvm-cpu` section, and the page tables in RAM.
//!
//! ```text
//! 0x1000  fa                    cli
//! 0x1001  b0 41                 mov  al, 'A'
//! 0x1003  e8 3b 00 00 00        call putc                  ; 0x1043
//! 0x1008  31 f6                 xor  esi, esi              ; no budget yet
//! outer:
//! 0x100a  bb 00 00 04 00        mov  ebx, 0x40000          ; page 64 (rbx zero-extended)
//! inner:
//! 0x100f  85 f6                 test esi, esi
//! 0x1011  75 0f                 jnz  have                  ; 0x1022
//! ask:
//! 0x1013  66 ba f0 07           mov  dx, 0x7f0             ; BUDGET_PORT
//! 0x1017  ed                    in   eax, dx
//! 0x1018  89 c6                 mov  esi, eax
//! 0x101a  85 f6                 test esi, esi
//! 0x101c  75 04                 jnz  have
//! 0x101e  f3 90                 pause
//! 0x1020  eb f1                 jmp  ask                   ; 0x1013
//! have:
//! 0x1022  ff 03                 inc  dword [rbx]           ; this page's counter
//! 0x1024  ff ce                 dec  esi                   ; (0x4e is REX in 64-bit mode)
//! 0x1026  48 81 c3 00 10 00 00  add  rbx, 0x1000           ; next page
//! 0x102d  48 39 fb              cmp  rbx, rdi              ; end of the low RAM?
//! 0x1030  75 03                 jne  same                  ; 0x1035
//! 0x1032  4c 89 c3              mov  rbx, r8               ; jump the hole: 4 GiB
//! same:
//! 0x1035  4c 39 cb              cmp  rbx, r9               ; end of the high RAM
//! 0x1038  72 d5                 jb   inner                 ; 0x100f
//! 0x103a  b0 42                 mov  al, 'B'
//! 0x103c  e8 02 00 00 00        call putc                  ; 0x1043
//! 0x1041  eb c7                 jmp  outer                 ; 0x100a
//! putc:                                                    ; al = the byte
//! 0x1043  88 c4                 mov  ah, al
//! 0x1045  66 ba fd 03           mov  dx, 0x3fd             ; LSR
//! 0x1049  ec                    in   al, dx
//! 0x104a  a8 20                 test al, 0x20              ; THRE
//! 0x104c  74 fb                 jz   0x1049
//! 0x104e  66 ba f8 03           mov  dx, 0x3f8             ; THR
//! 0x1052  88 e0                 mov  al, ah
//! 0x1054  ee                    out  dx, al
//! 0x1055  c3                    ret
//! ```
//!
//! (Checked with `objdump -D -b binary -mi386:x86-64 --adjust-vma=0x1000`.)
//!
//! # The pattern invariant
//!
//! Read the counters `v[0..n]` in walk order (pages 2..=255, `n` = [`PATTERN_PAGES`], or up to
//! the last page of a larger RAM; from page 64 above 3 GiB: [`first_pattern_page`]) while the
//! vCPU is stopped. Every pass adds 1 to each counter in that order, starting from all zeros,
//! so there is a `c` (the passes completed) and a `k` in `0..n` (the pages done in the pass
//! under way) with `v[i] == c + 1` for `i < k` and `v[i] == c` for `i >= k`: neighbours are
//! equal or differ by exactly 1 at a single place, higher before lower, and the first counter is
//! at most 1 above the last. [`check_pattern`] checks exactly that.
//!
//! The serial output then is `A` followed by `c` or `c - 1` `B`s: `c - 1` only when `k == 0`
//! and the vCPU stopped between the last counter of pass `c` and its `B` ([`check_output`]).

use std::fmt;

/// Guest RAM size: the walk's end relies on the 16-bit segment wrapping at 1 MiB.
pub const RAM_SIZE: usize = 1 << 20;
/// Page size of the pattern.
pub const PAGE_SIZE: usize = 4096;
/// Guest physical address the code is loaded at and entered (CS = 0, IP = this).
pub const CODE_ADDR: u64 = 0x1000;
/// Initial SP (SS = 0): the stack grows down through page 0.
pub const STACK_TOP: u64 = 0x1000;
/// First page of the pattern.
pub const FIRST_PATTERN_PAGE: usize = 2;
/// Number of pattern pages (2..=255).
pub const PATTERN_PAGES: usize = RAM_SIZE / PAGE_SIZE - FIRST_PATTERN_PAGE;
/// The UART's I/O base (COM1).
pub const COM1_BASE: u16 = 0x3f8;

/// Largest RAM of the KVM guest: up to [`LOW_RAM_MAX`] it all sits below the hole under
/// 4 GiB (the 32-bit guest); the rest is mapped from [`HIGH_RAM_BASE`] up and walked by the
/// 64-bit guest, whose page tables ([`page_tables`]) map up to 60 GiB of guest addresses.
pub const MAX_KVM_RAM: usize = 32 << 30;
/// RAM below the hole under 4 GiB: guest addresses `0..LOW_RAM_MAX` (at most). The hole
/// `0xc000_0000..0x1_0000_0000` holds the IOAPIC (`0xfec0_0000`), the local APIC
/// (`0xfee0_0000`) and the TSS pages KVM needs (`0xfffb_d000`), as on a PC (QEMU's pc machine
/// also puts 3 GiB below 4 GiB once RAM reaches 3.5 GiB).
pub const LOW_RAM_MAX: usize = 3 << 30;
/// Guest physical address where the RAM above [`LOW_RAM_MAX`] is mapped.
pub const HIGH_RAM_BASE: u64 = 1 << 32;
/// First pattern page of a guest larger than [`LOW_RAM_MAX`] (the 64-bit guest): pages
/// 2..64 are reserved for its page tables ([`page_tables`]; the software guest leaves them
/// zero), so its pattern starts at guest address `0x4_0000`.
pub const LONG_FIRST_PATTERN_PAGE: usize = 64;
/// Guest physical address of the 64-bit guest's PML4 (CR3); its PDPT follows, then its page
/// directories, one page each (see [`page_tables`]).
pub const PAGE_TABLES_ADDR: u64 = 0x2000;
/// Largest RAM of the software guest.
pub const MAX_SOFT_RAM: usize = 64 << 30;
/// Smallest RAM: the stack page, the code page and 14 pattern pages.
pub const MIN_RAM: usize = 64 << 10;
/// The I/O port the 32-bit guest reads its page budget from.
pub const BUDGET_PORT: u16 = 0x7f0;

/// The 32-bit guest program (see the module documentation for the listing); EDI = RAM size.
pub const GUEST_CODE32: [u8; 75] = [
    0xfa, // cli
    0xb0, b'A', // mov al, 'A'
    0xe8, 0x30, 0x00, 0x00, 0x00, // call putc
    0x31, 0xf6, // xor esi, esi
    // outer:
    0xbb, 0x00, 0x20, 0x00, 0x00, // mov ebx, 0x2000
    // inner:
    0x85, 0xf6, // test esi, esi
    0x75, 0x0f, // jnz have
    // ask:
    0x66, 0xba, 0xf0, 0x07, // mov dx, BUDGET_PORT
    0xed, // in eax, dx
    0x89, 0xc6, // mov esi, eax
    0x85, 0xf6, // test esi, esi
    0x75, 0x04, // jnz have
    0xf3, 0x90, // pause
    0xeb, 0xf1, // jmp ask
    // have:
    0xff, 0x03, // inc dword [ebx]
    0x4e, // dec esi
    0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, // add ebx, 0x1000
    0x39, 0xfb, // cmp ebx, edi
    0x72, 0xe0, // jb inner
    0xb0, b'B', // mov al, 'B'
    0xe8, 0x02, 0x00, 0x00, 0x00, // call putc
    0xeb, 0xd2, // jmp outer
    // putc:
    0x88, 0xc4, // mov ah, al
    0x66, 0xba, 0xfd, 0x03, // mov dx, 0x3fd
    0xec, // in al, dx
    0xa8, 0x20, // test al, 0x20
    0x74, 0xfb, // jz -5
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0x88, 0xe0, // mov al, ah
    0xee, // out dx, al
    0xc3, // ret
];

/// The first pattern page of a guest with `ram_size` bytes of RAM: [`FIRST_PATTERN_PAGE`], or
/// [`LONG_FIRST_PATTERN_PAGE`] above [`LOW_RAM_MAX`] (the 64-bit guest's page tables come
/// first). The pattern runs from there to the last page of RAM.
#[must_use]
pub fn first_pattern_page(ram_size: usize) -> usize {
    if ram_size > LOW_RAM_MAX {
        LONG_FIRST_PATTERN_PAGE
    } else {
        FIRST_PATTERN_PAGE
    }
}

/// How `ram_size` bytes of guest RAM are placed in guest physical memory: `(low, high)`, the
/// bytes at guest addresses `0..low` and at `HIGH_RAM_BASE..HIGH_RAM_BASE + high`
/// ([`LOW_RAM_MAX`] at most below the hole). The RAM is one block (`pc.ram`, one mapping):
/// byte `i` of the block is at guest address `i` below `low`, else at
/// `HIGH_RAM_BASE + (i - low)`, as QEMU maps its one `pc.ram` block through two aliases.
#[must_use]
pub fn ram_layout(ram_size: usize) -> (usize, usize) {
    let low = ram_size.min(LOW_RAM_MAX);
    (low, ram_size - low)
}

/// Page directories of the 64-bit guest's identity map for `ram_size` bytes of RAM: enough
/// 1 GiB directories to cover the highest guest address of RAM.
fn page_directories(ram_size: usize) -> usize {
    let (low, high) = ram_layout(ram_size);
    let top = if high > 0 {
        HIGH_RAM_BASE + high as u64
    } else {
        low as u64
    };
    usize::try_from(top.div_ceil(1 << 30)).unwrap_or(usize::MAX)
}

/// The 64-bit guest's page tables for `ram_size` bytes of RAM, to be written at
/// [`PAGE_TABLES_ADDR`] (pages 2 onwards, below [`LONG_FIRST_PATTERN_PAGE`]): an identity map of
/// guest addresses `0..n GiB` (`n` GiB covering the top of RAM above [`HIGH_RAM_BASE`]) with
/// 2 MiB pages, hole included (nothing there is touched).
///
/// | guest address | page | entries (little-endian `u64`) |
/// |---|---|---|
/// | `0x2000` | PML4 | `[0] = 0x3000 \| P \| RW` (`0x3003`); the other 511 zero |
/// | `0x3000` | PDPT | `[i] = (0x4000 + i * 0x1000) \| P \| RW` for `i < n` |
/// | `0x4000 + i * 0x1000` | directory `i` | `[j] = (i * 512 + j) * 2 MiB \| P \| RW \| PS` (`0x83`) |
///
/// # Panics
///
/// If more directories are needed than fit below [`LONG_FIRST_PATTERN_PAGE`] (RAM above
/// [`MAX_KVM_RAM`]; [`Workload::validate`] refuses it first).
#[must_use]
pub fn page_tables(ram_size: usize) -> Vec<u8> {
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    let dirs = page_directories(ram_size);
    let first_dir = PAGE_TABLES_ADDR + 2 * PAGE_SIZE as u64;
    assert!(
        first_dir / PAGE_SIZE as u64 + dirs as u64 <= LONG_FIRST_PATTERN_PAGE as u64,
        "{ram_size} bytes of RAM need more page directories than are reserved"
    );
    let mut t = vec![0u8; (2 + dirs) * PAGE_SIZE];
    let mut put = |page: usize, entry: usize, v: u64| {
        let at = page * PAGE_SIZE + entry * 8;
        t[at..at + 8].copy_from_slice(&v.to_le_bytes());
    };
    put(0, 0, (PAGE_TABLES_ADDR + PAGE_SIZE as u64) | P_RW);
    for i in 0..dirs {
        put(1, i, (first_dir + (i * PAGE_SIZE) as u64) | P_RW);
        for j in 0..512 {
            put(2 + i, j, (((i * 512 + j) as u64) << 21) | P_RW | PS);
        }
    }
    t
}

/// The 64-bit guest program (see the module documentation for the listing): RDI = the end of
/// RAM below the hole, R8 = [`HIGH_RAM_BASE`], R9 = the end of RAM above it.
pub const GUEST_CODE64: [u8; 86] = [
    0xfa, // cli
    0xb0, b'A', // mov al, 'A'
    0xe8, 0x3b, 0x00, 0x00, 0x00, // call putc (rel32 +0x3b from 0x1008)
    0x31, 0xf6, // xor esi, esi
    // outer:
    0xbb, 0x00, 0x00, 0x04, 0x00, // mov ebx, 0x40000 (zero-extended into rbx)
    // inner:
    0x85, 0xf6, // test esi, esi
    0x75, 0x0f, // jnz have
    // ask:
    0x66, 0xba, 0xf0, 0x07, // mov dx, BUDGET_PORT
    0xed, // in eax, dx
    0x89, 0xc6, // mov esi, eax
    0x85, 0xf6, // test esi, esi
    0x75, 0x04, // jnz have
    0xf3, 0x90, // pause
    0xeb, 0xf1, // jmp ask
    // have:
    0xff, 0x03, // inc dword [rbx]
    0xff, 0xce, // dec esi (0x4e is a REX prefix in 64-bit mode)
    0x48, 0x81, 0xc3, 0x00, 0x10, 0x00, 0x00, // add rbx, 0x1000
    0x48, 0x39, 0xfb, // cmp rbx, rdi
    0x75, 0x03, // jne same
    0x4c, 0x89, 0xc3, // mov rbx, r8 (over the hole)
    // same:
    0x4c, 0x39, 0xcb, // cmp rbx, r9
    0x72, 0xd5, // jb inner (rel8 -0x2b from 0x103a)
    0xb0, b'B', // mov al, 'B'
    0xe8, 0x02, 0x00, 0x00, 0x00, // call putc
    0xeb, 0xc7, // jmp outer (rel8 -0x39 from 0x1043)
    // putc:
    0x88, 0xc4, // mov ah, al
    0x66, 0xba, 0xfd, 0x03, // mov dx, 0x3fd
    0xec, // in al, dx
    0xa8, 0x20, // test al, 0x20
    0x74, 0xfb, // jz -5
    0x66, 0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0x88, 0xe0, // mov al, ah
    0xee, // out dx, al
    0xc3, // ret
];

/// What the guest does: its RAM size and how fast it may dirty pages. Both sides of a
/// migration get the same workload (a `tinyvm serve` child on its command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// Guest RAM in bytes (a multiple of 64 KiB, [`MIN_RAM`] ..= [`MAX_KVM_RAM`] /
    /// [`MAX_SOFT_RAM`]).
    pub ram_size: usize,
    /// Pages the guest may dirty per second; `None` = as fast as it can.
    pub dirty_rate: Option<u64>,
}

impl Default for Workload {
    /// The classic guest: 1 MiB, no rate limit (the real-mode program).
    fn default() -> Self {
        Workload {
            ram_size: RAM_SIZE,
            dirty_rate: None,
        }
    }
}

impl Workload {
    /// Number of pattern pages (pages 2 to the last).
    #[must_use]
    pub fn pattern_pages(&self) -> usize {
        self.ram_size / PAGE_SIZE - self.first_pattern_page()
    }

    /// The first pattern page ([`first_pattern_page`]).
    #[must_use]
    pub fn first_pattern_page(&self) -> usize {
        first_pattern_page(self.ram_size)
    }

    /// Whether the KVM guest is the 64-bit program [`GUEST_CODE64`]: RAM above
    /// [`LOW_RAM_MAX`], part of it mapped from [`HIGH_RAM_BASE`] up.
    #[must_use]
    pub fn long_mode(&self) -> bool {
        self.ram_size > LOW_RAM_MAX
    }

    /// Whether the KVM guest is the 16-bit real-mode program (1 MiB, no rate limit); any other
    /// workload runs [`GUEST_CODE32`].
    #[must_use]
    pub fn real_mode(&self) -> bool {
        self.ram_size == RAM_SIZE && self.dirty_rate.is_none()
    }

    /// The command-line words that give a child this workload.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        vec![
            "--mem".into(),
            self.ram_size.to_string(),
            "--dirty-rate".into(),
            self.dirty_rate
                .map_or_else(|| "max".into(), |r| r.to_string()),
        ]
    }

    /// Checks the size against the limits of `kvm` or the software guest.
    ///
    /// # Errors
    ///
    /// The size is out of range or not a multiple of 64 KiB.
    pub fn validate(&self, kvm: bool) -> Result<(), String> {
        let max = if kvm { MAX_KVM_RAM } else { MAX_SOFT_RAM };
        if self.ram_size < MIN_RAM || self.ram_size > max || self.ram_size % (64 << 10) != 0 {
            return Err(format!(
                "--mem {}: must be a multiple of 64 KiB from {} KiB to {} MiB for the {} guest",
                self.ram_size,
                MIN_RAM >> 10,
                max >> 20,
                if kvm { "KVM" } else { "software" }
            ));
        }
        Ok(())
    }
}

/// Parses a size: bytes, or a number with `K`, `M`, `G` (binary units, `iB` optional).
///
/// # Errors
///
/// Not a number, or too large.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().trim_end_matches("iB").trim_end_matches('B');
    let (num, shift) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 10),
        Some((i, 'm' | 'M')) => (&t[..i], 20),
        Some((i, 'g' | 'G')) => (&t[..i], 30),
        _ => (t, 0),
    };
    let n: usize = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size {s:?} too large"))
}

/// Parses a dirty rate: pages per second, or `max` (no limit).
///
/// # Errors
///
/// Neither `max` nor a positive number.
pub fn parse_rate(s: &str) -> Result<Option<u64>, String> {
    if s == "max" {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(format!(
            "bad dirty rate {s:?}: pages per second (> 0) or `max`"
        )),
    }
}

/// Paces the guest to a dirty rate: pages become due at `rate` per second of wall time (slowed
/// by a throttle), and [`Budget::grant`] hands out what is due. At most 5 ms worth of pages (at
/// least one) is banked, so a guest that did not ask for a while (stopped, throttled, migrated)
/// does not burst.
#[derive(Debug, Clone)]
pub struct Budget {
    rate: Option<u64>,
    due: f64,
    last: std::time::Instant,
}

impl Budget {
    /// A budget of `rate` pages per second (`None` = no limit).
    #[must_use]
    pub fn new(rate: Option<u64>) -> Self {
        Budget {
            rate,
            due: 0.0,
            last: std::time::Instant::now(),
        }
    }

    /// Pages the guest may dirty now (`u32::MAX` without a limit), running at `100 - throttle`
    /// percent of the rate. 0: none yet; [`Budget::wait`] says how long until one is due.
    pub fn grant(&mut self, throttle: u8) -> u32 {
        let Some(rate) = self.rate else {
            return u32::MAX;
        };
        let now = std::time::Instant::now();
        let rate = rate as f64 * f64::from(100 - throttle.min(99)) / 100.0;
        let cap = (rate / 200.0).max(1.0);
        self.due = (self.due + now.duration_since(self.last).as_secs_f64() * rate).min(cap);
        self.last = now;
        let n = self.due.floor();
        self.due -= n;
        // `n` is at most `cap`, far below u32::MAX for any rate a u64 can say per 5 ms.
        n.min(f64::from(u32::MAX)) as u32
    }

    /// How long until the next page is due (capped at `max`).
    #[must_use]
    pub fn wait(&self, max: std::time::Duration) -> std::time::Duration {
        match self.rate {
            None => std::time::Duration::ZERO,
            Some(r) => {
                let secs = (1.0 - self.due).max(0.0) / r.max(1) as f64;
                std::time::Duration::from_secs_f64(secs).min(max)
            }
        }
    }
}

/// The guest program; see the module documentation for the listing.
pub const GUEST_CODE: [u8; 45] = [
    0xfa, // cli
    0xb4, b'A', // mov ah, 'A'
    0xe8, 0x18, 0x00, // call putc (rel16 +0x18 from 0x1006)
    // outer:
    0xbb, 0x00, 0x02, // mov bx, 0x0200
    // inner:
    0x8e, 0xc3, // mov es, bx
    0x26, 0x66, 0xff, 0x06, 0x00, 0x00, // inc dword [es:0x0000]
    0x81, 0xc3, 0x00, 0x01, // add bx, 0x0100
    0x75, 0xf2, // jnz inner (rel8 -14 from 0x1017)
    0xb4, b'B', // mov ah, 'B'
    0xe8, 0x02, 0x00, // call putc (rel16 +2 from 0x101c)
    0xeb, 0xe8, // jmp outer (rel8 -24 from 0x101e)
    // putc:
    0xba, 0xfd, 0x03, // mov dx, 0x3fd
    0xec, // in al, dx
    0xa8, 0x20, // test al, 0x20
    0x74, 0xfb, // jz -5 (back to `in`)
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0x88, 0xe0, // mov al, ah
    0xee, // out dx, al
    0xc3, // ret
];

/// Where the walk stands, derived from a consistent pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatternState {
    /// Passes completed (`c`): the last page's counter.
    pub passes: u32,
    /// Pages of the pass under way already incremented (`k`, 0..[`PATTERN_PAGES`]).
    pub pages_done: usize,
}

impl PatternState {
    /// Whether the walk has advanced past `prev`: more passes, or more pages of the same pass.
    #[must_use]
    pub fn is_after(self, prev: PatternState) -> bool {
        (self.passes, self.pages_done) > (prev.passes, prev.pages_done)
    }
}

/// A pattern that breaks the invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// Index in walk order (0 = the first pattern page) of the first counter that breaks it.
    pub index: usize,
    /// What was wrong.
    pub detail: String,
    /// The page of walk index 0: [`FIRST_PATTERN_PAGE`] from [`check_pattern`],
    /// [`PatternError::in_ram`] sets the one of a RAM size.
    pub first_page: usize,
}

impl PatternError {
    /// The error with the first pattern page of `ram_size` bytes of RAM
    /// ([`first_pattern_page`]), so that it names the right page.
    #[must_use]
    pub fn in_ram(mut self, ram_size: usize) -> Self {
        self.first_page = first_pattern_page(ram_size);
        self
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pattern broken at page {} (walk index {}): {}",
            self.index + self.first_page,
            self.index,
            self.detail
        )
    }
}

impl std::error::Error for PatternError {}

/// Reads the counters of the pattern pages, in walk order, from a copy of guest RAM (pages 2
/// to the last whole page of `ram`).
#[must_use]
pub fn counters(ram: &[u8]) -> Vec<u32> {
    (first_pattern_page(ram.len())..ram.len() / PAGE_SIZE)
        .map(|p| {
            let at = p * PAGE_SIZE;
            u32::from_le_bytes([ram[at], ram[at + 1], ram[at + 2], ram[at + 3]])
        })
        .collect()
}

/// Checks the invariant of the module documentation on counters in walk order.
///
/// # Errors
///
/// The first counter that is neither equal to the last page's counter `c` nor `c + 1` at the
/// right place.
pub fn check_pattern(v: &[u32]) -> Result<PatternState, PatternError> {
    let Some(&c) = v.last() else {
        return Err(PatternError {
            index: 0,
            detail: "no pattern pages".to_owned(),
            first_page: FIRST_PATTERN_PAGE,
        });
    };
    // k = the number of leading counters at c + 1; every later one must be c.
    let k = v
        .iter()
        .take_while(|&&x| Some(x) == c.checked_add(1))
        .count();
    if let Some((i, &x)) = v.iter().enumerate().skip(k).find(|&(_, &x)| x != c) {
        let prev = if i == 0 { None } else { Some(v[i - 1]) };
        return Err(PatternError {
            index: i,
            detail: format!(
                "counter {x:#x} after {prev:x?}; expected {c:#x} (the last page's) or {:#x} \
                 before the pass boundary",
                u64::from(c) + 1
            ),
            first_page: FIRST_PATTERN_PAGE,
        });
    }
    Ok(PatternState {
        passes: c,
        pages_done: k,
    })
}

/// Checks the serial output against the pattern: `A`, then `passes` `B`s (one fewer when the
/// vCPU stopped between a pass's last page and its `B`). `earlier_bs` counts `B`s printed
/// before this output began (by the source of a migration).
///
/// # Errors
///
/// A description of the mismatch.
pub fn check_output(
    output: &[u8],
    with_a: bool,
    earlier_bs: u64,
    state: PatternState,
) -> Result<u64, String> {
    let rest = if with_a {
        match output.split_first() {
            Some((b'A', rest)) => rest,
            _ => {
                return Err(format!(
                    "output does not start with 'A': {:?}",
                    String::from_utf8_lossy(&output[..output.len().min(16)])
                ))
            }
        }
    } else {
        output
    };
    if let Some(i) = rest.iter().position(|&b| b != b'B') {
        return Err(format!("unexpected byte {:#04x} at {i} after 'A'", rest[i]));
    }
    let bs = earlier_bs + rest.len() as u64;
    let passes = u64::from(state.passes);
    let ok = bs == passes || (state.pages_done == 0 && bs + 1 == passes);
    if ok {
        Ok(bs)
    } else {
        Err(format!(
            "{bs} 'B's printed but the pattern shows {passes} passes ({} pages into the next)",
            state.pages_done
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_invariant() {
        let n = PATTERN_PAGES;
        assert_eq!(
            check_pattern(&vec![7; n]),
            Ok(PatternState {
                passes: 7,
                pages_done: 0
            })
        );
        let mut v = vec![7; n];
        v[..10].fill(8);
        assert_eq!(check_pattern(&v).unwrap().pages_done, 10);
        v[20] = 8;
        assert_eq!(check_pattern(&v).unwrap_err().index, 20);
        let mut v = vec![7; n];
        v[0] = 9;
        assert_eq!(check_pattern(&v).unwrap_err().index, 0);
        let mut v = vec![7; n];
        v[n - 1] = 8; // last above first: not a state the walk reaches
        assert_eq!(check_pattern(&v).unwrap_err().index, 0);
        // The page named is the RAM's: from page 64 above 3 GiB.
        let e = check_pattern(&[1, 0, 1]).unwrap_err();
        assert!(
            e.to_string().starts_with("pattern broken at page 3 "),
            "{e}"
        );
        let e = e.in_ram(5 << 30);
        assert!(
            e.to_string().starts_with("pattern broken at page 65 "),
            "{e}"
        );
    }

    #[test]
    fn sizes_and_rates_parse() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert!(parse_size("x").is_err());
        assert_eq!(parse_rate("max"), Ok(None));
        assert_eq!(parse_rate("5000"), Ok(Some(5000)));
        assert!(parse_rate("0").is_err());
        let w = Workload::default();
        assert!(w.real_mode());
        assert_eq!(w.pattern_pages(), PATTERN_PAGES);
        assert!(Workload {
            ram_size: 33 << 30,
            dirty_rate: None
        }
        .validate(true)
        .is_err());
        let big = Workload {
            ram_size: 5 << 30,
            dirty_rate: None,
        };
        assert!(big.validate(true).is_ok() && big.long_mode());
        assert_eq!(ram_layout(5 << 30), (3 << 30, 2 << 30));
        assert_eq!(ram_layout(1 << 30), (1 << 30, 0));
        assert_eq!(big.first_pattern_page(), LONG_FIRST_PATTERN_PAGE);
        assert_eq!(big.pattern_pages(), (5 << 18) - LONG_FIRST_PATTERN_PAGE);
    }

    #[test]
    fn page_tables_identity_map_both_regions() {
        let entry = |t: &[u8], page: usize, i: usize| {
            let at = page * PAGE_SIZE + i * 8;
            u64::from_le_bytes(t[at..at + 8].try_into().unwrap())
        };
        // 5 GiB: 3 GiB low, 2 GiB from 4 GiB, top at 6 GiB: 6 directories.
        let t = page_tables(5 << 30);
        assert_eq!(t.len(), 8 * PAGE_SIZE);
        assert_eq!(entry(&t, 0, 0), 0x3003);
        assert_eq!(entry(&t, 0, 1), 0);
        assert_eq!(entry(&t, 1, 5), 0x9003);
        assert_eq!(entry(&t, 1, 6), 0);
        // Walk a few addresses through the tables: identity, 2 MiB pages.
        for addr in [0x4_0000u64, (3 << 30) - 4096, 1 << 32, (6 << 30) - 4096] {
            let pdpt = entry(&t, 0, 0) & !0xfff;
            let pd = entry(
                &t,
                ((pdpt - PAGE_TABLES_ADDR) / 4096) as usize,
                (addr >> 30) as usize,
            );
            let pde = entry(
                &t,
                (((pd & !0xfff) - PAGE_TABLES_ADDR) / 4096) as usize,
                ((addr >> 21) & 511) as usize,
            );
            assert_eq!(pde & 0x83, 0x83, "{addr:#x}: present, writable, 2 MiB");
            assert_eq!((pde & !0x1f_ffff) | (addr & 0x1f_ffff), addr);
        }
        // The largest KVM guest's tables fit below the first pattern page.
        let t = page_tables(MAX_KVM_RAM);
        assert!(PAGE_TABLES_ADDR as usize + t.len() <= LONG_FIRST_PATTERN_PAGE * PAGE_SIZE);
        assert_eq!(
            GUEST_CODE64[0x0b..0x0f],
            ((LONG_FIRST_PATTERN_PAGE * PAGE_SIZE) as u32).to_le_bytes()
        );
    }

    #[test]
    fn budget_paces_and_does_not_burst() {
        assert_eq!(Budget::new(None).grant(0), u32::MAX);
        let mut b = Budget::new(Some(1000));
        std::thread::sleep(std::time::Duration::from_millis(50));
        // 50 pages are due, but at most 5 ms worth (5 pages) is banked.
        assert_eq!(b.grant(0), 5);
        assert!(b.grant(0) <= 5);
    }

    #[test]
    fn output_check() {
        let s = PatternState {
            passes: 3,
            pages_done: 0,
        };
        assert_eq!(check_output(b"ABBB", true, 0, s), Ok(3));
        assert_eq!(check_output(b"ABB", true, 0, s), Ok(2));
        assert!(check_output(b"AB", true, 0, s).is_err());
        assert_eq!(check_output(b"B", false, 2, s), Ok(3));
        assert!(check_output(b"BAB", true, 0, s).is_err());
    }
}
