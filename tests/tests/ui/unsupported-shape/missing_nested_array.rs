use vmstate_runtime::VmState;

// An array of a struct that is not `nested`: one error, at the field's type.
#[derive(VmState, Default, Clone, Copy)]
#[vmstate(name = "inner")]
struct Inner {
    a: u8,
}

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    inner: [Inner; 2],
}

fn main() {}
