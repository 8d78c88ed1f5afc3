use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = 2)]
#[vmstate(version = 3)]
struct Dev {
    #[vmstate(skip, skip)]
    a: u8,
}

fn main() {}
