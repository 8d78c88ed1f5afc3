//! The parent side of `tinyvm pingpong`, and `tinyvm save`.
//!
//! [`Pingpong`] spawns two `tinyvm serve` children ([`child`](super::child)) on 127.0.0.1
//! ephemeral ports, starts the guest in one and migrates it live (precopy over loopback TCP,
//! `vmstate-migration`) N times, swapping roles every hop. Each hop first has the destination
//! build its VM (`PREPARE`), and only then lets the source start, so no setup is in the
//! downtime. After each hop it runs the checks of [`LEGEND`]: **memory** (the destination loaded
//! exactly the RAM the source stopped with: pattern state and hash), **devices** (the device
//! sections the destination loaded, saved again, hash equal to those the source sent),
//! **serial** (the output, concatenated over hops, is `A` then one `B` per completed pass) and
//! **progress** (the guest's walk advanced since the previous hop, waiting up to
//! [`PROGRESS_BOUND`] for it, or three times a pass at the dirty rate if that is longer, so a
//! guest starved of CPU is not a failure but a stalled one is).
//! A failed check is counted as an inconsistency and printed as `hop N: INCONSISTENT: …`.
//!
//! The downtime of a hop is measured across the two processes: the source's
//! [`monotonic_ns`](super::monotonic_ns) when it began to stop the guest, to the destination's
//! when its guest began to run, minus the destination's checks before the start (which a VMM
//! would not do). The summary gives its mean, p50, p99 and max; `--verbose` adds every hop's
//! critical path, step by step.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use vmstate_migration::transport::FileTransport;

use super::child::Options;
use super::guest::{check_output, PatternState};
use super::protocol::{number, output_bytes, parse_passes, parse_phases, Seen};
use super::Mode;

/// Word `i` of `w`.
fn word(w: &[String], i: usize) -> Result<&str, String> {
    w.get(i)
        .map(String::as_str)
        .ok_or_else(|| format!("field {i} missing in {w:?}"))
}

/// A `tinyvm serve` child process and its pipes.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Proc {
    /// Spawns this executable as `serve <mode>` and reads its `READY <port>` line.
    fn spawn(name: &'static str, mode: Mode, opts: Options) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut args = vec!["serve".to_owned(), mode.flag().to_owned()];
        args.extend(opts.workload.args());
        if let Some(b) = opts.bandwidth_limit {
            args.extend(["--bandwidth".to_owned(), b.to_string()]);
        }
        if opts.progress {
            args.push("--progress".to_owned());
        }
        if opts.preflight {
            args.push("--preflight".to_owned());
        }
        if opts.verify {
            args.push("--verify".to_owned());
        }
        if opts.integrity {
            args.push("--integrity".to_owned());
        }
        args.extend([
            "--channels".to_owned(),
            opts.channels.to_string(),
            "--max-passes".to_owned(),
            opts.max_passes.to_string(),
        ]);
        let mut child = Command::new(exe)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {name}: {e}"))?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut p = Proc {
            name,
            child,
            stdin,
            stdout,
            port: 0,
        };
        let ready = p.read()?;
        p.port = ready
            .strip_prefix("READY ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{name}: unexpected first line {ready:?}"))?;
        Ok(p)
    }

    fn send(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.stdin, "{line}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))
    }

    fn read(&mut self) -> Result<String, String> {
        let mut s = String::new();
        match self.stdout.read_line(&mut s) {
            Ok(0) => Err(format!("{}: exited", self.name)),
            Ok(_) => Ok(s.trim_end().to_owned()),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// Asks `STATUS` until the guest's walk has advanced past `prev`, for at most
    /// `bound`, appending its serial output to `output`. Returns the last status,
    /// how long it waited and whether the guest progressed.
    fn wait_for_progress(
        &mut self,
        prev: PatternState,
        output: &mut Vec<u8>,
        bound: Duration,
    ) -> Result<(Seen, Duration, bool), String> {
        let t0 = Instant::now();
        loop {
            let w = self.ask("STATUS", "STATUS")?;
            let seen = Seen::parse(&w)?;
            output.extend_from_slice(&output_bytes(w.get(3)));
            let waited = t0.elapsed();
            if seen.state.is_after(prev) || waited >= bound {
                return Ok((seen, waited, seen.state.is_after(prev)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn ask(&mut self, line: &str, want: &str) -> Result<Vec<String>, String> {
        self.send(line)?;
        self.answer(want)
    }

    /// The words of the next answer after its first, which must be `want`.
    fn answer(&mut self, want: &str) -> Result<Vec<String>, String> {
        let a = self.read()?;
        let mut w: Vec<String> = a.split(' ').map(str::to_owned).collect();
        if w.first().map(String::as_str) != Some(want) {
            return Err(format!("{}: {a}", self.name));
        }
        w.remove(0);
        Ok(w)
    }
}

/// How long a hop waits for the guest to make progress on its side before the guest counts as
/// stalled. On a loaded machine the guest may get no CPU for a while; a guest that stalls after a
/// migration still fails the hop, after this long.
pub const PROGRESS_BOUND: Duration = Duration::from_secs(2);

/// How long a hop waits for progress with workload `w`: [`PROGRESS_BOUND`], or three passes
/// at `w`'s dirty rate when that is longer (a large guest at a low rate takes a while per pass).
#[must_use]
pub fn progress_bound(w: super::guest::Workload) -> Duration {
    let pass = w.dirty_rate.map_or(Duration::ZERO, |r| {
        Duration::from_secs_f64(w.pattern_pages() as f64 / r.max(1) as f64)
    });
    PROGRESS_BOUND.max(pass * 3)
}

/// What a ping-pong run measured and found.
#[derive(Debug, Default)]
pub struct Stats {
    /// Downtime of each completed hop: the source beginning to stop the guest → the
    /// destination's guest running (both on this host's `CLOCK_MONOTONIC`), without the
    /// destination's checks before the start.
    pub downtimes: Vec<Duration>,
    /// The source's own downtime of each hop: stop → `GO` sent (QEMU's measure on the source).
    pub source_downtimes: Vec<Duration>,
    /// Total migration time of each completed hop.
    pub totals: Vec<Duration>,
    /// Bytes sent over all hops.
    pub bytes: u64,
    /// Failed checks.
    pub inconsistencies: u32,
}

/// The `p`-th percentile (0..=100) of `v` by the nearest-rank method, in milliseconds.
fn percentile_ms(v: &[Duration], p: usize) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted
        .get(rank - 1)
        .copied()
        .unwrap_or_default()
        .as_secs_f64()
        * 1e3
}

impl Stats {
    fn fail(&mut self, hop: u32, msg: &str) {
        self.inconsistencies += 1;
        println!("hop {hop}: INCONSISTENT: {msg}");
    }

    /// The `summary:` line.
    #[must_use]
    pub fn summary(&self, mode: Mode, count: u32, elapsed: Duration) -> String {
        let mean = |v: &[Duration]| {
            v.iter().sum::<Duration>().as_secs_f64() * 1e3 / (v.len().max(1) as f64)
        };
        let d = &self.downtimes;
        format!(
            "summary: mode {} hops {}/{count} inconsistencies {} downtime mean {:.2} ms p50 {:.2} ms p99 {:.2} ms max {:.2} ms (source side mean {:.2} ms)  hop time mean {:.1} ms max {:.1} ms  {} bytes  total {:.2} s",
            mode.name(),
            d.len(),
            self.inconsistencies,
            mean(d),
            percentile_ms(d, 50),
            percentile_ms(d, 99),
            percentile_ms(d, 100),
            mean(&self.source_downtimes),
            mean(&self.totals),
            percentile_ms(&self.totals, 100),
            self.bytes,
            elapsed.as_secs_f64()
        )
    }

    /// All `count` hops completed and every check passed.
    #[must_use]
    pub fn consistent(&self, count: u32) -> bool {
        self.inconsistencies == 0 && self.downtimes.len() == count as usize
    }
}

/// What the pingpong checks and measures, printed before the first hop.
pub const LEGEND: &str = "\
after every hop (a failed check prints `hop N: INCONSISTENT: ...` and is counted):
  memory    the destination's guest RAM, checked before its guest starts, has exactly the
            source's RAM at the stop: the same pattern state (passes, pages) and RAM hash
  devices   the destination's device sections (vCPU, UART) as loaded, saved again, hash
            equal to the sections the source sent
  serial    the serial output of all hops so far is 'A', then one 'B' per completed pass:
            nothing lost, nothing printed twice
  progress  the guest's walk advanced where it arrived before it leaves again (waiting up to
            2 s of wall time for CPU, or 3 guest passes at a --dirty-rate if longer) and the
            source stopped it no earlier than that
numbers: passes = precopy passes over RAM; total = migration start -> source done;
  downtime = the source beginning to stop the guest -> the destination's guest running
  (CLOCK_MONOTONIC of this host), without the destination's checks; `--verbose` splits it
  and shows every precopy pass (pages, zero pages, bandwidth, pages dirtied meanwhile, the
  expected downtime, the auto-converge throttle) and whether the hop converged";

/// A `tinyvm pingpong` run.
#[derive(Debug, Clone)]
pub struct Pingpong {
    /// Number of hops.
    pub count: u32,
    /// Milliseconds the guest runs on each side before the next hop.
    pub run_ms: u64,
    /// Fault injection: the destination of this hop flips a byte of the RAM it received (to
    /// see the checks fail).
    pub corrupt_hop: Option<u32>,
    /// Fault injection (software guest): the destination of this hop never starts the guest
    /// (to see the progress check fail on the next hop).
    pub stall_hop: Option<u32>,
    /// Print the critical path of every hop, step by step, and its precopy passes.
    pub verbose: bool,
    /// The guest.
    pub mode: Mode,
    /// What the children run (workload, bandwidth limit, progress lines).
    pub opts: Options,
    /// With preflight: before the first hop, a migration into a destination built with this
    /// difference, which the preflight must refuse with the source's guest still running.
    pub mismatch: Option<super::child::Mismatch>,
}

/// A migration from A into B built with `m` on purpose: the preflight must refuse it, B must
/// stay empty and A's guest must keep running. Prints what was refused and how long it took.
/// `Ok(false)` (counted as an inconsistency) when the migration was not refused.
fn preflight_refusal(
    procs: &mut [Proc; 2],
    m: &super::child::Mismatch,
    st: &mut Stats,
    bound: Duration,
    output: &mut Vec<u8>,
) -> Result<bool, String> {
    let status = procs[0].ask("STATUS", "STATUS")?;
    output.extend_from_slice(&output_bytes(status.get(3)));
    let before = Seen::parse(&status)?.state;
    procs[1].ask(&format!("PREPARE mismatch={}", m.word()), "PREPARED")?;
    let port = procs[1].port;
    procs[1].send("RECV")?;
    let t0 = Instant::now();
    procs[0].send(&format!("SEND {port}"))?;
    let sent = procs[0].answer("SENT");
    let took = t0.elapsed();
    let recv = procs[1].answer("RECEIVED");
    let why = match (&sent, &recv) {
        (Err(s), Err(_)) if s.contains("preflight") => s.clone(),
        _ => {
            st.fail(
                0,
                &format!(
                    "preflight: a destination built with mismatch `{}` was not refused: source \
                     {sent:?}, destination {recv:?}",
                    m.word()
                ),
            );
            return Ok(false);
        }
    };
    println!(
        "preflight (--mismatch {}): refused after {:.2} ms, before any guest state moved: {why}",
        m.word(),
        took.as_secs_f64() * 1e3
    );
    // The source's guest never stopped: it keeps going.
    let (seen, waited, progressed) = procs[0].wait_for_progress(before, output, bound)?;
    if progressed {
        println!(
            "preflight: A's guest kept running (pass {}, +{} pages)",
            seen.state.passes, seen.state.pages_done
        );
    } else {
        st.fail(
            0,
            &format!(
                "preflight: the source's guest made no progress in {:.0} ms after the refusal",
                waited.as_secs_f64() * 1e3
            ),
        );
    }
    Ok(true)
}

/// One precopy pass as a `--verbose` line.
fn pass_line(p: &vmstate_migration::PassStats) -> String {
    format!(
        "  pass {}: {} pages ({} zero) in {:.1} ms  {:.1} MiB/s  dirtied meanwhile {} pages ({:.0} pages/s)  expected downtime {:.2} ms  throttle {}%",
        p.pass,
        p.pages,
        p.zero_pages,
        p.duration.as_secs_f64() * 1e3,
        p.bandwidth / f64::from(1u32 << 20),
        p.dirty_left,
        p.dirty_rate,
        p.expected_downtime.as_secs_f64() * 1e3,
        p.throttle
    )
}

/// Microseconds as milliseconds, for printing.
fn ms(us: u64) -> f64 {
    us as f64 / 1e3
}

/// The critical path of a hop as one line: the source's steps, the destination's, the checks
/// left out of the downtime, and the preparation done before it.
fn critical_path_line(
    src: &[(String, u64)],
    dst: &[(String, u64)],
    check_us: u64,
    prepare_us: u64,
) -> String {
    let steps = |v: &[(String, u64)]| -> String {
        v.iter()
            .map(|(n, us)| format!("{n} {:.3}", ms(*us)))
            .collect::<Vec<_>>()
            .join("  ")
    };
    format!(
        "  critical path (ms): source: {}  | destination: {}  | checks before start {:.3} (not counted)  | prepared beforehand in {:.1}",
        steps(src),
        steps(dst),
        ms(check_us),
        ms(prepare_us)
    )
}

impl Pingpong {
    /// `tinyvm pingpong`: prints the header line (`why`: how the mode was chosen), what the
    /// checks and numbers are, the hops and the summary; `Ok(true)` when every hop completed and
    /// every check passed.
    ///
    /// # Errors
    ///
    /// As [`Pingpong::run`].
    pub fn command(&self, why: &str) -> Result<bool, String> {
        let w = self.opts.workload;
        println!(
            "tinyvm pingpong: {} hops, {why}, {} MiB of guest RAM, dirty rate {}{}",
            self.count,
            w.ram_size >> 20,
            w.dirty_rate
                .map_or_else(|| "max".to_owned(), |r| format!("{r} pages/s")),
            self.opts
                .bandwidth_limit
                .map_or_else(String::new, |b| format!(", bandwidth limit {b} B/s"))
        );
        println!("{LEGEND}");
        let t0 = Instant::now();
        let st = self.run()?;
        println!("{}", st.summary(self.mode, self.count, t0.elapsed()));
        Ok(st.consistent(self.count))
    }

    /// Runs the hops and prints a line per hop. A failed migration ends the run early,
    /// counted as an inconsistency.
    ///
    /// # Errors
    ///
    /// A child cannot be spawned or talked to, or answers something malformed.
    pub fn run(&self) -> Result<Stats, String> {
        let Pingpong {
            count,
            run_ms,
            corrupt_hop,
            stall_hop,
            verbose,
            mode,
            opts,
            ref mismatch,
        } = *self;
        let mut procs = [Proc::spawn("A", mode, opts)?, Proc::spawn("B", mode, opts)?];
        let bound = progress_bound(opts.workload);
        let target = super::settings(None).downtime;
        println!(
            "children: A on 127.0.0.1:{}, B on 127.0.0.1:{}",
            procs[0].port, procs[1].port
        );
        procs[0].ask("START", "OK")?;
        let mut st = Stats::default();
        let mut output: Vec<u8> = Vec::new();
        if let Some(m) = mismatch {
            if !opts.preflight {
                return Err("--mismatch needs --preflight".into());
            }
            if !preflight_refusal(&mut procs, m, &mut st, bound, &mut output)? {
                return Ok(st);
            }
        }
        let mut last: Option<PatternState> = None;
        let mut holder = 0usize;
        for hop in 1..=count {
            std::thread::sleep(Duration::from_millis(run_ms));
            let (src, dst) = (holder, 1 - holder);
            // The guest must have run on this side since it arrived: wait for its walk to advance.
            let mut progress_ok = true;
            if let Some(prev) = last {
                let (seen, waited, progressed) =
                    procs[src].wait_for_progress(prev, &mut output, bound)?;
                if !progressed {
                    progress_ok = false;
                    st.fail(
                        hop,
                        &format!(
                            "the guest made no progress in {:.0} ms since the last hop: {prev:?} -> {seen:?}",
                            waited.as_secs_f64() * 1e3
                        ),
                    );
                }
            }
            // The destination is ready (VM, memory, vCPU, devices) before the source may stop.
            let mut prepare = String::from("PREPARE");
            if corrupt_hop == Some(hop) {
                prepare.push_str(" corrupt");
            }
            if stall_hop == Some(hop) {
                prepare.push_str(" stall");
            }
            let prepared = procs[dst].ask(&prepare, "PREPARED");
            let prepare_us = match prepared {
                Ok(w) => number(&w, 0)?,
                Err(e) => {
                    st.fail(hop, &format!("preparing the destination: {e}"));
                    return Ok(st);
                }
            };
            let port = procs[dst].port;
            procs[dst].send("RECV")?;
            procs[src].send(&format!("SEND {port}"))?;
            let sent = procs[src].answer("SENT");
            let recv = procs[dst].answer("RECEIVED");
            let (sent, recv) = match (sent, recv) {
                (Ok(s), Ok(r)) => (s, r),
                (s, r) => {
                    st.fail(
                        hop,
                        &format!("migration failed: source {s:?}, destination {r:?}"),
                    );
                    return Ok(st);
                }
            };
            // SENT <bytes> <passes> <downtime µs> <total µs> <stop at> <steps> <passes> <final>
            // RECEIVED <seen:3> <devices> <bytes> <run at> <check µs> <steps>
            // INSPECTED <seen:3> <devices> <output>
            let stopped = procs[src].ask("INSPECT", "INSPECTED")?;
            let s_seen = Seen::parse(&stopped)?;
            let r_seen = Seen::parse(&recv)?;
            let (s_dev, r_dev) = (word(&stopped, 3)?, word(&recv, 3)?);
            let (bytes, passes) = (number(&sent, 0)?, number(&sent, 1)?);
            let source_down = Duration::from_micros(number(&sent, 2)?);
            let total = Duration::from_micros(number(&sent, 3)?);
            let (stop_at, run_at) = (number(&sent, 4)?, number(&recv, 5)?);
            let check_us = number(&recv, 6)?;
            let down = Duration::from_nanos(
                run_at
                    .saturating_sub(stop_at)
                    .saturating_sub(check_us * 1000),
            );
            output.extend_from_slice(&output_bytes(stopped.get(4)));
            let memory_ok = s_seen == r_seen;
            if !memory_ok {
                st.fail(
                    hop,
                    &format!("memory: destination loaded {r_seen:?}, source stopped at {s_seen:?}"),
                );
            }
            let devices_ok = s_dev == r_dev;
            if !devices_ok {
                st.fail(
                    hop,
                    &format!(
                        "devices: the destination's sections hash {r_dev}, the source sent {s_dev}"
                    ),
                );
            }
            if number(&recv, 4)? != bytes {
                st.fail(
                    hop,
                    &format!("{bytes} bytes sent, {} received", number(&recv, 4)?),
                );
            }
            if let Some(prev) = last {
                if progress_ok && !s_seen.state.is_after(prev) {
                    progress_ok = false;
                    st.fail(
                        hop,
                        &format!(
                            "the source stopped the guest behind the progress it reported: {prev:?} -> {s_seen:?}"
                        ),
                    );
                }
            }
            let serial = match check_output(&output, true, 0, s_seen.state) {
                Ok(bs) => format!("ok (A + {bs} B)"),
                Err(e) => {
                    st.fail(hop, &format!("serial output: {e}"));
                    "FAILED".to_owned()
                }
            };
            last = Some(s_seen.state);
            st.downtimes.push(down);
            st.source_downtimes.push(source_down);
            st.totals.push(total);
            st.bytes += bytes;
            let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
            println!(
                "hop {hop}/{count}: {} -> {}  {passes} pass{}  {bytes} bytes  total {:.1} ms  downtime {:.2} ms  checks: memory {}, devices {}, serial {serial}, progress {} (pass {}, +{} pages)",
                procs[src].name,
                procs[dst].name,
                if passes == 1 { "" } else { "es" },
                total.as_secs_f64() * 1e3,
                down.as_secs_f64() * 1e3,
                verdict(memory_ok),
                verdict(devices_ok),
                verdict(progress_ok),
                s_seen.state.passes,
                s_seen.state.pages_done,
            );
            if verbose {
                let passes = parse_passes(sent.get(6))?;
                for p in &passes {
                    println!("{}", pass_line(p));
                }
                if let Some(p) = passes.last() {
                    if p.expected_downtime <= target {
                        println!(
                            "  converged after {} pass{}: expected downtime {:.2} ms <= target {} ms{}",
                            passes.len(),
                            if passes.len() == 1 { "" } else { "es" },
                            p.expected_downtime.as_secs_f64() * 1e3,
                            target.as_millis(),
                            if p.throttle > 0 {
                                format!(" (auto-converge: guest throttled {}%)", p.throttle)
                            } else {
                                String::new()
                            }
                        );
                    } else {
                        println!(
                            "  did not converge: stopped after {} passes, expected downtime {:.2} ms > target {} ms (throttle {}%)",
                            passes.len(),
                            p.expected_downtime.as_secs_f64() * 1e3,
                            target.as_millis(),
                            p.throttle
                        );
                    }
                }
                let (pages, zero) = word(&sent, 7)?.split_once(':').unwrap_or(("?", "?"));
                println!("  stopped: {pages} pages ({zero} zero) sent during the downtime");
                println!(
                    "{}",
                    critical_path_line(
                        &parse_phases(sent.get(5))?,
                        &parse_phases(recv.get(7))?,
                        check_us,
                        prepare_us
                    )
                );
            }
            holder = dst;
        }
        // The guest keeps running after the last hop, and its output continues.
        std::thread::sleep(Duration::from_millis(run_ms.max(20)));
        let seen = match last {
            Some(prev) => {
                let (seen, waited, progressed) =
                    procs[holder].wait_for_progress(prev, &mut output, bound)?;
                if !progressed {
                    st.fail(
                        count + 1,
                        &format!(
                            "the guest made no progress in {:.0} ms after the last hop: {prev:?} -> {seen:?}",
                            waited.as_secs_f64() * 1e3
                        ),
                    );
                }
                seen
            }
            None => {
                let w = procs[holder].ask("STATUS", "STATUS")?;
                output.extend_from_slice(&output_bytes(w.get(3)));
                Seen::parse(&w)?
            }
        };
        match check_output(&output, true, 0, seen.state) {
            Ok(bs) => println!(
                "after the last hop: {} runs the guest, pass {}, serial: A + {bs} B",
                procs[holder].name, seen.state.passes
            ),
            Err(e) => st.fail(count + 1, &format!("serial output: {e}")),
        }
        for p in &mut procs {
            let _ = p.send("QUIT");
        }
        for p in &mut procs {
            let _ = p.child.wait();
        }
        Ok(st)
    }
}

/// `tinyvm save`: runs a guest for `run_ms`, then migrates it into the file `out` (QEMU's
/// stream format, RAM included, with the configuration manifest in the vmdesc) and prints what
/// it wrote (`why`: how the mode was chosen).
///
/// # Errors
///
/// The guest cannot be started, the file cannot be created, or the migration fails.
pub fn save(mode: Mode, why: &str, run_ms: u64, out: &Path) -> Result<(), String> {
    save_with(mode, Options::default(), why, run_ms, out)
}

/// [`save`] of a guest running `opts` (its workload; the bandwidth limit of the migration).
///
/// # Errors
///
/// As [`save`].
pub fn save_with(
    mode: Mode,
    opts: Options,
    why: &str,
    run_ms: u64,
    out: &Path,
) -> Result<(), String> {
    // The file carries the configuration manifest (in its vmdesc) for a later load to check.
    let opts = Options {
        preflight: true,
        ..opts
    };
    let mut c = super::child::Child::new(mode, opts)?;
    c.start()?;
    std::thread::sleep(Duration::from_millis(run_ms));
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    c.send_over(&mut FileTransport(file))?;
    let len = std::fs::metadata(out).map_or(0, |m| m.len());
    println!("tinyvm save: {why}: wrote {} ({len} bytes)", out.display());
    Ok(())
}
