use std::collections::VecDeque;
use vmstate_runtime::VmState;

#[derive(VmState, Clone, Default)]
#[vmstate(name = "elem", nested)]
struct Elem {
    x: u8,
}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev", version = 1)]
struct Dev {
    #[vmstate(le)] // QEMU has only int32_le
    unsigned: u32,
    #[vmstate(le)]
    array: [i32; 2],
    #[vmstate(le, equal)]
    both: i32,
    #[vmstate(vmdesc_type = "")]
    empty: u8,
    #[vmstate(vmdesc_type = "int32 le", le)]
    named_check: i32,
    #[vmstate(list, max = 4, vmdesc_type = "my list")]
    list: VecDeque<Elem>,
    #[vmstate(skip, le)]
    skipped: i32,
}

fn main() {}
