use vmstate_runtime::VmState;

// Several mistakes in one derive are all reported, each at its own tokens.
#[derive(VmState)]
#[vmstate(name = "dev", version = 2, minimum_version = 3, subsection(name = "dev/x"))]
struct Dev {
    #[vmstate(since = 4)]
    a: u8,
    b: f32,
    #[vmstate(frobnicate)]
    c: u8,
}

fn main() {}
