use vmstate_runtime::VmState;

mod codec {}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev", version = 1)]
struct Dev {
    // The codec module writes, checks and describes the field: nothing else applies.
    #[vmstate(with = codec, equal, vmdesc_type = "x")]
    a: u32,
    #[vmstate(with = codec, buffer)]
    b: [u8; 4],
    #[vmstate(with = 3)]
    c: u32,
    #[vmstate(skip, with = codec)]
    d: u32,
}

fn main() {}
