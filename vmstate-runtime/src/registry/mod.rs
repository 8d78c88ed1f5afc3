//! The device registry and whole-machine save and load.
//!
//! A [`Registry`] lists the sections of a machine: for each, its idstr (`[bus path "/"] vmsd
//! name`), instance id, optional legacy alias instance id, priority and a [`SectionHandle`] that
//! reaches the live device state. Most devices are registered as `Arc<Mutex<T>>` with
//! [`Registry::register`]; anything else implements [`SectionHandle`] itself.
//!
//! **Save** ([`Registry::save`]) writes a whole stream: header, configuration section (when the
//! machine type's [`Framing`](crate::machine::Framing) has one), one FULL section per device in priority order (higher
//! first, then registration order), EOF and the vmdesc. Every device is locked only long enough
//! to clone its state; `pre_save` and the rest of the save run on the clone, so a save never
//! changes a live device. The stream is built in memory and handed to the writer only when it is
//! complete, so a failing save writes nothing.
//!
//! **Load** ([`Registry::load`], [`Registry::load_io`]) is all-or-nothing: every section is
//! loaded into a clone of its device's state, and only when the whole stream (sections, footers,
//! EOF, vmdesc, no trailing bytes) has been accepted are the clones committed, in stream order.
//! On any error no device changes. Devices that the stream does not mention keep their state and
//! are listed in [`LoadReport::missing`]. RAM chunks are stepped over (validated, not restored)
//! unless the caller routes them to its own handler ([`Registry::load_with`]). Commit is not
//! atomic with respect to other threads that lock the devices in between; load while the machine
//! is stopped.
//!
//! The registry reads no framing itself: saves go through [`StreamWriter`](crate::stream::StreamWriter)
//! and loads through [`StreamLoader`](crate::stream::StreamLoader), with [`RegistryLoader`] as
//! the handler of the device sections. Both are linear in the number of sections: sections are
//! found through an index by idstr.

mod load;
mod save;

/// Re-exported from [`crate::reader`], where it lives.
pub use crate::reader::ErasedReader;
pub use load::RegistryLoader;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::context::GateCtx;
use crate::context::{LoadCx, SaveCx};
use crate::error::{Error, ErrorKind, Result, SectionRef};
use crate::ram::{RamBlock, RamCounts, RAM_IDSTR};
use crate::schema::StructSchema;
use crate::state::VmState;
use crate::stream::Configuration;

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

/// The registered instances of one idstr.
#[derive(Default)]
struct Instances {
    /// Instance id or alias -> index into `Registry::entries`.
    ids: HashMap<u32, usize>,
    /// One more than the highest instance id registered (the next automatic instance id).
    next: u32,
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
    /// idstr -> its instances.
    by_idstr: HashMap<String, Instances>,
    page_size: u64,
    /// Bytes of the last save: the next one allocates its buffer once instead of growing it.
    save_size_hint: std::sync::atomic::AtomicUsize,
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
            by_idstr: HashMap::new(),
            page_size: 4096,
            save_size_hint: std::sync::atomic::AtomicUsize::new(4096),
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

    /// The registered sections in save order with their descriptions (name, versions, pins):
    /// what a reader checks a stored stream's section versions against before loading it.
    #[must_use]
    pub fn schemas(&self) -> Vec<(SectionKey, &'static StructSchema)> {
        self.order()
            .into_iter()
            .map(|i| (self.entries[i].key.clone(), self.entries[i].handle.schema()))
            .collect()
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
            None => self.by_idstr.get(&idstr).map_or(0, |s| s.next),
        };
        for id in std::iter::once(instance_id).chain(options.alias_id) {
            if self.find(&idstr, id).is_some() {
                return Err(Error::without_offset(ErrorKind::DuplicateSection {
                    idstr,
                    instance_id: id,
                }));
            }
        }
        let key = SectionKey { idstr, instance_id };
        let same = self.by_idstr.entry(key.idstr.clone()).or_default();
        for id in std::iter::once(instance_id).chain(options.alias_id) {
            same.ids.insert(id, self.entries.len());
        }
        same.next = same.next.max(instance_id.saturating_add(1));
        self.entries.push(Entry {
            key: key.clone(),
            handle,
        });
        Ok(key)
    }

    /// The registered sections in save order (priority high → low, then registration order).
    #[must_use]
    pub fn keys(&self) -> Vec<SectionKey> {
        self.order()
            .into_iter()
            .map(|i| self.entries[i].key.clone())
            .collect()
    }

    /// Every section in save order with its description and whether a save on `machine` would
    /// send it now (its section-level gate, decided on a snapshot as a save decides it).
    pub(crate) fn sections_sent(
        &self,
        machine: &crate::machine::MachineType,
    ) -> Result<Vec<(SectionKey, &'static StructSchema, bool)>> {
        self.order()
            .into_iter()
            .map(|i| {
                let e = &self.entries[i];
                let schema = e.handle.schema();
                let gates = GateCtx::new(machine, &schema.name);
                let snap = e.handle.snapshot().map_err(|err| {
                    err.in_section(section_ref(&e.key.idstr, e.key.instance_id, None))
                })?;
                Ok((e.key.clone(), schema, snap.section_needed(&gates)))
            })
            .collect()
    }

    /// Entry indices in save order (a stable sort: registration order within a priority).
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.entries.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.entries[i].handle.schema().priority));
        order
    }

    /// The entry registered as (`idstr`, `instance_id`), or with `instance_id` as its alias.
    fn find(&self, idstr: &str, instance_id: u32) -> Option<usize> {
        self.by_idstr.get(idstr)?.ids.get(&instance_id).copied()
    }
}
