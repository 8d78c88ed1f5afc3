use vmstate_runtime::VmState;

// A local count is an integer field.
#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(skip)]
    name: String,
    #[vmstate(local_count = name, max = 4)]
    a: Vec<u8>,
}

fn main() {}
