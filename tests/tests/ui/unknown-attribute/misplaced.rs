use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", since = 2)]
struct Dev {
    #[vmstate(version = 3)]
    a: u8,
}

fn main() {}
