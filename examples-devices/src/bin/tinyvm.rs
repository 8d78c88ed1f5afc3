//! `tinyvm`: live-migrate a running guest back and forth between two processes.
//!
//! ```text
//! tinyvm pingpong --count 100            # KVM when /dev/kvm opens (feature `kvm`), else software
//! tinyvm pingpong --count 5 --soft       # the software guest (a thread dirtying vm-memory RAM)
//! tinyvm pingpong --mem 256M --dirty-rate 50000 --count 20 --verbose   # multi-pass precopy
//! tinyvm pingpong --mem 256M --channels 2 --count 20   # RAM pages over 2 page channels
//! tinyvm serve --kvm                     # a child: prints `READY <port>`, then obeys stdin lines
//! tinyvm snapshot --kvm --mem 1G --run-ms 8000 --out base.snap   # a snapshot file
//! tinyvm restore base.snap --check       # mapped back, started, checked (docs/snapshots.md)
//! ```
//!
//! `pingpong` migrates the running guest live between two `serve` children over loopback TCP,
//! swapping roles every hop, and checks memory, progress and serial output after each hop; exit
//! status 1 on any inconsistency, 2 on a bad mode. The code, and what the checks are, is in
//! `examples_devices::tinyvm`: `driver` (the parent: `pingpong`, `save`), `child` (`serve`) and
//! `protocol` (the line protocol between them). This file parses the command line and
//! dispatches.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use examples_devices::tinyvm::child::Options;
use examples_devices::tinyvm::guest::{parse_rate, parse_size, Workload};
use examples_devices::tinyvm::{child, driver, snapshot, Mode};

#[derive(Parser)]
#[command(
    name = "tinyvm",
    about = "Live migration of a running tiny guest between two processes"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone, Copy)]
struct ModeArgs {
    /// Run the KVM guest (needs the `kvm` feature and /dev/kvm).
    #[arg(long, conflicts_with = "soft")]
    kvm: bool,
    /// Run the software guest.
    #[arg(long)]
    soft: bool,
    /// Guest RAM: bytes or with K/M/G (1M = the real-mode guest; KVM: 32-bit up to 3G, 64-bit above, up to 32G).
    #[arg(long, default_value = "1M", value_parser = parse_size)]
    mem: usize,
    /// Pages per second the guest may dirty, or `max` (as fast as it can).
    #[arg(long, default_value = "max", value_parser = |s: &str| parse_rate(s).map(DirtyRate))]
    dirty_rate: DirtyRate,
    /// Migration bandwidth limit in bytes per second (K/M/G allowed); unlimited if absent.
    #[arg(long, value_parser = parse_size)]
    bandwidth: Option<usize>,
    /// Print a progress line on stderr every 250 ms of a long precopy pass (`pingpong
    /// --verbose` passes it to its children).
    #[arg(long)]
    progress: bool,
    /// Page channels: move RAM pages over N parallel connections besides the main one (1 = the
    /// single stream in QEMU's format).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=16))]
    channels: u32,
    /// Precopy passes (including the first) before the guest is stopped regardless of the
    /// downtime target. With a bandwidth limit and a busy guest, auto-converge needs passes to
    /// raise the throttle (20 %, then +10 % every pass or two): too few stops the guest with a
    /// large dirty set, i.e. a long downtime.
    #[arg(long, default_value_t = examples_devices::tinyvm::MAX_PASSES, value_parser = clap::value_parser!(u32).range(1..))]
    max_passes: u32,
    /// Preflight: every migration starts with the source's configuration manifest (machine
    /// type, sections and versions, RAM blocks, compat properties, vCPU features and MSRs),
    /// which the destination checks before any guest state moves.
    #[arg(long)]
    preflight: bool,
    /// Verification: after the destination loaded everything it sends digests of its RAM and
    /// device sections, and the source commits only if they equal what it sent (else it resumes
    /// and the destination never starts). Costs hashing all RAM on both sides in the downtime.
    #[arg(long)]
    verify: bool,
    /// The stream's integrity check: CRC-32 checksums inside the stream ahead of every run of
    /// RAM pages and every device section; the destination requires them and names any damaged
    /// block/page range or section as it arrives (with `--channels`, every packet too).
    #[arg(long)]
    integrity: bool,
}

/// `--dirty-rate` (clap treats a bare `Option` as an optional flag).
#[derive(Clone, Copy)]
struct DirtyRate(Option<u64>);

impl ModeArgs {
    fn options(&self, verbose: bool) -> Options {
        Options {
            workload: Workload {
                ram_size: self.mem,
                dirty_rate: self.dirty_rate.0,
            },
            bandwidth_limit: self.bandwidth.map(|b| b as u64),
            progress: self.progress || verbose,
            channels: self.channels,
            max_passes: self.max_passes,
            preflight: self.preflight,
            verify: self.verify,
            integrity: self.integrity,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Migrate the running guest back and forth between two child processes.
    Pingpong {
        /// Number of hops.
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Milliseconds the guest runs on each side before the next hop.
        #[arg(long, default_value_t = 20)]
        run_ms: u64,
        /// Fault injection (to see the checks fail): the destination of this hop flips a byte
        /// of the RAM it received before starting the guest.
        #[arg(long)]
        corrupt_hop: Option<u32>,
        /// Fault injection (to see the progress check fail; software guest only): the
        /// destination of this hop loads the guest but never starts it; the next hop waits 2 s
        /// for progress and fails.
        #[arg(long)]
        stall_hop: Option<u32>,
        /// With --preflight: first migrate into a destination built differently on purpose
        /// (`ram`: 1 MiB more guest RAM; `device`: a second UART, COM2, the source lacks;
        /// `cpu:FEATURE[,…]`: the KVM vCPU lacks those CPUID features), which the preflight must
        /// refuse with the source still running.
        #[arg(long, value_parser = child::Mismatch::parse)]
        mismatch: Option<child::Mismatch>,
        /// Print each hop's critical path step by step (source: stop, last pages, devices,
        /// wait for LOADED, GO; destination: wait for GO, resume).
        #[arg(long, short)]
        verbose: bool,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// Run the guest for a while, then migrate it into a stream file (QEMU's format, RAM
    /// included: `analyze-migration.py -f FILE` decodes it).
    Save {
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Milliseconds the guest runs before the migration starts.
        #[arg(long, default_value_t = 50)]
        run_ms: u64,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// Run the guest for a while (or restore `--incremental-from BASE` and run it), then write
    /// a snapshot file: device state as a QEMU stream, guest memory at fixed offsets (sparse).
    Snapshot {
        /// Output file.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Milliseconds the guest runs before the snapshot.
        #[arg(long, default_value_t = 50)]
        run_ms: u64,
        /// Restore this snapshot, run the guest, and record only the pages dirtied since.
        #[arg(long)]
        incremental_from: Option<std::path::PathBuf>,
        /// Threads writing the pages (0 = up to 4, no more than the host's CPUs).
        #[arg(long, default_value_t = 0)]
        write_threads: usize,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// Restore a snapshot (memory mapped from the file) and start the guest; prints the time
    /// from main() entry to the guest running.
    Restore {
        /// The snapshot (an increment brings its bases).
        path: std::path::PathBuf,
        /// Check the restored memory, then run the guest and check it continued.
        #[arg(long)]
        check: bool,
        /// Read guest memory ahead in the background (MADV_WILLNEED).
        #[arg(long)]
        prefetch: bool,
        /// With --check: milliseconds the restored guest runs before the checks.
        #[arg(long, default_value_t = 50)]
        run_ms: u64,
        /// With --check: progress is also ok once the walk advanced by this many pages (default:
        /// a completed pass is required). For large sparse guests whose pass takes minutes.
        #[arg(long)]
        progress_pages: Option<u64>,
    },
    /// Fold an incremental snapshot and its bases into one full snapshot.
    SnapshotMerge {
        /// The increment.
        inc: std::path::PathBuf,
        /// The full snapshot to write.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// A child of `pingpong` (line protocol on stdin/stdout).
    Serve {
        #[command(flatten)]
        mode: ModeArgs,
    },
}

fn main() -> ExitCode {
    // The origin of `restore`'s timing: taken before anything else runs in main().
    let main_at = examples_devices::tinyvm::monotonic_ns();
    let cli = Cli::parse();
    let (name, mode) = match &cli.cmd {
        Cmd::Pingpong { mode, .. } => ("pingpong", mode),
        Cmd::Save { mode, .. } => ("save", mode),
        Cmd::Snapshot { mode, .. } => ("snapshot", mode),
        Cmd::Serve { mode } => ("serve", mode),
        Cmd::Restore {
            path,
            check,
            prefetch,
            run_ms,
            progress_pages,
        } => {
            return finish(
                "restore",
                snapshot::restore(path, main_at, *check, *prefetch, *run_ms, *progress_pages),
            )
        }
        Cmd::SnapshotMerge { inc, out } => {
            return finish("snapshot-merge", snapshot::merge(inc, out))
        }
    };
    let margs = *mode;
    let (mode, why) = match Mode::pick(mode.kvm, mode.soft) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("tinyvm {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.cmd {
        Cmd::Pingpong {
            count,
            run_ms,
            corrupt_hop,
            stall_hop,
            verbose,
            mismatch,
            ..
        } => driver::Pingpong {
            count,
            run_ms,
            corrupt_hop,
            stall_hop,
            verbose,
            mode,
            opts: margs.options(verbose),
            mismatch,
        }
        .command(&why),
        Cmd::Save { out, run_ms, .. } => {
            driver::save_with(mode, margs.options(false), &why, run_ms, &out).map(|()| true)
        }
        Cmd::Snapshot {
            out,
            run_ms,
            incremental_from,
            write_threads,
            ..
        } => snapshot::snapshot(
            &snapshot::SnapshotCmd {
                mode,
                workload: margs.options(false).workload,
                run_ms,
                out,
                incremental_from,
                write_threads,
            },
            &why,
        ),
        Cmd::Serve { .. } => child::serve(mode, margs.options(false)).map(|()| true),
        Cmd::Restore { .. } | Cmd::SnapshotMerge { .. } => unreachable!("dispatched above"),
    };
    finish(name, result)
}

/// The exit status of a command's result (its error on stderr).
fn finish(name: &str, result: Result<bool, String>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("tinyvm {name}: {e}");
            ExitCode::FAILURE
        }
    }
}
