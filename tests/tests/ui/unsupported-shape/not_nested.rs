use vmstate_runtime::VmState;

#[derive(Default)]
struct Plain {
    a: u8,
}

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    p: Plain,
}

fn main() {}
