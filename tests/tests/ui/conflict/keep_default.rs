use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = 2)]
struct Dev {
    #[vmstate(since = 2, keep, default = 3)]
    a: u8,
}

fn main() {}
