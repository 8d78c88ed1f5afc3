//! The [`VmState`] trait, implemented by `#[derive(VmState)]`.

use crate::context::{GateCtx, LoadCx, SaveCx};
use crate::error::Result;
use crate::reader::Reader;
use crate::schema::StructSchema;
use crate::writer::Writer;

/// A struct whose state goes into a migration stream as a QEMU vmsd.
///
/// Implemented by `#[derive(VmState)]`; hand-written implementations must keep
/// [`SCHEMA`](Self::SCHEMA) exactly in step with what `save_state`/`load_state` do.
pub trait VmState {
    /// The static description of the wire layout.
    const SCHEMA: &'static StructSchema;

    /// Writes the fields and subsections at `version` (the section version, or the struct's own
    /// version for nested structs). Runs `pre_save` first and `post_save` last.
    ///
    /// Saving works on a snapshot copy in the registry, so hooks may change `self` freely
    /// without touching the live device.
    ///
    /// # Errors
    /// Writer errors and failing `pre_save` hooks.
    fn save_state<W: Writer + ?Sized>(
        &mut self,
        w: &mut W,
        version: u32,
        cx: &mut SaveCx<'_>,
    ) -> Result<()>;

    /// Reads the fields and subsections of a stream at `version` into `self`: version checks,
    /// `pre_load`, fields (defaults for absent ones), the subsection loop, `post_load(version)`,
    /// validations.
    ///
    /// # Errors
    /// Any decode or validation error, with offset and field path.
    fn load_state<R: Reader + ?Sized>(
        &mut self,
        r: &mut R,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<()>;

    /// Whether the whole section is sent (QEMU's top-level `needed()`).
    fn section_needed(&self, gates: &GateCtx<'_>) -> bool {
        let _ = gates;
        true
    }
}

/// Saves one struct as a section payload for `machine`, at the version the machine type uses
/// (pins applied), returning the bytes and the vmdesc description of what was written.
///
/// This is the payload only (no section header or footer); whole streams go through the
/// registry. The struct is saved from a copy, so hooks cannot change `state`.
///
/// # Errors
/// Failing `pre_save` hooks and save-side count checks.
pub fn save_payload<T: VmState + Clone>(
    state: &T,
    machine: &crate::machine::MachineType,
) -> Result<(u32, Vec<u8>, crate::vmdesc::DescStruct)> {
    let version = T::SCHEMA.version_for(machine.version());
    let mut copy = state.clone();
    let mut out = Vec::new();
    let mut cx = SaveCx::new(GateCtx::new(machine, &T::SCHEMA.name), true);
    if let Some(d) = cx.desc() {
        d.struct_begin(&T::SCHEMA.name, version, 0);
    }
    copy.save_state(&mut out, version, &mut cx)?;
    if let Some(d) = cx.desc() {
        d.struct_end(out.len() as u64);
    }
    let desc = cx.take_desc().unwrap_or_default();
    Ok((version, out, desc))
}

/// Loads a section payload of stream version `version` into a copy of `state`, and replaces
/// `state` only if the whole payload loaded, validated and was consumed exactly.
///
/// # Errors
/// Any decode or validation error; [`ErrorKind::TrailingBytes`](crate::ErrorKind::TrailingBytes)
/// if bytes remain.
pub fn load_payload<T: VmState + Clone>(
    state: &mut T,
    payload: &[u8],
    version: u32,
    machine: &crate::machine::MachineType,
) -> Result<()> {
    let mut staged = state.clone();
    let mut r = crate::reader::SliceReader::new(payload);
    let mut cx = LoadCx::new(GateCtx::new(machine, &T::SCHEMA.name));
    staged.load_state(&mut r, version, &mut cx)?;
    let rest = r.remaining().len();
    if rest != 0 {
        return Err(crate::error::Error::new(
            crate::error::ErrorKind::TrailingBytes { count: rest as u64 },
            r.position(),
        ));
    }
    *state = staged;
    Ok(())
}
