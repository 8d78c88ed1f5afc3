use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(sinse = 2)]
    a: u8,
}

fn main() {}
