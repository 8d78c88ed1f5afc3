use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", version = 3, minimum_version = 1, prop(name = "x-b", default = true))]
struct Dev {
    a: u8,
    #[vmstate(since = 3)]
    b: u8,
    #[vmstate(when = prop("x-b"))]
    c: u8,
    #[vmstate(default = 4)]
    d: u8,
}

fn main() {}
