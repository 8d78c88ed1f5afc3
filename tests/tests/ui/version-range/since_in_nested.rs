use vmstate_runtime::VmState;

#[derive(VmState, Default)]
#[vmstate(name = "inner", version = 2, nested)]
struct Inner {
    a: u8,
    #[vmstate(since = 2, default)]
    b: u8,
}

fn main() {}
