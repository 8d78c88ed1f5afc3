use vmstate_runtime::VmState;

// A misspelt gate word is named as such (not "expected parentheses"), with the closest gate.
#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(when = machin >= "6.0", default)]
    a: u8,
}

fn main() {}
