use vmstate_runtime::VmState;

// The local count must be the destination's own value: a field that is not sent, or one sent
// after the array that must equal the local value.
#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    n: u32,
    #[vmstate(local_count = missing, max = 4)]
    a: Vec<u8>,
    #[vmstate(local_count = n, max = 4)]
    b: Vec<u8>,
    #[vmstate(local_count = later, max = 4)]
    c: Vec<u8>,
    later: u32,
    #[vmstate(skip)]
    cap: u32,
    #[vmstate(local_count = cap)]
    d: Vec<u8>,
    #[vmstate(count = n, local_count = cap, max = 4)]
    e: Vec<u8>,
    #[vmstate(local_count = cap, list, max = 4)]
    f: Vec<u8>,
}

#[derive(VmState, Default)]
#[vmstate(name = "dev2")]
struct Dev2 {
    #[vmstate(equal)]
    ports: i32,
    #[vmstate(local_count = ports, max = 4)]
    a: Vec<u8>,
}

fn main() {}
