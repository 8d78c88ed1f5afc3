use vmstate_runtime::VmState;

// A nested struct is always loaded at its own version (2): `since = 2` is QEMU's `_V(b, 2)`,
// which never matters, and is allowed; `since = 3` would never be sent.
#[derive(VmState, Default)]
#[vmstate(name = "inner", version = 2, nested)]
struct Inner {
    a: u8,
    #[vmstate(since = 2)]
    b: u8,
    #[vmstate(since = 3, default)]
    c: u8,
}

fn main() {}
