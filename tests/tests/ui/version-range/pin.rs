use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = 3, minimum_version = 2,
    pin(below = "5.0", version = 3),
    pin(below = "4.0", version = 1))]
struct Dev {
    a: u8,
}

fn main() {}
