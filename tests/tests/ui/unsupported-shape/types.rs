use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    a: f32,
    b: usize,
    c: String,
    d: Option<u8>,
    e: (u8, u8),
    f: [f32; 4],
}

fn main() {}
