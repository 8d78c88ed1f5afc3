use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", prop(name = "x-a", default = true), prop(name = "x-a", default = false), prop(name = "x-b"))]
struct Dev {
    a: u8,
}

fn main() {}
