//! The precopy driver on the source.
//!
//! [`migrate`] writes, in QEMU's order: header and configuration, the RAM START chunk, pass 0
//! (every page) and further passes (pages dirtied meanwhile) as PART chunks, until the dirty set
//! left can be sent within [`Settings::downtime`] at the bandwidth measured in the last pass, or
//! [`Settings::max_passes`] is reached. Then it stops the vCPUs
//! ([`MigrationSource::stop_vcpus`]), sends the last dirty pages in the END chunk, the device FULL
//! sections, EOF and the vmdesc (from
//! [`Registry::save_sections_to_vec`](vmstate_runtime::Registry::save_sections_to_vec)), and waits for the destination's `LOADED`; then it commits, sends `GO` and
//! half-closes the transport (see [`crate::transport`] for the handshake).
//!
//! On any error or cancel after the stop, the guest is un-throttled and resumed
//! ([`MigrationSource::resume_vcpus`]); saving never changes device state (the registry saves
//! from snapshots), so the source continues exactly where it was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vmstate_runtime::stream::StreamWriter;
use vmstate_runtime::MachineType;

use crate::channels::{self, SendChannels, MAX_CHANNELS};
use crate::error::{MigrationError, Result};
use crate::memory::{GuestRam, PAGE_SIZE};
use crate::ram::{ByteSink, PageCounts, Piece, RamWriter};
use crate::transport::{read_ack, write_line, Transport, GO};
use crate::VmParts;

/// The VM being migrated away. Its guest memory ([`VmParts::ram`]) is dirty-tracked.
pub trait MigrationSource: VmParts {
    /// Stops the vCPUs (and anything else that changes guest memory or device state).
    fn stop_vcpus(&mut self);
    /// Pages dirtied since the previous call (the first call starts the log; its answer is
    /// ignored because pass 0 sends every page): one bitmap per block of [`ram`](VmParts::ram), in
    /// migration order, bit `i % 64` of word `i / 64` for page `i`. Missing or short bitmaps
    /// count as clean.
    ///
    /// The default reads and resets the vm-memory bitmaps ([`GuestRam::take_dirty`]), which see
    /// writes made through the `GuestMemory` API (the VMM, a software guest). A KVM source ORs
    /// in `KVM_GET_DIRTY_LOG` of each memory slot.
    ///
    /// # Errors
    /// When the dirty log cannot be read; the migration fails and the guest resumes.
    fn take_dirty(&mut self) -> Result<Vec<Vec<u64>>> {
        Ok(self.ram().take_dirty())
    }
    /// Resumes them after a failed or cancelled migration.
    fn resume_vcpus(&mut self);
    /// Auto-converge: slow the guest down to `percent` % of its time throttled (0 = full speed).
    fn throttle(&mut self, percent: u8) {
        let _ = percent;
    }
}

/// Precopy settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Bandwidth limit in bytes per second (token bucket, bursts of at most 10 ms or one 1 MiB
    /// buffer); `None` = unlimited.
    pub bandwidth_limit: Option<u64>,
    /// The longest acceptable stop-time transfer.
    pub downtime: Duration,
    /// Passes (including pass 0) before the guest is stopped regardless.
    pub max_passes: u32,
    /// Throttle the guest when passes do not converge: after a pass that did not shrink the
    /// dirty set, and after every second pass in a row whose newly dirtied pages exceed
    /// [`throttle_trigger_percent`](Self::throttle_trigger_percent) of the pages it sent
    /// (QEMU's `throttle-trigger-threshold` rule), so the throttle keeps rising while the guest
    /// dirties memory nearly as fast as it is sent, even if the dirty set shrinks a little.
    pub auto_converge: bool,
    /// First throttle percentage and the step added on every non-converging pass after it.
    pub throttle_initial: u8,
    /// Throttle increment.
    pub throttle_step: u8,
    /// Pages dirtied during a pass, as a percentage of the pages it sent, above which the pass
    /// counts as not converging (QEMU's default: 50).
    pub throttle_trigger_percent: u8,
    /// How long to wait for the destination's acknowledgement.
    pub ack_timeout: Duration,
    /// How long a write may block (not zero): the stream, every page channel and `GO`. A
    /// destination or network that goes silent (a partition: no FIN, no RST) fills the socket
    /// buffer; the write then fails with [`MigrationError::Timeout`] after this long instead of
    /// blocking forever, and the guest resumes ([`Transport::set_send_timeout`]: a write
    /// fails once the kernel took no byte of it for this long). Together with
    /// [`ack_timeout`](Self::ack_timeout) every blocking point of the source is bounded.
    pub write_timeout: Duration,
    /// Set to cancel the migration; checked between buffers.
    pub cancel: Arc<AtomicBool>,
    /// Called during the iterative passes after every buffer written (a progress display for
    /// long passes); `None` = no calls.
    pub progress: Option<ProgressHook>,
    /// Page channels: 1 (the default) sends everything on the one connection, exactly QEMU's
    /// stream; `N > 1` (at most [`MAX_CHANNELS`]) opens `N` more
    /// connections ([`Transport::open_channel`]) that carry the pages while the main connection
    /// carries the device state and the sync points (see [`crate::channels`]). The destination
    /// needs [`ReceiveSettings::channels`](crate::ReceiveSettings::channels). A bandwidth limit is
    /// shared evenly between the page channels.
    pub channels: u32,
    /// Preflight: this side's configuration manifest
    /// ([`manifest_of`](crate::preflight::manifest_of), plus the vCPU model), sent before
    /// anything else; the destination (with
    /// [`ReceiveSettings::preflight`](crate::ReceiveSettings::preflight)) compares it with its
    /// own and refuses a migration that cannot work, before any page moves
    /// ([`MigrationError::Preflight`]). `None` (the default): QEMU's stream from the first
    /// byte. Over a transport without a return path (a file) the manifest is stored in the
    /// stream's vmdesc instead, for a later load to check first. See [`crate::preflight`].
    pub preflight: Option<vmstate_runtime::manifest::Manifest>,
    /// Verification: after `LOADED` the destination sends digests of its guest RAM and device
    /// sections; the source commits only if they equal its own, else it resumes its guest and
    /// fails with [`MigrationError::Verify`] (the destination never starts). Both sides must set
    /// it ([`ReceiveSettings::verify`](crate::ReceiveSettings::verify)). Hashing all RAM on both
    /// sides is in the downtime. See [`crate::verify`].
    pub verify: bool,
    /// The stream's integrity check: CRC-32 checksums inside the stream ahead of every run of
    /// RAM pages and every device section ([`crate::integrity`]), so a transport that damages
    /// bytes is caught as they arrive and the damaged block/page range or section is named.
    /// Every destination of this crate checks them; QEMU refuses such a stream. With page
    /// channels every packet carries its own CRC-32 too. Costs a copy of every page and CRC-32
    /// on both sides.
    pub integrity: bool,
}

/// Where an iterative pass stands, for [`Settings::progress`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassProgress {
    /// Pass number (0 sends every page).
    pub pass: u32,
    /// Pages this pass sends.
    pub pages: u64,
    /// Stream bytes written in this pass so far.
    pub bytes: u64,
    /// Time since the pass began.
    pub elapsed: Duration,
}

/// A progress callback ([`Settings::progress`]).
#[derive(Clone)]
pub struct ProgressHook(pub Arc<dyn Fn(&PassProgress) + Send + Sync>);

impl std::fmt::Debug for ProgressHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressHook")
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bandwidth_limit: None,
            downtime: Duration::from_millis(300),
            max_passes: 30,
            auto_converge: true,
            throttle_initial: 20,
            throttle_step: 10,
            throttle_trigger_percent: 50,
            ack_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            cancel: Arc::new(AtomicBool::new(false)),
            progress: None,
            channels: 1,
            preflight: None,
            verify: false,
            integrity: false,
        }
    }
}

/// Statistics of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PassStats {
    /// Pass number (0 sends every page).
    pub pass: u32,
    /// `PAGE` records sent.
    pub pages: u64,
    /// `ZERO` records sent.
    pub zero_pages: u64,
    /// Stream bytes sent.
    pub bytes: u64,
    /// Pages dirtied during the pass (still to send).
    pub dirty_left: u64,
    /// Pages dirtied per second during the pass.
    pub dirty_rate: f64,
    /// Measured bandwidth (bytes/s).
    pub bandwidth: f64,
    /// Expected downtime if the guest were stopped now.
    pub expected_downtime: Duration,
    /// Wall time of the pass.
    pub duration: Duration,
    /// Throttle percentage applied after this pass (0 = none).
    pub throttle: u8,
}

/// What a migration did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Iterative passes before the stop.
    pub passes: Vec<PassStats>,
    /// Pages sent while stopped.
    pub final_pages: PageCounts,
    /// Total wall time.
    pub total_time: Duration,
    /// Stop → acknowledgement (source) or end of stream → resume (destination).
    pub downtime: Duration,
    /// Stream bytes.
    pub bytes: u64,
    /// Device sections in the stream.
    pub device_sections: usize,
    /// Source only: writing `GO` after the destination's `LOADED` failed (the migration is
    /// committed anyway; the destination reports "no GO" and the VM stays paused on both sides).
    pub go_error: Option<String>,
    /// The critical path, timed step by step, in order. Source: `stop` (stopping the vCPUs and
    /// saving their state), `last-pages` (the last dirty log and pages), `devices` (saving the
    /// device sections, sending them, EOF and the vmdesc), `loaded` (flushing and waiting for the
    /// destination's `LOADED`, i.e. its whole load and check) and `go`; their sum is
    /// [`Report::downtime`] up to the bookkeeping between them. Destination: `go-wait`
    /// (`LOADED` sent → `GO` read) and `resume` ([`MigrationDestination::resume`](crate::MigrationDestination::resume)).
    pub critical_path: Vec<Phase>,
    /// With preflight: the differences the destination accepted (warnings only), and how long
    /// the exchange took (source: manifest sent → verdict read; destination: manifest read →
    /// verdict sent).
    pub preflight: Vec<vmstate_runtime::manifest::Mismatch>,
    /// See [`Report::preflight`].
    pub preflight_time: Duration,
    /// With verification: how long this side spent on digests (in the downtime).
    pub verify_time: Duration,
    /// With the stream's integrity check: the units (page runs, sections, …) sent with a
    /// checksum (source) or checked (destination); 0 without it.
    pub integrity_units: u32,
    /// Destination only: pages of the main connection that arrived by the RAM loader's
    /// read-ahead, straight into guest memory (see [`RamLoader`](crate::RamLoader)).
    pub pages_read_ahead: u64,
}

/// One timed step of a migration's critical path (see [`Report::critical_path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Phase {
    /// The step's name (`stop`, `last-pages`, `devices`, `loaded`, `go`, `go-wait`, `resume`).
    pub name: &'static str,
    /// How long it took.
    pub took: Duration,
}

/// Times the steps of a critical path.
#[derive(Debug)]
pub(crate) struct PhaseClock {
    last: Instant,
    phases: Vec<Phase>,
}

impl PhaseClock {
    /// Starts timing at `start`.
    pub(crate) fn new(start: Instant) -> Self {
        PhaseClock {
            last: start,
            phases: Vec::with_capacity(5),
        }
    }

    /// Ends the step `name` now (it began where the previous one ended).
    pub(crate) fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases.push(Phase {
            name,
            took: now - self.last,
        });
        self.last = now;
    }

    pub(crate) fn into_phases(self) -> Vec<Phase> {
        self.phases
    }
}

/// The transport behind the token bucket, counting bytes and checking cancel.
struct Throttled<'a, T: ?Sized> {
    t: &'a mut T,
    rate: Option<u64>,
    tokens: f64,
    last: Instant,
    bytes: u64,
    cancel: &'a AtomicBool,
    progress: Option<&'a ProgressHook>,
    /// The pass under way (number, pages, bytes at its start, start), for `progress`.
    pass: Option<(u32, u64, u64, Instant)>,
    /// With the integrity check, between its START and END chunks: the unit being assembled.
    integrity: Option<Staging>,
    /// Integrity units sent (known at the END chunk).
    units: u32,
}

/// The integrity check's unit under assembly ([`crate::integrity`]).
struct Staging {
    buf: Vec<u8>,
    framing: vmstate_runtime::machine::Framing,
    units: u32,
}

impl<T: ?Sized> Throttled<'_, T> {
    /// Checks cancel and waits for `len` bytes worth of tokens.
    fn admit(&mut self, len: usize) -> Result<()> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(MigrationError::Cancelled);
        }
        if let Some(rate) = self.rate {
            let rate = rate.max(1) as f64;
            // At most 10 ms (or one piece) of burst after an idle period.
            let cap = (rate / 100.0).max(len as f64);
            let now = Instant::now();
            self.tokens =
                (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(cap);
            self.last = now;
            let need = len as f64;
            if self.tokens < need {
                std::thread::sleep(Duration::from_secs_f64((need - self.tokens) / rate));
                self.last = Instant::now();
                self.tokens = 0.0;
            } else {
                self.tokens -= need;
            }
        }
        Ok(())
    }
}

impl<T: Transport + ?Sized> Throttled<'_, T> {
    /// Counts `len` bytes written and tells the progress hook, if a pass is under way.
    fn sent(&mut self, len: usize) {
        self.bytes += len as u64;
        if let (Some(hook), Some((pass, pages, b0, p0))) = (self.progress, self.pass) {
            (hook.0)(&PassProgress {
                pass,
                pages,
                bytes: self.bytes - b0,
                elapsed: p0.elapsed(),
            });
        }
    }
}

impl<T: Transport + ?Sized> Throttled<'_, T> {
    /// Writes `data` now, past any staging.
    fn write_now(&mut self, data: &[u8]) -> Result<()> {
        self.admit(data.len())?;
        // Through write_pieces: sockets bound it by the write timeout.
        self.t
            .write_pieces(&[Piece::Bytes(data)])
            .map_err(|e| crate::transport::write_error(e, crate::transport::WAIT_STREAM))?;
        self.sent(data.len());
        Ok(())
    }

    /// Starts the integrity check: sends its START chunk; everything sent after it is staged
    /// and goes out unit by unit ([`ByteSink::seal`]).
    fn start_integrity(&mut self, framing: vmstate_runtime::machine::Framing) -> Result<()> {
        self.write_now(&crate::integrity::start_chunk(framing)?)?;
        self.integrity = Some(Staging {
            buf: Vec::with_capacity(2 << 20),
            framing,
            units: 0,
        });
        Ok(())
    }

    /// Ends the check with its END chunk (every unit was sealed).
    fn end_integrity(&mut self) -> Result<()> {
        if self.integrity.as_ref().is_some_and(|s| !s.buf.is_empty()) {
            self.seal(&crate::integrity::Unit::Bytes("stream"))?;
        }
        if let Some(s) = self.integrity.take() {
            self.write_now(&crate::integrity::end_chunk(s.framing, s.units)?)?;
            self.units = s.units;
        }
        Ok(())
    }
}

impl<T: Transport + ?Sized> ByteSink for Throttled<'_, T> {
    fn send(&mut self, data: &[u8]) -> Result<()> {
        if let Some(s) = &mut self.integrity {
            s.buf.extend_from_slice(data);
            return Ok(());
        }
        self.write_now(data)
    }

    fn send_pieces(&mut self, pieces: &[Piece<'_>]) -> Result<()> {
        if let Some(s) = &mut self.integrity {
            // A copy: the bytes hashed must be the bytes sent, and a running guest may change
            // its pages meanwhile.
            for p in pieces {
                p.append_to(&mut s.buf);
            }
            return Ok(());
        }
        let len: usize = pieces.iter().map(Piece::len).sum();
        self.admit(len)?;
        self.t
            .write_pieces(pieces)
            .map_err(|e| crate::transport::write_error(e, crate::transport::WAIT_STREAM))?;
        self.sent(len);
        Ok(())
    }

    fn seal(&mut self, unit: &crate::integrity::Unit<'_>) -> Result<()> {
        let Some(s) = &mut self.integrity else {
            return Ok(());
        };
        let record = crate::integrity::record(s.framing, unit, &s.buf)?;
        s.units += 1;
        let bytes = std::mem::take(&mut s.buf);
        let sent = self
            .write_now(&record)
            .and_then(|()| self.write_now(&bytes));
        if let Some(s) = &mut self.integrity {
            s.buf = bytes;
            s.buf.clear();
        }
        sent
    }

    fn checks_integrity(&self) -> bool {
        self.integrity.is_some()
    }
}

/// The header and configuration section for `machine`, as [`Registry::save_to_vec`] writes them
/// before the device sections.
pub(crate) fn stream_prefix(machine: &MachineType) -> Result<Vec<u8>> {
    let mut s = StreamWriter::for_machine(Vec::new(), machine);
    s.prologue(machine.name())?;
    Ok(s.into_inner())
}

/// Sends every page whose bit is set in `dirty` (one bitmap per block).
fn send_dirty<S: ByteSink + ?Sized>(
    w: &mut RamWriter,
    sink: &mut S,
    ram: &GuestRam,
    dirty: &[Vec<u64>],
) -> Result<PageCounts> {
    let mut total = PageCounts::default();
    for (i, (name, region)) in ram.named_regions().enumerate() {
        let Some(bits) = dirty.get(i) else { break };
        let c = w.write_dirty(sink, i, name, region, bits)?;
        total.pages += c.pages;
        total.zero_pages += c.zero_pages;
        total.bytes += c.bytes;
    }
    Ok(total)
}

/// Every page of every block.
fn all_pages(ram: &GuestRam) -> Vec<Vec<u64>> {
    ram.blocks()
        .iter()
        .map(|(_, len)| {
            vec![u64::MAX; usize::try_from((len / PAGE_SIZE).div_ceil(64)).unwrap_or(0)]
        })
        .collect()
}

/// ORs `more` into `acc`, block by block and word by word.
fn merge_dirty(acc: &mut Vec<Vec<u64>>, more: Vec<Vec<u64>>) {
    for (i, m) in more.into_iter().enumerate() {
        if i >= acc.len() {
            acc.push(m);
            continue;
        }
        let a = &mut acc[i];
        if a.len() < m.len() {
            a.resize(m.len(), 0);
        }
        for (x, y) in a.iter_mut().zip(m) {
            *x |= y;
        }
    }
}

/// Number of set bits, limited to each block's pages.
fn count_dirty(ram: &GuestRam, dirty: &[Vec<u64>]) -> u64 {
    ram.blocks()
        .iter()
        .zip(dirty)
        .map(|((_, len), bits)| {
            let pages = len / PAGE_SIZE;
            bits.iter()
                .enumerate()
                .map(|(w, &word)| {
                    let first = w as u64 * 64;
                    if first >= pages {
                        0
                    } else if pages - first >= 64 {
                        u64::from(word.count_ones())
                    } else {
                        u64::from((word & ((1u64 << (pages - first)) - 1)).count_ones())
                    }
                })
                .sum::<u64>()
        })
        .sum()
}

/// Migrates `source` over `transport` (precopy); see the module docs.
///
/// Returns only after the destination answered `LOADED` and `GO` was sent (or, for a file, the
/// stream was synced). The guest is left stopped on success, also when sending `GO` failed
/// ([`Report::go_error`]): the source committed on `LOADED` and never resumes after it.
///
/// # Errors
/// Memory, save, transport and timeout errors, [`MigrationError::Cancelled`], and the
/// destination's own failure ([`MigrationError::Remote`]), a missing or late `LOADED`
/// ([`MigrationError::Timeout`]). The guest is running again whenever an error is returned.
pub fn migrate<S, T>(source: &mut S, transport: &mut T, settings: &Settings) -> Result<Report>
where
    S: MigrationSource + ?Sized,
    T: Transport + ?Sized,
{
    let mut stopped = None;
    let mut throttle = 0u8;
    let mut result = run(source, transport, settings, &mut stopped, &mut throttle);
    // A write that failed because the destination gave up: its reason is on the return path.
    if let Err(MigrationError::Io(e)) = &result {
        if let Some(why) = peer_reason(transport) {
            result = Err(MigrationError::Remote(format!(
                "{why} (the source's write then failed: {e})"
            )));
        }
    }
    // After LOADED the source is committed: `run` returns Ok from there on.
    if result.is_err() {
        if throttle > 0 {
            source.throttle(0);
        }
        if stopped.is_some() {
            source.resume_vcpus();
        }
    }
    result
}

/// Reads the destination's `DIGESTS <n>` frame (after `LOADED`).
fn read_digests<T: Transport + ?Sized>(t: &mut T) -> Result<crate::verify::Digests> {
    let Some(line) = crate::transport::read_line(t, &[], "the destination's digests")? else {
        return Err(MigrationError::Io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the destination closed the connection before sending its digests",
        )));
    };
    let n = line
        .strip_prefix("DIGESTS ")
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n <= crate::verify::MAX_DIGESTS)
        .ok_or_else(|| MigrationError::BadAck(line.clone()))?;
    let mut body = vec![0u8; n];
    t.read_exact(&mut body)?;
    crate::verify::parse(&body)
}

/// The destination's `ERR …` line, if it sent one before closing (read for at most 200 ms).
fn peer_reason<T: Transport + ?Sized>(t: &mut T) -> Option<String> {
    if !t.has_return_path() || t.set_timeout(Some(Duration::from_millis(200))).is_err() {
        return None;
    }
    match crate::transport::read_line(t, &[], "the destination's reason") {
        Ok(Some(line)) => line.strip_prefix("ERR ").map(str::to_owned),
        _ => None,
    }
}

fn run<S, T>(
    source: &mut S,
    transport: &mut T,
    settings: &Settings,
    stopped: &mut Option<Instant>,
    throttle: &mut u8,
) -> Result<Report>
where
    S: MigrationSource + ?Sized,
    T: Transport + ?Sized,
{
    let t0 = Instant::now();
    let machine = source.machine().clone();
    let framing = machine.framing();
    // Not 0: QEMU routes a PART/END chunk to the first handler whose load-time section id equals
    // the chunk's, and every handler that had no START (its `timer` first) has 0 there, so a RAM
    // section 0 sends the first PART to `timer` and the load fails
    // (needs_qemu::qemu_loads_our_ram_stream). The device sections follow from 3.
    let ram_section_id = 2;
    if source.registry().page_size() != PAGE_SIZE {
        return Err(MigrationError::Memory(format!(
            "the registry's target page size {} is not {PAGE_SIZE}",
            source.registry().page_size()
        )));
    }
    if transport.has_return_path() && !framing.vmdesc {
        // The destination finds the end of the stream through the vmdesc length.
        return Err(MigrationError::Unsupported(
            "the handshake needs a machine type that sends the vmdesc".into(),
        ));
    }
    // Every write below (and the page channels' connects and writes) is bounded.
    transport.set_send_timeout(Some(settings.write_timeout))?;
    let mut report = Report::default();
    // Without a return path (a file) the manifest is stored in the vmdesc instead.
    let stored_manifest = match &settings.preflight {
        Some(m) if !transport.has_return_path() => serde_json::to_value(m).ok(),
        _ => None,
    };
    if let Some(m) = settings
        .preflight
        .as_ref()
        .filter(|_| transport.has_return_path())
    {
        let p0 = Instant::now();
        transport.set_timeout(Some(settings.ack_timeout))?;
        report.preflight = crate::preflight::offer(transport, m)?;
        report.preflight_time = p0.elapsed();
    }
    let mut sink = Throttled {
        t: transport,
        rate: settings.bandwidth_limit,
        tokens: 0.0,
        last: Instant::now(),
        bytes: 0,
        cancel: &settings.cancel,
        progress: settings.progress.as_ref(),
        pass: None,
        integrity: None,
        units: 0,
    };
    let mut w = RamWriter::new(ram_section_id, framing);
    sink.send(&stream_prefix(&machine)?)?;
    if settings.integrity {
        sink.start_integrity(framing)?;
    }
    w.write_start(&mut sink, source.ram())?;
    let chans = if settings.channels > 1 {
        if settings.channels > MAX_CHANNELS || !sink.t.has_return_path() {
            return Err(MigrationError::Unsupported(format!(
                "{} page channels (1..={MAX_CHANNELS}, over a socket transport)",
                settings.channels
            )));
        }
        let id = channels::random_id();
        w.finish(&mut sink)?;
        channels::write_start(
            &mut sink,
            framing,
            &id,
            settings.channels,
            settings.integrity,
        )?;
        sink.seal(&crate::integrity::Unit::Bytes("page channels START"))?;
        sink.t.flush()?;
        let t = &*sink.t;
        let c = SendChannels::open(
            settings.channels,
            &id,
            settings.bandwidth_limit,
            settings.integrity,
            || t.open_channel(),
        )?;
        c.confirm(settings.ack_timeout)?;
        Some(c)
    } else {
        None
    };

    // Start the dirty log; pass 0 sends every page anyway.
    let _ = source.take_dirty()?;
    let mut pending = all_pages(source.ram());
    let mut prev_left = u64::MAX;
    // Passes in a row whose dirtied pages exceeded the trigger share of the pages they sent.
    let mut high_passes = 0u32;
    let mut pass = 0u32;
    loop {
        let p0 = Instant::now();
        let b0 = sink.bytes;
        if sink.progress.is_some() {
            sink.pass = Some((pass, count_dirty(source.ram(), &pending), b0, p0));
        }
        let c = if let Some(ch) = &chans {
            let pages = if sink.progress.is_some() {
                count_dirty(source.ram(), &pending)
            } else {
                0
            };
            let c = ch.send_pass(
                source.ram(),
                &pending,
                pass,
                false,
                &settings.cancel,
                sink.progress,
                pages,
            )?;
            sink.bytes += c.bytes;
            channels::write_sync(&mut sink, framing, pass, false)?;
            sink.seal(&crate::integrity::Unit::Bytes("page channels sync point"))?;
            c
        } else {
            w.begin_chunk(&mut sink, false)?;
            let c = send_dirty(&mut w, &mut sink, source.ram(), &pending)?;
            w.end_chunk(&mut sink)?;
            w.finish(&mut sink)?;
            c
        };
        sink.pass = None;
        let duration = p0.elapsed().max(Duration::from_micros(1));
        pending = source.take_dirty()?;
        let dirty_left = count_dirty(source.ram(), &pending);
        let secs = duration.as_secs_f64();
        let bandwidth = (sink.bytes - b0) as f64 / secs;
        let expected =
            Duration::from_secs_f64((dirty_left * (PAGE_SIZE + 8)) as f64 / bandwidth.max(1.0));
        let mut stats = PassStats {
            pass,
            pages: c.pages,
            zero_pages: c.zero_pages,
            bytes: sink.bytes - b0,
            dirty_left,
            dirty_rate: dirty_left as f64 / secs,
            bandwidth,
            expected_downtime: expected,
            duration,
            throttle: *throttle,
        };
        pass += 1;
        let done = expected <= settings.downtime || pass >= settings.max_passes;
        let sent = c.pages + c.zero_pages;
        let high = dirty_left * 100 > u64::from(settings.throttle_trigger_percent) * sent;
        high_passes = if high { high_passes + 1 } else { 0 };
        let not_shrinking = dirty_left >= prev_left;
        if !done && settings.auto_converge && pass > 1 && (not_shrinking || high_passes >= 2) {
            high_passes = 0;
            *throttle = if *throttle == 0 {
                settings.throttle_initial
            } else {
                throttle.saturating_add(settings.throttle_step).min(99)
            };
            source.throttle(*throttle);
            stats.throttle = *throttle;
        }
        prev_left = dirty_left;
        report.passes.push(stats);
        if done {
            break;
        }
    }

    // Downtime starts when stopping starts (parking the vCPUs is part of it).
    let stop = Instant::now();
    *stopped = Some(stop);
    let mut clock = PhaseClock::new(stop);
    source.stop_vcpus();
    clock.lap("stop");
    let last = source.take_dirty()?;
    merge_dirty(&mut pending, last);
    if let Some(ch) = &chans {
        report.final_pages = ch.send_pass(
            source.ram(),
            &pending,
            pass,
            true,
            &settings.cancel,
            None,
            0,
        )?;
        sink.bytes += report.final_pages.bytes;
        channels::write_sync(&mut sink, framing, pass, true)?;
        sink.seal(&crate::integrity::Unit::Bytes("page channels sync point"))?;
        // The `ram` section ends with an empty END chunk: its pages went over the channels.
        w.begin_chunk(&mut sink, true)?;
        w.end_chunk(&mut sink)?;
        w.finish(&mut sink)?;
    } else {
        w.begin_chunk(&mut sink, true)?;
        report.final_pages = send_dirty(&mut w, &mut sink, source.ram(), &pending)?;
        w.end_chunk(&mut sink)?;
        w.finish(&mut sink)?;
    }
    clock.lap("last-pages");

    let (tail, save) = source.registry().save_sections_to_vec_with(
        &machine,
        ram_section_id + 1,
        stored_manifest,
    )?;
    report.device_sections = save.sections.len();
    if sink.checks_integrity() {
        crate::integrity::send_devices(
            &mut sink,
            framing.footers,
            &tail,
            &save.sections,
            Throttled::end_integrity,
        )?;
    } else {
        sink.send(&tail)?;
    }
    let has_return = sink.t.has_return_path();
    report.bytes = sink.bytes;
    report.integrity_units = sink.units;
    if has_return {
        clock.lap("devices");
        sink.t.flush()?;
        sink.t.set_timeout(Some(settings.ack_timeout))?;
        read_ack(sink.t)?;
        clock.lap("loaded");
        if settings.verify {
            let v0 = Instant::now();
            let theirs = read_digests(sink.t)?;
            let ours = crate::verify::Digests {
                ram: crate::verify::ram_digests(source.ram())?,
                sections: crate::verify::section_digests(&tail, &save),
            };
            let diffs = crate::verify::differences(&ours, &theirs);
            report.verify_time = v0.elapsed();
            if !diffs.is_empty() {
                // Not committed: the destination gets no GO and never starts; `migrate` resumes
                // the guest here.
                let _ = write_line(sink.t, &format!("ABORT {}", diffs.join("; ")));
                return Err(MigrationError::Verify(diffs));
            }
            clock.lap("verify");
        }
        // Committed: the guest is never resumed here again. A lost GO leaves the VM paused on
        // both sides (the destination reports "no GO"), never running twice.
        report.go_error = write_line(sink.t, GO)
            .and_then(|()| sink.t.finish_stream())
            .err()
            .map(|e| e.to_string());
        clock.lap("go");
    } else {
        sink.t.finish_stream()?;
        clock.lap("devices");
    }
    report.critical_path = clock.into_phases();
    if *throttle > 0 {
        source.throttle(0);
        *throttle = 0;
    }
    report.downtime = stop.elapsed();
    report.total_time = t0.elapsed();
    Ok(report)
}
