use vmstate_runtime::VmState;

#[derive(VmState, Default)]
#[vmstate(name = "dev", version = 2,
          subsection(name = "dev/sub", version = 1, when = pred(Self::versioned)))]
struct Dev {
    // A field predicate is `fn(&self) -> bool` or `fn(&self, version: u32) -> bool`.
    #[vmstate(when = pred(Self::wide_version), default)]
    a: u8,
    // A subsection is gated without a version (QEMU's `needed` has none).
    #[vmstate(subsection = "dev/sub", default)]
    b: u8,
}

impl Dev {
    fn wide_version(&self, version: u64) -> bool {
        version > 1
    }
    fn versioned(&self, version: u32) -> bool {
        version > 1
    }
}

fn main() {}
