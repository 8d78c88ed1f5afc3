use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev", subsection(name = "dev/x", version = 1, minimum_version = 2))]
struct Dev {
    #[vmstate(since = 0)]
    a: u8,
    #[vmstate(subsection = "dev/x", since = 2, default)]
    b: u8,
}

fn main() {}
