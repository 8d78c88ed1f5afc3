use vmstate_runtime::VmState;

// A struct that derives VmState but is not `nested`, used as a field: one error, at the
// field's type, naming the fix.
#[derive(VmState, Default)]
#[vmstate(name = "inner")]
struct Inner {
    a: u8,
}

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    inner: Inner,
}

fn main() {}
