use vmstate_runtime::VmState;

#[derive(VmState, Clone, Default)]
#[vmstate(name = "inner", version = 2, nested)]
struct Inner {
    a: u8,
    // `since` in a nested struct that accepts only its own version never takes effect.
    #[vmstate(since = 2, default)]
    b: u8,
}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "outer", version = 1)]
struct Outer {
    #[vmstate(vstruct = 1, buffer)]
    buffer: Inner,
}

fn main() {}
