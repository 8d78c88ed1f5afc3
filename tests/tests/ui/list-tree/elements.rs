use std::collections::BTreeMap;
use vmstate_runtime::VmState;

#[derive(VmState, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
#[vmstate(name = "e", nested)]
struct E {
    x: u8,
}

#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct NotState {
    x: u8,
}

#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    // List elements are nested structs (QEMU's elements are vmsds).
    #[vmstate(list, max = 4)]
    ints: Vec<u32>,
    // A signed direct key has no QEMU form.
    #[vmstate(tree, max = 4)]
    signed_keys: BTreeMap<i32, E>,
    // Values are nested structs.
    #[vmstate(tree, max = 4)]
    plain_values: BTreeMap<u64, NotState>,
}

fn main() {}
