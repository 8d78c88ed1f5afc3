use vmstate_runtime::{Reader, VmState, Writer};

/// A codec module with `save` and `load` but no `DESCRIPTION`: the vmdesc, the decoder and the
/// compat checker would not know what the field is.
mod raw_u32 {
    use super::*;
    pub fn save<W: Writer + ?Sized>(v: &u32, w: &mut W) -> vmstate_runtime::Result<()> {
        w.write_be32(*v)
    }
    pub fn load<R: Reader + ?Sized>(v: &mut u32, r: &mut R) -> vmstate_runtime::Result<()> {
        *v = r.read_be32()?;
        Ok(())
    }
}

#[derive(VmState, Clone, Default)]
#[vmstate(name = "dev", version = 1)]
struct Dev {
    #[vmstate(with = raw_u32)]
    v: u32,
}

fn main() {}
