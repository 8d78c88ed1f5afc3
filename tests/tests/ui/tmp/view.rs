use vmstate_runtime::{Tmp, VmState};

#[derive(VmState, Clone, Default)]
#[vmstate(name = "view", version = 0, nested)]
struct View {
    x: u8,
}

// `View` has no `impl TmpView<Dev>`: nothing computes it on save or folds it back on load.
#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev", version = 1)]
struct Dev {
    tmp: Tmp<View>,
}

fn main() {}
