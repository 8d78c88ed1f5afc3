use vmstate_runtime::VmState;

#[derive(VmState, Clone, Default)]
#[vmstate(name = "inner", version = 2, nested)]
struct Inner {
    a: u8,
    // `since` above the version of a nested struct that accepts only its own version would
    // never be sent.
    #[vmstate(since = 3, default)]
    b: u8,
}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "outer", version = 1)]
struct Outer {
    #[vmstate(vstruct = 1, buffer)]
    buffer: Inner,
}

fn main() {}
