//! Load: the [`StreamLoader`] reads the stream; [`RegistryLoader`] is the handler of the device
//! sections, staging each one into a copy of its device, committed only when the whole stream
//! was accepted.

use super::{LoadReport, Registry, SectionInfo, SectionKey, Staged};
use crate::context::{GateCtx, LoadCx};
use crate::error::{Error, ErrorKind, Result};
use crate::machine::MachineType;
use crate::ram::{RamSection, RAM_IDSTR};
use crate::reader::{ErasedReader, IoReader, Reader, SliceReader};
use crate::stream::{
    LoadOptions, SectionHandler, SectionKind, SectionMeta, StreamEnd, StreamLoader,
};

impl Registry {
    /// Loads a whole stream for `machine`, all or nothing (see the module docs).
    ///
    /// # Errors
    /// Every framing, section and device error, with the stream offset and, inside a section,
    /// the section (idstr, instance id, version): [`ErrorKind::BadMagic`],
    /// [`ErrorKind::UnsupportedFileVersion`], [`ErrorKind::MissingConfiguration`],
    /// [`ErrorKind::MachineTypeMismatch`], [`ErrorKind::UnknownSection`],
    /// [`ErrorKind::DuplicateSection`], [`ErrorKind::VersionTooNew`]/[`ErrorKind::VersionTooOld`],
    /// [`ErrorKind::MissingFooter`]/[`ErrorKind::FooterMismatch`],
    /// [`ErrorKind::UnsupportedCommand`], RAM errors, [`ErrorKind::TrailingBytes`],
    /// end of input, and the devices' own decode and validation errors.
    pub fn load(&self, machine: &MachineType, stream: &[u8]) -> Result<LoadReport> {
        self.load_from(machine, &mut SliceReader::new(stream))
    }

    /// Loads a whole stream from any [`std::io::Read`], all or nothing. Sections are read one at
    /// a time; memory use is bounded by the device states (each loaded into a clone), not by the
    /// stream.
    ///
    /// # Errors
    /// As [`load`](Self::load), plus I/O errors.
    pub fn load_io<T: std::io::Read>(&self, machine: &MachineType, src: T) -> Result<LoadReport> {
        self.load_from(machine, &mut IoReader::new(src))
    }

    /// Loads a whole stream from any [`Reader`], all or nothing. RAM chunks are stepped over
    /// and validated ([`RamSection`]); nothing may follow the stream.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_from<R: Reader>(&self, machine: &MachineType, r: &mut R) -> Result<LoadReport> {
        let mut ram = RamSection::new(self.page_size);
        let mut report = self.load_with(
            machine,
            r,
            StreamEnd::Exhausted,
            &mut [(RAM_IDSTR, &mut ram)],
        )?;
        report.ram_blocks = ram.blocks().to_vec();
        report.ram = ram.counts();
        Ok(report)
    }

    /// Loads a whole stream from `r` through the one [`StreamLoader`], all or nothing, with the
    /// sections named in `routes` handed to their own handlers (e.g. a RAM handler that writes
    /// guest memory) and every other section to the devices. `end` says what may follow the
    /// stream: [`StreamEnd::Stop`] leaves `r` right after the vmdesc, for a live migration's
    /// switchover messages. The devices are committed only when the whole stream was read;
    /// the caller decides what its own handlers' results mean (they are not rolled back).
    ///
    /// # Errors
    /// As [`load`](Self::load), plus the errors of the route handlers.
    pub fn load_with<R: Reader>(
        &self,
        machine: &MachineType,
        r: &mut R,
        end: StreamEnd,
        routes: &mut [(&str, &mut dyn SectionHandler)],
    ) -> Result<LoadReport> {
        let mut devices = self.loader(machine);
        let options = LoadOptions::for_machine(machine)
            .page_size(self.page_size)
            .end(end);
        let mut loader = StreamLoader::new(options);
        for (idstr, handler) in routes.iter_mut() {
            loader = loader.route(idstr, &mut **handler);
        }
        let out = loader.fallback(&mut devices).run(r)?;
        let (sections, missing) = devices.commit();
        Ok(LoadReport {
            configuration: out.configuration.map(|(_, c)| c),
            sections,
            missing,
            vmdesc_len: out.vmdesc.map(|t| t.len),
            total_bytes: out.end,
            ..LoadReport::default()
        })
    }

    /// The handler of this registry's device sections for a load for `machine`; see
    /// [`RegistryLoader`].
    #[must_use]
    pub fn loader<'r>(&'r self, machine: &'r MachineType) -> RegistryLoader<'r> {
        RegistryLoader {
            registry: self,
            machine,
            staged: Vec::new(),
            loaded: vec![false; self.entries.len()],
            sections: Vec::new(),
        }
    }
}

/// The [`SectionHandler`] of a registry's device sections: each FULL section is loaded into a
/// copy of its device (found by idstr and instance id or alias), with its version checked
/// against the device's range; [`commit`](Self::commit) replaces the live states, in stream
/// order. Dropping it without committing changes nothing.
pub struct RegistryLoader<'r> {
    registry: &'r Registry,
    machine: &'r MachineType,
    staged: Vec<Box<dyn Staged>>,
    loaded: Vec<bool>,
    sections: Vec<SectionInfo>,
}

impl std::fmt::Debug for RegistryLoader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryLoader")
            .field("machine", &self.machine.name())
            .field("sections", &self.sections)
            .finish_non_exhaustive()
    }
}

impl RegistryLoader<'_> {
    /// Commits every staged state (in stream order). Returns the sections loaded and the
    /// registered devices the stream did not mention (in save order; their state is unchanged).
    pub fn commit(self) -> (Vec<SectionInfo>, Vec<SectionKey>) {
        for s in self.staged {
            s.commit();
        }
        let missing = self
            .registry
            .order()
            .into_iter()
            .filter(|&i| !self.loaded[i])
            .map(|i| self.registry.entries[i].key.clone())
            .collect();
        (self.sections, missing)
    }
}

impl SectionHandler for RegistryLoader<'_> {
    fn load(&mut self, meta: &SectionMeta<'_>, r: &mut dyn ErasedReader) -> Result<()> {
        // Devices have FULL sections only; an iterative section needs a handler of its own.
        if meta.kind != SectionKind::Full {
            return Err(meta.unknown());
        }
        let index = self
            .registry
            .find(meta.idstr, meta.instance_id)
            .ok_or_else(|| meta.unknown())?;
        if self.loaded[index] {
            return Err(Error::new(
                ErrorKind::DuplicateSection {
                    idstr: meta.idstr.to_owned(),
                    instance_id: meta.instance_id,
                },
                meta.offset,
            ));
        }
        let e = &self.registry.entries[index];
        let schema = e.handle.schema();
        crate::private::check_version(
            meta.version,
            schema.min_version,
            schema.version,
            meta.offset,
        )?;
        let payload_start = r.position();
        let mut cx = LoadCx::new(GateCtx::new(self.machine, &schema.name));
        let stage = e.handle.stage_load(r, meta.version, &mut cx)?;
        self.loaded[index] = true;
        self.staged.push(stage);
        self.sections.push(SectionInfo {
            key: e.key.clone(),
            stream_instance_id: meta.instance_id,
            section_id: meta.section_id,
            version: meta.version,
            offset: meta.offset,
            payload_len: r.position() - payload_start,
        });
        Ok(())
    }
}
