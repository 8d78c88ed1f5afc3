use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = 2)]
struct Dev {
    #[vmstate(skip, since = 2)]
    a: u8,
    #[vmstate(equal, buffer)]
    b: [u8; 4],
}

fn main() {}
