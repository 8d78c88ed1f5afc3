use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", subsection(name = "dev/x"))]
struct Dev {
    #[vmstate(skip)]
    hidden: u32,
    #[vmstate(count = hidden, max = 4)]
    a: Vec<u8>,
    #[vmstate(subsection = "dev/x", default)]
    n: u8,
    #[vmstate(max = 4)]
    b: [u8; 4],
    #[vmstate(count = n, max = 4)]
    c: Vec<u16>,
}

fn main() {}
