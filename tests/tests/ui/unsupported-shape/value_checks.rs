use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(buffer)]
    a: u32,
    #[vmstate(equal)]
    b: [u8; 4],
    #[vmstate(range = 0..=3)]
    c: [u16; 2],
}

fn main() {}
