//! The destination: [`receive`].
//!
//! The stream is read incrementally with a bounded buffer, by the runtime's one loader
//! ([`Registry::load_with`](vmstate_runtime::Registry::load_with)): RAM chunks are routed to a
//! [`RamLoader`], which writes pages into guest memory as they arrive — scratch until the
//! acknowledgement, because the destination never runs a guest whose migration failed — and
//! every other section to the registry's devices, staged, validated as a whole and committed only
//! when the entire stream (with a complete RAM section) was accepted; device sections are loaded
//! one at a time, bounded by the devices' state sizes. The loader stops right after the vmdesc
//! (its length field says where the stream ends), and the same reader then holds whatever the
//! source sent next. Only then is `LOADED` sent on the return path; the guest is started
//! ([`MigrationDestination::resume`]) only when the source's `GO` line follows (see
//! [`crate::transport`] for the handshake). On any error the destination answers `ERR <error>`,
//! applies no device state and does not start; without `GO` it does not start.

use std::time::{Duration, Instant};

use vmstate_runtime::ram::RAM_IDSTR;
use vmstate_runtime::stream::StreamEnd;
use vmstate_runtime::{IoReader, Reader};

use crate::channels::{ChannelListener, RecvChannels, CHANNELS_IDSTR};
use crate::error::{MigrationError, Result};
use crate::integrity::{IntegrityLoader, RequireIntegrity, Tap, TapReader, INTEGRITY_IDSTR};
use crate::precopy::Report;
use crate::ram::RamLoader;
use crate::transport::{read_line, write_ack, Transport, GO};
use crate::VmParts;

/// The VM being migrated into (not running yet). Its guest memory ([`VmParts::ram`]) is scratch until the migration is acknowledged.
///
/// Contract: while [`receive`] runs, nothing but the receive reads or writes the destination's
/// guest memory (its vCPUs do not run and no other thread of the VMM touches it): pages are read
/// from the transport straight into it.
pub trait MigrationDestination: VmParts {
    /// Starts timers and vCPUs; called once, after `LOADED` was sent and `GO` received.
    fn resume(&mut self);
}

/// Destination settings.
#[derive(Debug, Clone)]
pub struct ReceiveSettings {
    /// Read timeout on the transport (a stalled source is a clean [`MigrationError::Timeout`]).
    pub read_timeout: Option<Duration>,
    /// Where page channels are accepted when the source uses several
    /// ([`Settings::channels`](crate::Settings::channels)); usually the listener the main
    /// connection came from. `None`: a multi-channel stream is refused with a clear error.
    pub channels: Option<ChannelListener>,
    /// Preflight: this side's configuration manifest. The source's manifest must come first
    /// and fit it ([`crate::preflight`]); a mismatch fails before any page or device byte is
    /// read. From a saved stream (a transport without a return path) the manifest stored in
    /// its vmdesc is read first ([`Transport::saved_manifest`]). `None` (the default): QEMU's
    /// stream from the first byte.
    pub preflight: Option<vmstate_runtime::manifest::Manifest>,
    /// Verification: send digests of the loaded RAM and device sections after `LOADED`, for the
    /// source to compare before it commits ([`crate::verify`]). Both sides must set it.
    pub verify: bool,
    /// Refuse a stream without the integrity check ([`crate::integrity`]; the source's
    /// [`Settings::integrity`](crate::Settings::integrity)) before its first page. A stream that
    /// carries the check is checked either way.
    pub require_integrity: bool,
}

/// The destination's read-ahead buffer.
const READ_BUFFER: usize = 256 * 1024;

impl Default for ReceiveSettings {
    fn default() -> Self {
        ReceiveSettings {
            read_timeout: Some(Duration::from_secs(30)),
            channels: None,
            preflight: None,
            verify: false,
            require_integrity: false,
        }
    }
}

/// Who broke: a stream that ended early (end of input, a reset or closed connection) means the
/// source or the network went away, not a malformed stream; say so, with where it stopped.
fn source_gone(e: MigrationError, io: Option<std::io::Error>) -> MigrationError {
    use std::io::ErrorKind as K;
    let MigrationError::Stream(se) = e else {
        return e;
    };
    let section = se
        .section()
        .map(|s| format!("`{}` instance {}", s.idstr, s.instance_id));
    match io {
        Some(io)
            if matches!(
                io.kind(),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof
            ) =>
        {
            MigrationError::SourceGone {
                offset: se.offset(),
                section,
                detail: io.to_string(),
            }
        }
        // The read timeout: a source or network that went silent (no FIN, no RST).
        Some(io) if matches!(io.kind(), K::WouldBlock | K::TimedOut) => {
            MigrationError::Timeout(crate::transport::WAIT_SOURCE)
        }
        Some(io) => MigrationError::from(io),
        None if matches!(se.kind(), vmstate_runtime::ErrorKind::UnexpectedEof { .. }) => {
            MigrationError::SourceGone {
                offset: se.offset(),
                section,
                detail: "the connection closed".into(),
            }
        }
        None => MigrationError::Stream(se),
    }
}

/// Reads the whole stream through the runtime's one loader: RAM chunks go to the [`RamLoader`]
/// (guest memory), every other section to the registry's devices, staged and committed only when
/// the whole stream — including a complete RAM section — was accepted. The loader stops right
/// after the vmdesc, where the source's `GO` will follow.
///
/// Page channels, when the stream names some, are read by threads of `scope` (see
/// [`crate::channels`]); on error they are all shut down before this returns.
fn load<'scope, 'env, D, R>(
    scope: &'scope std::thread::Scope<'scope, 'env>,
    dest: &'env D,
    settings: &ReceiveSettings,
    tap: &Tap,
    r: &mut TapReader<R>,
    report: &mut Report,
) -> Result<()>
where
    D: MigrationDestination + ?Sized,
    R: Reader,
{
    let require = settings.require_integrity;
    let loader = RamLoader::new(dest.ram())?;
    let read_ahead_off = loader.read_ahead_off();
    let mut ram = RequireIntegrity::new(loader, tap.clone(), require);
    let mut chans = RecvChannels::new(
        scope,
        dest.ram(),
        settings.channels.clone(),
        settings.read_timeout,
        read_ahead_off,
    );
    let mut integrity =
        IntegrityLoader::new(tap.clone(), dest.machine().framing().footers, require);
    let loaded = dest.registry().load_with(
        dest.machine(),
        r,
        StreamEnd::Stop,
        &mut [
            (RAM_IDSTR, &mut ram),
            (CHANNELS_IDSTR, &mut chans),
            (INTEGRITY_IDSTR, &mut integrity),
        ],
    );
    // Damage in transit is the cause of what the parse then saw.
    let loaded = loaded.map_err(|e| integrity.diagnose(r, e));
    let ram = ram.inner();
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            // A failed page channel is the cause of what the main channel then saw.
            let cause = chans.error();
            chans.abort();
            return Err(match cause {
                Some(c) => {
                    let silent = matches!(
                        e.kind(),
                        vmstate_runtime::ErrorKind::Io(
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        )
                    );
                    let then = if silent {
                        "the main channel went silent too".to_owned()
                    } else {
                        format!("then, on the main channel: {e}")
                    };
                    MigrationError::Io(std::io::Error::new(
                        crate::channels::cause_kind(&c),
                        format!("{c} ({then})"),
                    ))
                }
                None => e.into(),
            });
        }
    };
    // Every channel has read its FINAL (the section's END was loaded), or none was used.
    let c = chans.counts();
    report.device_sections = loaded.sections.len();
    report.final_pages.pages = ram.counts().pages + c.pages;
    report.final_pages.zero_pages = ram.counts().zero_pages + c.zero_pages;
    report.bytes = loaded.total_bytes + c.bytes;
    report.integrity_units = integrity.units();
    report.pages_read_ahead = ram.read_ahead_pages();
    Ok(())
}

/// Receives a migration into `dest` from `transport`; see the module docs.
///
/// # Errors
/// Every stream, RAM-validation and device error (with stream offsets), transport errors and
/// timeouts. `dest` is not resumed whenever an error is returned, and its guest memory must be
/// discarded. Its devices are unchanged except after [`MigrationError::NoGo`] (everything was
/// loaded and `LOADED` sent, but the source's `GO` did not arrive within the read timeout): the
/// destination must not be started then either. If the source committed (a lost `GO`), the VM is
/// paused on both sides and management decides which side to start; it never runs twice.
pub fn receive<D, T>(dest: &mut D, transport: &mut T, settings: &ReceiveSettings) -> Result<Report>
where
    D: MigrationDestination + ?Sized,
    T: Transport + ?Sized,
{
    let t0 = Instant::now();
    transport.set_timeout(settings.read_timeout)?;
    let mut report = Report::default();
    if let Some(own) = &settings.preflight {
        let p0 = Instant::now();
        report.preflight = if transport.has_return_path() {
            crate::preflight::check(transport, own)?
        } else {
            // A saved stream: its manifest is in its vmdesc, read first.
            crate::preflight::check_saved(transport, own)?
        };
        report.preflight_time = p0.elapsed();
    }
    let tap = Tap::default();
    let mut r = TapReader::new(
        IoReader::with_capacity(READ_BUFFER, &mut *transport),
        tap.clone(),
    );
    let (result, io_error) = std::thread::scope(|s| {
        let result = load(s, &*dest, settings, &tap, &mut r, &mut report);
        (result, r.inner_mut().take_io_error())
    });
    let (_, leftover) = r.into_inner().into_parts();
    let result = result.map_err(|e| source_gone(e, io_error));
    let has_return = transport.has_return_path();
    let loaded_at = Instant::now();
    let mut clock = crate::precopy::PhaseClock::new(loaded_at);
    match result {
        Ok(()) => {
            if has_return {
                // Step 2: LOADED, then wait for the source's commit; never start without it.
                let digests = if settings.verify {
                    let v0 = Instant::now();
                    let (bytes, save) = dest.registry().save_sections_to_vec(dest.machine(), 3)?;
                    let d = crate::verify::Digests {
                        ram: crate::verify::ram_digests(dest.ram())?,
                        sections: crate::verify::section_digests(&bytes, &save),
                    };
                    report.verify_time = v0.elapsed();
                    Some(d)
                } else {
                    None
                };
                write_ack(transport, Ok(()))
                    .map_err(|e| MigrationError::NoGo(format!("sending LOADED: {e}")))?;
                if let Some(d) = &digests {
                    transport
                        .write_all(&crate::verify::frame(d))
                        .and_then(|()| transport.flush())
                        .map_err(|e| MigrationError::NoGo(format!("sending the digests: {e}")))?;
                }
                match read_line(transport, &leftover, "the source's GO") {
                    Ok(Some(line)) if line == GO => {}
                    Ok(Some(line)) if line.starts_with("ABORT ") => {
                        return Err(MigrationError::NoGo(format!(
                            "{} from what it sent: {}",
                            crate::error::NOGO_DIFFERS,
                            &line[6..]
                        )))
                    }
                    Ok(Some(line)) => {
                        return Err(MigrationError::NoGo(format!("got {line:?} instead")))
                    }
                    Ok(None) => return Err(MigrationError::NoGo("connection closed".into())),
                    Err(e) => return Err(MigrationError::NoGo(e.to_string())),
                }
                clock.lap("go-wait");
            }
            dest.resume();
            clock.lap("resume");
            report.critical_path = clock.into_phases();
            report.downtime = loaded_at.elapsed();
            report.total_time = t0.elapsed();
            Ok(report)
        }
        Err(e) => {
            if has_return {
                // The source may be gone already; its own error is what it reports then.
                let _ = write_ack(transport, Err(&e.to_string()));
            }
            Err(e)
        }
    }
}
