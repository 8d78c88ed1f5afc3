use vmstate_runtime::VmState;

// Section-level settings on a nested struct have no section to apply to.
#[derive(VmState, Default)]
#[vmstate(name = "inner", nested, priority = 3, when = machine >= "7.0", pin(below = "5.0", version = 1))]
struct Inner {
    a: u8,
}

fn main() {}
