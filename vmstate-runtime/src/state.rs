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
