use vmstate_runtime::VmState;

// A misspelt key inside `subsection(...)` gets one error: no "`subsection` needs `name`" for
// the declaration and no "unknown subsection `dev/x`" for the field that names it.
#[derive(VmState)]
#[vmstate(name = "dev", subsection(nmae = "dev/x"))]
struct Dev {
    a: u8,
    #[vmstate(subsection = "dev/x", default)]
    b: u8,
}

fn main() {}
