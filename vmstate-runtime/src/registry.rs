//! The device registry and whole-machine save and load.
//!
//! A [`Registry`] lists the sections of a machine: for each, its idstr (`[bus path "/"] vmsd
//! name`), instance id, optional legacy alias instance id, priority and a [`SectionHandle`] that
//! reaches the live device state. Most devices are registered as `Arc<Mutex<T>>` with
//! [`Registry::register`]; anything else implements [`SectionHandle`] itself.
//!
//! **Save** ([`Registry::save`]) writes a whole stream: header, configuration section (when the
//! machine type's [`Framing`] has one), one FULL section per device in priority order (higher
//! first, then registration order), EOF and the vmdesc. Every device is locked only long enough
//! to clone its state; `pre_save` and the rest of the save run on the clone, so a save never
//! changes a live device. The stream is built in memory and handed to the writer only when it is
//! complete, so a failing save writes nothing.
//!
//! **Load** ([`Registry::load`], [`Registry::load_io`]) is all-or-nothing: every section is
//! loaded into a clone of its device's state, and only when the whole stream (sections, footers,
//! EOF, vmdesc, no trailing bytes) has been accepted are the clones committed, in stream order.
//! On any error no device changes. Devices that the stream does not mention keep their state and
//! are listed in [`LoadReport::missing`]. RAM chunks are stepped over (validated, not restored).
//! Commit is not atomic with respect to other threads that lock the devices in between; load
//! while the machine is stopped.

use std::sync::{Arc, Mutex, PoisonError};

use crate::context::{GateCtx, LoadCx, SaveCx};
use crate::error::{Error, ErrorKind, Result, SectionRef};
use crate::limits;
use crate::machine::{Framing, MachineType};
use crate::ram::{RamBlock, RamCounts, RamStepper, RAM_IDSTR, RAM_VERSION};
use crate::reader::{IoReader, Reader, SliceReader};
use crate::schema::StructSchema;
use crate::state::VmState;
use crate::stream::{self, Configuration, SectionHeader};
use crate::vmdesc::{self, DescBody, DescDevice, Vmdesc};
use crate::writer::Writer;

/// An object-safe view of a [`Reader`], so that [`SectionHandle`] can be a trait object.
/// Implemented for every sized `Reader`; `dyn ErasedReader` is itself a `Reader`.
pub trait ErasedReader {
    /// [`Reader::take`].
    ///
    /// # Errors
    /// As [`Reader::take`].
    fn erased_take(&mut self, n: usize) -> Result<&[u8]>;
    /// [`Reader::peek`].
    ///
    /// # Errors
    /// As [`Reader::peek`].
    fn erased_peek(&mut self, n: usize) -> Result<Option<&[u8]>>;
    /// [`Reader::position`].
    fn erased_position(&self) -> u64;
    /// [`Reader::skip`].
    ///
    /// # Errors
    /// As [`Reader::skip`].
    fn erased_skip(&mut self, n: u64) -> Result<()>;
}

impl<R: Reader> ErasedReader for R {
    fn erased_take(&mut self, n: usize) -> Result<&[u8]> {
        self.take(n)
    }
    fn erased_peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        self.peek(n)
    }
    fn erased_position(&self) -> u64 {
        self.position()
    }
    fn erased_skip(&mut self, n: u64) -> Result<()> {
        self.skip(n)
    }
}

impl Reader for dyn ErasedReader + '_ {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        self.erased_take(n)
    }
    fn peek(&mut self, n: usize) -> Result<Option<&[u8]>> {
        self.erased_peek(n)
    }
    fn position(&self) -> u64 {
        self.erased_position()
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        self.erased_skip(n)
    }
}

/// A copy of a device's state taken for a save.
pub trait SectionSnapshot {
    /// Whether the section is sent at all (QEMU's top-level `needed()`), evaluated before any
    /// save hook runs.
    fn section_needed(&self, gates: &GateCtx<'_>) -> bool;

    /// Writes the section payload (fields and subsections, no header or footer) at `version`.
    /// Hooks run on the snapshot.
    ///
    /// # Errors
    /// Hook and writer errors.
    fn save(&mut self, w: &mut Vec<u8>, version: u32, cx: &mut SaveCx<'_>) -> Result<()>;

    /// Whether [`save`](Self::save) feeds the vmdesc builder of `cx` with its fields (as
    /// `VmState::save_state` does). The registry opens and closes the top-level struct around
    /// `save` itself. When false, the vmdesc gets a legacy entry describing the payload as one
    /// `data` buffer.
    fn describes_vmdesc(&self) -> bool {
        true
    }
}

/// A loaded state waiting for the whole stream to be accepted.
pub trait Staged: Send {
    /// Replaces the live state with the loaded one. Cannot fail.
    fn commit(self: Box<Self>);
}

/// How the registry reaches one device: its description, snapshots for saving, staged loads.
pub trait SectionHandle: Send + Sync {
    /// The top-level description (name, versions, priority).
    fn schema(&self) -> &'static StructSchema;

    /// A copy of the current state to save from.
    ///
    /// # Errors
    /// When the state cannot be read (e.g. a poisoned lock).
    fn snapshot(&self) -> Result<Box<dyn SectionSnapshot + '_>>;

    /// Loads a section payload at `version` into a copy of the current state, to be committed
    /// later. Must not change the live state.
    ///
    /// # Errors
    /// Any decode, version or validation error.
    fn stage_load(
        &self,
        r: &mut dyn ErasedReader,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<Box<dyn Staged>>;
}

struct MutexHandle<T>(Arc<Mutex<T>>);

struct CloneSnapshot<T>(T);

impl<T: VmState> SectionSnapshot for CloneSnapshot<T> {
    fn section_needed(&self, gates: &GateCtx<'_>) -> bool {
        self.0.section_needed(gates)
    }
    fn save(&mut self, w: &mut Vec<u8>, version: u32, cx: &mut SaveCx<'_>) -> Result<()> {
        self.0.save_state(w, version, cx)
    }
}

struct StagedState<T> {
    target: Arc<Mutex<T>>,
    value: T,
}

impl<T: Send> Staged for StagedState<T> {
    fn commit(self: Box<Self>) {
        let StagedState { target, value } = *self;
        // The whole value is replaced, so a poisoned lock is healed rather than propagated.
        *target.lock().unwrap_or_else(PoisonError::into_inner) = value;
        target.clear_poison();
    }
}

fn poisoned(name: &str, save: bool) -> Error {
    let message = format!(
        "the state lock of device `{name}` is poisoned (a thread panicked while holding it)"
    );
    Error::without_offset(if save {
        ErrorKind::SaveFailed { message }
    } else {
        ErrorKind::ValidationFailed { message }
    })
}

impl<T: VmState + Clone + Send + 'static> SectionHandle for MutexHandle<T> {
    fn schema(&self) -> &'static StructSchema {
        T::SCHEMA
    }

    fn snapshot(&self) -> Result<Box<dyn SectionSnapshot + '_>> {
        let copy = self
            .0
            .lock()
            .map_err(|_| poisoned(&T::SCHEMA.name, true))?
            .clone();
        Ok(Box::new(CloneSnapshot(copy)))
    }

    fn stage_load(
        &self,
        r: &mut dyn ErasedReader,
        version: u32,
        cx: &mut LoadCx<'_>,
    ) -> Result<Box<dyn Staged>> {
        let mut value = self
            .0
            .lock()
            .map_err(|_| poisoned(&T::SCHEMA.name, false).at_offset(r.erased_position()))?
            .clone();
        value.load_state(r, version, cx)?;
        Ok(Box::new(StagedState {
            target: Arc::clone(&self.0),
            value,
        }))
    }
}

/// Identity of a section: idstr and instance id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SectionKey {
    /// `[bus path "/"] vmsd name`.
    pub idstr: String,
    /// Instance id.
    pub instance_id: u32,
}

impl std::fmt::Display for SectionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` instance {}", self.idstr, self.instance_id)
    }
}

/// Options of a registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterOptions {
    /// The qdev bus path (e.g. `0000:00:01.3`); the idstr becomes `<path>/<vmsd name>`.
    pub bus_path: Option<String>,
    /// An explicit instance id; default: one more than the highest instance id registered for
    /// the same idstr (0 for the first), as QEMU assigns them.
    pub instance_id: Option<u32>,
    /// A legacy alias instance id accepted on load (ISA devices use their I/O base, e.g. 0x3f8).
    pub alias_id: Option<u32>,
}

impl RegisterOptions {
    /// Default options.
    #[must_use]
    pub fn new() -> Self {
        RegisterOptions::default()
    }

    /// Sets the bus path.
    #[must_use]
    pub fn bus_path(mut self, path: &str) -> Self {
        self.bus_path = Some(path.to_owned());
        self
    }

    /// Sets an explicit instance id.
    #[must_use]
    pub fn instance_id(mut self, id: u32) -> Self {
        self.instance_id = Some(id);
        self
    }

    /// Sets the legacy alias instance id.
    #[must_use]
    pub fn alias_id(mut self, id: u32) -> Self {
        self.alias_id = Some(id);
        self
    }
}

struct Entry {
    key: SectionKey,
    alias: Option<u32>,
    handle: Arc<dyn SectionHandle>,
}

/// One section written or loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionInfo {
    /// idstr and the instance id of the registration (not the alias).
    pub key: SectionKey,
    /// The instance id in the stream (the alias when the stream used it).
    pub stream_instance_id: u32,
    /// Section id in the stream.
    pub section_id: u32,
    /// Section version.
    pub version: u32,
    /// Stream offset of the section header.
    pub offset: u64,
    /// Payload bytes (without header and footer).
    pub payload_len: u64,
}

/// What [`Registry::save`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaveReport {
    /// Sections written, in stream order.
    pub sections: Vec<SectionInfo>,
    /// Devices whose top-level `needed()` was false, so their section was left out.
    pub skipped: Vec<SectionKey>,
    /// Length of the vmdesc JSON (after padding), when written.
    pub vmdesc_len: Option<u32>,
    /// Total bytes written.
    pub total_bytes: u64,
}

/// What [`Registry::load`] read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    /// The configuration section, when the stream had one.
    pub configuration: Option<Configuration>,
    /// Device sections loaded (and committed), in stream order.
    pub sections: Vec<SectionInfo>,
    /// RAM blocks announced by the RAM section, if any.
    pub ram_blocks: Vec<RamBlock>,
    /// RAM records stepped over.
    pub ram: RamCounts,
    /// Registered devices the stream did not mention; their state is unchanged.
    pub missing: Vec<SectionKey>,
    /// Length of the vmdesc JSON, when present.
    pub vmdesc_len: Option<u32>,
    /// Total bytes read.
    pub total_bytes: u64,
}

/// The devices of a machine, for whole-stream save and load.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use vmstate_runtime::registry::Registry;
/// use vmstate_runtime::MachineCatalog;
///
/// let registry = Registry::new(); // register devices with `register`
/// let machine = MachineCatalog::qemu_pc().resolve("pc-i440fx-7.2").unwrap();
/// let mut stream = Vec::new();
/// registry.save(&machine, &mut stream).unwrap();
/// assert_eq!(&stream[..4], b"QEVM");
/// let report = registry.load(&machine, &stream).unwrap();
/// assert!(report.sections.is_empty());
/// ```
pub struct Registry {
    entries: Vec<Entry>,
    page_size: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("sections", &self.keys())
            .field("page_size", &self.page_size)
            .finish()
    }
}

fn section_ref(idstr: &str, instance_id: u32, version: Option<u32>) -> SectionRef {
    SectionRef {
        idstr: idstr.to_owned(),
        instance_id,
        version,
    }
}

impl Registry {
    /// An empty registry with a 4096-byte target page size.
    #[must_use]
    pub fn new() -> Self {
        Registry {
            entries: Vec::new(),
            page_size: 4096,
        }
    }

    /// Sets the target page size written in the vmdesc and used to step RAM sections.
    #[must_use]
    pub fn with_page_size(mut self, page_size: u64) -> Self {
        self.page_size = page_size;
        self
    }

    /// The target page size.
    #[must_use]
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Registers a device with default options: idstr = vmsd name, automatic instance id.
    ///
    /// # Errors
    /// As [`register_handle`](Self::register_handle).
    pub fn register<T>(&mut self, device: Arc<Mutex<T>>) -> Result<SectionKey>
    where
        T: VmState + Clone + Send + 'static,
    {
        self.register_with(device, RegisterOptions::default())
    }

    /// Registers a device with options (bus path, instance id, alias).
    ///
    /// # Errors
    /// As [`register_handle`](Self::register_handle).
    pub fn register_with<T>(
        &mut self,
        device: Arc<Mutex<T>>,
        options: RegisterOptions,
    ) -> Result<SectionKey>
    where
        T: VmState + Clone + Send + 'static,
    {
        self.register_handle(Arc::new(MutexHandle(device)), options)
    }

    /// Registers a custom handle.
    ///
    /// # Errors
    /// [`ErrorKind::ValidationFailed`] for a `nested` schema (not a section) or a schema named
    /// `ram`; [`ErrorKind::LengthTooLarge`] for an idstr longer than 255 bytes;
    /// [`ErrorKind::DuplicateSection`] when the (idstr, instance id) or the alias is taken.
    pub fn register_handle(
        &mut self,
        handle: Arc<dyn SectionHandle>,
        options: RegisterOptions,
    ) -> Result<SectionKey> {
        let schema = handle.schema();
        if schema.nested || schema.name == RAM_IDSTR {
            return Err(Error::without_offset(ErrorKind::ValidationFailed {
                message: format!(
                    "`{}` cannot be registered as a section (nested struct or reserved name)",
                    schema.name
                ),
            }));
        }
        let idstr = match &options.bus_path {
            Some(p) => format!("{p}/{}", schema.name),
            None => schema.name.to_string(),
        };
        if idstr.len() > 255 {
            return Err(Error::without_offset(ErrorKind::LengthTooLarge {
                len: idstr.len() as u64,
                limit: 255,
            }));
        }
        let instance_id = match options.instance_id {
            Some(i) => i,
            None => self
                .entries
                .iter()
                .filter(|e| e.key.idstr == idstr)
                .map(|e| e.key.instance_id.saturating_add(1))
                .max()
                .unwrap_or(0),
        };
        let taken = |id: u32| {
            self.entries
                .iter()
                .any(|e| e.key.idstr == idstr && (e.key.instance_id == id || e.alias == Some(id)))
        };
        for id in std::iter::once(instance_id).chain(options.alias_id) {
            if taken(id) {
                return Err(Error::without_offset(ErrorKind::DuplicateSection {
                    idstr,
                    instance_id: id,
                }));
            }
        }
        let key = SectionKey { idstr, instance_id };
        self.entries.push(Entry {
            key: key.clone(),
            alias: options.alias_id,
            handle,
        });
        Ok(key)
    }

    /// The registered sections in save order (priority high → low, then registration order).
    #[must_use]
    pub fn keys(&self) -> Vec<SectionKey> {
        self.order().map(|e| e.key.clone()).collect()
    }

    fn order(&self) -> impl Iterator<Item = &Entry> {
        let mut order: Vec<&Entry> = self.entries.iter().collect();
        order.sort_by_key(|e| std::cmp::Reverse(e.handle.schema().priority));
        order.into_iter()
    }

    /// Saves every device into a whole stream for `machine`.
    ///
    /// The stream is built in memory and written to `w` in one piece at the end; on error
    /// nothing is written. Section versions are `SCHEMA.version_for(machine)` (machine-pinned
    /// versions); section ids count from 0 in stream order. Error offsets are stream offsets.
    ///
    /// # Errors
    /// Any error of a device's save (named by its section), and writer errors.
    pub fn save<W: Writer + ?Sized>(&self, machine: &MachineType, w: &mut W) -> Result<SaveReport> {
        let (buf, mut report) = self.save_to_vec(machine)?;
        w.write_all(&buf)?;
        report.total_bytes = buf.len() as u64;
        Ok(report)
    }

    /// Saves every device into a new buffer; see [`save`](Self::save).
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_to_vec(&self, machine: &MachineType) -> Result<(Vec<u8>, SaveReport)> {
        let mut out = Vec::with_capacity(4096);
        stream::write_header(&mut out)?;
        if machine.framing().configuration {
            stream::write_configuration(&mut out, &Configuration::new(machine.name()))?;
        }
        let base = out.len() as u64;
        let (tail, mut report) = self.save_sections_to_vec(machine, 0)?;
        out.extend_from_slice(&tail);
        for s in &mut report.sections {
            s.offset += base;
        }
        report.total_bytes = out.len() as u64;
        Ok((out, report))
    }

    /// Saves only the device sections, EOF and the vmdesc — what follows the header and the
    /// configuration section, or an iterative section such as RAM — numbering sections from
    /// `first_section_id`. Offsets in the report are relative to the returned buffer.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_sections_to_vec(
        &self,
        machine: &MachineType,
        first_section_id: u32,
    ) -> Result<(Vec<u8>, SaveReport)> {
        let framing = machine.framing();
        let mut out = Vec::with_capacity(4096);
        let mut report = SaveReport::default();
        let mut devices = Vec::new();
        let mut section_id = first_section_id;
        for e in self.order() {
            let schema = e.handle.schema();
            let version = schema.version_for(machine.version());
            let sref = || section_ref(&e.key.idstr, e.key.instance_id, Some(version));
            let gates = GateCtx::new(machine, &schema.name);
            let mut snap = e.handle.snapshot().map_err(|err| err.in_section(sref()))?;
            if !snap.section_needed(&gates) {
                report.skipped.push(e.key.clone());
                continue;
            }
            let offset = out.len() as u64;
            stream::write_full_header(
                &mut out,
                section_id,
                &e.key.idstr,
                e.key.instance_id,
                version,
            )
            .map_err(|err| err.in_section(sref()))?;
            let payload_start = out.len() as u64;
            let describe = framing.vmdesc && snap.describes_vmdesc();
            let mut cx = SaveCx::new(gates, describe);
            if let Some(d) = cx.desc() {
                d.struct_begin(&schema.name, version, payload_start);
            }
            snap.save(&mut out, version, &mut cx)
                .map_err(|err| err.at_offset(payload_start).in_section(sref()))?;
            if let Some(d) = cx.desc() {
                d.struct_end(out.len() as u64);
            }
            let payload_len = out.len() as u64 - payload_start;
            stream::write_footer(&mut out, section_id, &framing)?;
            if framing.vmdesc {
                let body = match cx.take_desc() {
                    Some(d) if describe => DescBody::Vmsd(d),
                    _ => DescBody::Raw(legacy_desc(&e.key, payload_len)),
                };
                devices.push(DescDevice {
                    name: e.key.idstr.clone(),
                    instance_id: e.key.instance_id,
                    body,
                });
            }
            report.sections.push(SectionInfo {
                key: e.key.clone(),
                stream_instance_id: e.key.instance_id,
                section_id,
                version,
                offset,
                payload_len,
            });
            section_id = section_id.checked_add(1).ok_or_else(|| {
                Error::without_offset(ErrorKind::LengthTooLarge {
                    len: u64::from(u32::MAX) + 1,
                    limit: u32::MAX.into(),
                })
            })?;
        }
        stream::write_eof(&mut out)?;
        if framing.vmdesc {
            let json = vmdesc::write_json(&Vmdesc {
                configuration: None,
                page_size: self.page_size,
                devices,
            });
            report.vmdesc_len = Some(stream::write_vmdesc(&mut out, &json)?);
        }
        report.total_bytes = out.len() as u64;
        Ok((out, report))
    }

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

    /// Loads a whole stream from any [`Reader`], all or nothing.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_from<R: Reader>(&self, machine: &MachineType, r: &mut R) -> Result<LoadReport> {
        let framing = machine.framing();
        let mut report = LoadReport::default();
        let mut staged: Vec<Box<dyn Staged>> = Vec::new();
        let mut loaded = vec![false; self.entries.len()];
        let mut ram: Option<(u32, RamStepper)> = None;

        stream::read_stream_header(r)?;
        if framing.configuration {
            report.configuration = Some(self.read_config(r, machine)?);
        }
        let mut count = 0usize;
        loop {
            let offset = r.position();
            count += 1;
            if count > limits::MAX_SECTIONS {
                return Err(Error::new(
                    ErrorKind::LengthTooLarge {
                        len: count as u64,
                        limit: limits::MAX_SECTIONS as u64,
                    },
                    offset,
                ));
            }
            match stream::read_section_header(r)? {
                SectionHeader::Eof => break,
                SectionHeader::Full {
                    section_id,
                    idstr,
                    instance_id,
                    version,
                } => {
                    let sref = section_ref(&idstr, instance_id, Some(version));
                    let (index, stage, payload_len) = self
                        .load_full(
                            r,
                            machine,
                            &framing,
                            &loaded,
                            section_id,
                            &idstr,
                            instance_id,
                            version,
                            offset,
                        )
                        .map_err(|e| e.in_section(sref))?;
                    let e = &self.entries[index];
                    loaded[index] = true;
                    staged.push(stage);
                    report.sections.push(SectionInfo {
                        key: e.key.clone(),
                        stream_instance_id: instance_id,
                        section_id,
                        version,
                        offset,
                        payload_len,
                    });
                }
                SectionHeader::Start {
                    section_id,
                    idstr,
                    instance_id,
                    version,
                } => {
                    let sref = section_ref(&idstr, instance_id, Some(version));
                    if idstr != RAM_IDSTR || instance_id != 0 {
                        return Err(Error::new(
                            ErrorKind::UnknownSection { idstr, instance_id },
                            offset,
                        )
                        .in_section(sref));
                    }
                    if ram.is_some() {
                        return Err(Error::new(
                            ErrorKind::DuplicateSection { idstr, instance_id },
                            offset,
                        )
                        .in_section(sref));
                    }
                    crate::private::check_version(version, RAM_VERSION, RAM_VERSION, offset)
                        .map_err(|e| e.in_section(sref.clone()))?;
                    let mut stepper = RamStepper::new(self.page_size)
                        .map_err(|e| e.at_offset(offset).in_section(sref.clone()))?;
                    let counts = stepper
                        .step_start(r)
                        .and_then(|c| stream::expect_footer(r, section_id, &framing).map(|()| c))
                        .map_err(|e| e.in_section(sref))?;
                    report.ram += counts;
                    ram = Some((section_id, stepper));
                }
                SectionHeader::Part { section_id } | SectionHeader::End { section_id } => {
                    let Some((_, stepper)) = ram.as_mut().filter(|(id, _)| *id == section_id)
                    else {
                        return Err(Error::new(
                            ErrorKind::UnknownSectionId { section_id },
                            offset,
                        ));
                    };
                    let counts = stepper
                        .step_part(r)
                        .and_then(|c| stream::expect_footer(r, section_id, &framing).map(|()| c))
                        .map_err(|e| e.in_section(section_ref(RAM_IDSTR, 0, Some(RAM_VERSION))))?;
                    report.ram += counts;
                }
                SectionHeader::Command { cmd, .. } => {
                    return Err(Error::new(ErrorKind::UnsupportedCommand { cmd }, offset));
                }
                SectionHeader::Configuration(_) => {
                    return Err(Error::new(
                        ErrorKind::UnexpectedSectionType {
                            found: stream::CONFIGURATION,
                        },
                        offset,
                    ));
                }
            }
        }
        report.vmdesc_len = stream::skip_vmdesc_trailer(r)?.map(|t| t.len);
        report.total_bytes = r.position();
        if let Some((_, stepper)) = ram {
            report.ram_blocks = stepper.blocks().to_vec();
        }
        // Everything was accepted: commit in stream order.
        for s in staged {
            s.commit();
        }
        report.missing = self
            .order()
            .filter(|e| !report.sections.iter().any(|s| s.key == e.key))
            .map(|e| e.key.clone())
            .collect();
        Ok(report)
    }

    fn read_config<R: Reader>(&self, r: &mut R, machine: &MachineType) -> Result<Configuration> {
        let pos = r.position();
        match r.peek(1)? {
            Some([stream::CONFIGURATION]) => {}
            Some(b) => {
                return Err(Error::new(
                    ErrorKind::MissingConfiguration { found: b[0] },
                    pos,
                ))
            }
            None => {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof {
                        needed: 1,
                        available: 0,
                    },
                    pos,
                ))
            }
        }
        r.take(1)?;
        let config = stream::read_configuration_body(r)?;
        // QEMU compares the received name over the received length only (a prefix match).
        if !machine
            .name()
            .as_bytes()
            .starts_with(config.machine.as_bytes())
        {
            return Err(Error::new(
                ErrorKind::MachineTypeMismatch {
                    expected: machine.name().to_owned(),
                    found: config.machine.clone(),
                },
                pos,
            ));
        }
        if let Some(bits) = config.target_page_bits {
            if 1u64.checked_shl(bits) != Some(self.page_size) {
                return Err(Error::new(
                    ErrorKind::ValidationFailed {
                        message: format!(
                            "the stream's target page size is 2^{bits}, this machine's is {}",
                            self.page_size
                        ),
                    },
                    pos,
                ));
            }
        }
        if let Some(cap) = config.capabilities.as_ref().and_then(|c| c.first()) {
            return Err(Error::new(
                ErrorKind::ValidationFailed {
                    message: format!(
                        "the stream was sent with migration capability `{cap}`, which this runtime does not support"
                    ),
                },
                pos,
            ));
        }
        Ok(config)
    }

    #[allow(clippy::too_many_arguments)]
    fn load_full<R: Reader>(
        &self,
        r: &mut R,
        machine: &MachineType,
        framing: &Framing,
        loaded: &[bool],
        section_id: u32,
        idstr: &str,
        instance_id: u32,
        version: u32,
        offset: u64,
    ) -> Result<(usize, Box<dyn Staged>, u64)> {
        let index = self
            .entries
            .iter()
            .position(|e| {
                e.key.idstr == idstr
                    && (e.key.instance_id == instance_id || e.alias == Some(instance_id))
            })
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::UnknownSection {
                        idstr: idstr.to_owned(),
                        instance_id,
                    },
                    offset,
                )
            })?;
        if loaded.get(index).copied().unwrap_or(false) {
            return Err(Error::new(
                ErrorKind::DuplicateSection {
                    idstr: idstr.to_owned(),
                    instance_id,
                },
                offset,
            ));
        }
        let e = &self.entries[index];
        let schema = e.handle.schema();
        crate::private::check_version(version, schema.min_version, schema.version, offset)?;
        let payload_start = r.position();
        let mut cx = LoadCx::new(GateCtx::new(machine, &schema.name));
        let stage = e.handle.stage_load(r, version, &mut cx)?;
        let payload_len = r.position() - payload_start;
        stream::expect_footer(r, section_id, framing)?;
        Ok((index, stage, payload_len))
    }
}

/// The vmdesc entry QEMU writes for a section without a vmsd description.
fn legacy_desc(key: &SectionKey, size: u64) -> serde_json::Value {
    serde_json::json!({
        "name": key.idstr,
        "instance_id": key.instance_id,
        "size": size,
        "fields": [{"name": "data", "size": size, "type": "buffer"}],
    })
}
