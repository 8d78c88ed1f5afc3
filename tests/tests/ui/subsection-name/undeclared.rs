use vmstate_runtime::VmState;

// A field naming an undeclared subsection gets one error, with the closest declared name and
// the fix. Its presence is unknown, so there is no "`default` is never used" for it, and no
// "`dev/fifo` has no fields" for the subsection it probably meant.
#[derive(VmState)]
#[vmstate(name = "dev", subsection(name = "dev/fifo"))]
struct Dev {
    a: u8,
    #[vmstate(subsection = "dev/fifoo", default)]
    fifo: u8,
}

fn main() {}
