use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = 2)]
struct Dev {
    a: u8,
    #[vmstate(since = 3, default)]
    b: u8,
}

fn main() {}
