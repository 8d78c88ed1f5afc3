use vmstate_runtime::VmState;

#[derive(VmState, Default)]
#[vmstate(name = "p", nested)]
struct P {
    x: u8,
}

#[derive(VmState, Default)]
#[vmstate(name = "dev")]
struct Dev {
    // A lone Option: NULL pointers exist only as elements of an array of pointers.
    lone: Option<u32>,
    // Neither a pointer to a pointer...
    double: [Option<Option<u32>>; 2],
    // ...nor a pointer to an array.
    arrays: [Option<[u8; 2]>; 2],
    // A boxed element still needs a codec.
    floats: [Option<Box<f32>>; 2],
    // Fine: pointers to primitives and to nested structs, boxed or not.
    ints: [Option<u32>; 2],
    structs: [Option<Box<P>>; 2],
}

fn main() {}
