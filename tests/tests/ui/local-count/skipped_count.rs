use vmstate_runtime::VmState;

// `count` reads the count from the stream; a skipped field is not there (the fix names
// `local_count`).
#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(skip)]
    cap: u32,
    #[vmstate(buffer, count = cap, max = 16)]
    data: Vec<u8>,
}

fn main() {}
