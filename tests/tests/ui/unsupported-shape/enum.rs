use vmstate_runtime::VmState;

#[derive(VmState)]
enum Dev {
    A,
}

#[derive(VmState)]
struct Tuple(u8);

fn main() {}
