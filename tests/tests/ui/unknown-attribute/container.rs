use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", verison = 2)]
struct Dev {
    a: u8,
}

fn main() {}
