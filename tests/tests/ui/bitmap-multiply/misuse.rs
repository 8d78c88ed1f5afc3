use vmstate_runtime::VmState;

#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev", version = 1)]
struct Dev {
    nbits: i32,
    // No maximum: the loader could not bound the words it reads.
    #[vmstate(bitmap = nbits)]
    no_max: Vec<u64>,
    // The bit count must come first on the wire.
    #[vmstate(bitmap = later, max = 64)]
    early: Vec<u64>,
    later: i32,
    // A bitmap is its own kind.
    #[vmstate(bitmap = nbits, count = nbits, max = 64)]
    both: Vec<u64>,
    // A multiplier scales a count.
    #[vmstate(buffer, multiply = 4)]
    no_count: [u8; 4],
    #[vmstate(buffer, count = nbits, multiply = 0, max = 4)]
    zero: Vec<u8>,
}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev2", version = 1)]
struct Dev2 {
    nbits: i32,
    // Bitmap words are u64 (QEMU's be64 words).
    #[vmstate(bitmap = nbits, max = 64)]
    words: Vec<u32>,
}

fn main() {}
