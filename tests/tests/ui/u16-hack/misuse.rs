use vmstate_runtime::VmState;

// `u16_hack` is QEMU's VMSTATE_UINT16_HACK: a `u32` sent as be16, its own codec.
#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    #[vmstate(u16_hack)]
    a: u16,
    #[vmstate(u16_hack, equal)]
    b: u32,
    #[vmstate(u16_hack, range = 0..10)]
    c: u32,
    #[vmstate(u16_hack)]
    d: [u32; 2],
    #[vmstate(skip, u16_hack)]
    e: u32,
}

fn main() {}
