use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = "three")]
struct Dev {
    #[vmstate(since)]
    a: u8,
    #[vmstate(range = 5)]
    b: u8,
}

fn main() {}
