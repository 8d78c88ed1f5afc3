use vmstate_runtime::VmState;

// A misspelt key that is only valid in the other position: the suggestion says where it
// belongs.
#[derive(VmState)]
#[vmstate(name = "dev", version = 2, sinse = 2)]
struct Dev {
    #[vmstate(verison = 3)]
    a: u8,
}

fn main() {}
