use vmstate_runtime::VmState;

// A misspelt key gets one error, with the closest key valid in that position. The slot it would
// have filled stays empty without a follow-on error: no "`default` is never used".
#[derive(VmState)]
#[vmstate(name = "dev", version = 2)]
struct Dev {
    #[vmstate(sinse = 2, default)]
    a: u8,
}

fn main() {}
