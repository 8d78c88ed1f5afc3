use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev",
    subsection(name = "other/x"),
    subsection(name = "dev/y"),
    subsection(name = "dev/y"))]
struct Dev {
    a: u8,
    #[vmstate(subsection = "other/x", default)]
    b: u8,
    #[vmstate(subsection = "dev/y", default)]
    c: u8,
    #[vmstate(subsection = "dev/z", default)]
    d: u8,
}

fn main() {}
