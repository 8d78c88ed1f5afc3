use vmstate_runtime::VmState;

#[derive(VmState)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(when = prop("x-undeclared"), default)]
    a: u8,
    #[vmstate(when = machine >= "seven", default)]
    b: u8,
    #[vmstate(when = sometimes(1), default)]
    c: u8,
}

fn main() {}
