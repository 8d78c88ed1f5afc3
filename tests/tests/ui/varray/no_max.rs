use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    n: u32,
    #[vmstate(count = n)]
    a: [u16; 8],
    #[vmstate(count = m, max = 8)]
    b: Vec<u16>,
    m: u32,
    #[vmstate(count = nope, max = 8)]
    c: Vec<u16>,
}

fn main() {}
