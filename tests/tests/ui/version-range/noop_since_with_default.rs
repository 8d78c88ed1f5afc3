use vmstate_runtime::VmState;

// `since = 1` at or below the minimum version is always met: the field is always present, so a
// `default` would never be used.
#[derive(VmState, Default)]
#[vmstate(name = "dev", version = 2, minimum_version = 1)]
struct Dev {
    #[vmstate(since = 1, default)]
    a: u8,
}

fn main() {}
