//! The parent side of `tinyvm pingpong`, and `tinyvm save`.
//!
//! [`Pingpong`] spawns two `tinyvm serve` children ([`child`](super::child)) on 127.0.0.1
//! ephemeral ports, starts the guest in one and migrates it live (precopy over loopback TCP,
//! `vmstate-migration`) N times, swapping roles every hop. After each hop it checks that the
//! destination loaded exactly the memory the source stopped with (pattern state and hash), that
//! the guest made progress since the previous hop (waiting up to [`PROGRESS_BOUND`] for it, so a
//! guest starved of CPU is not a failure but a stalled one is), and that the serial output, concatenated over
//! hops, is `A` then only `B`s, as many as the pattern's passes. A failed check is counted as an
//! inconsistency and printed as `hop N: INCONSISTENT: …`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use vmstate_migration::transport::FileTransport;

use super::guest::{check_output, PatternState};
use super::protocol::{number, output_bytes, Seen};
use super::Mode;

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
    fn spawn(name: &'static str, mode: Mode) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(["serve", mode.flag()])
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

    /// Asks `STATUS` until the guest has completed a pass after `prev`, for at most
    /// [`PROGRESS_BOUND`], appending its serial output to `output`. Returns the last status,
    /// how long it waited and whether the guest progressed.
    fn wait_for_progress(
        &mut self,
        prev: PatternState,
        output: &mut Vec<u8>,
    ) -> Result<(Seen, Duration, bool), String> {
        let t0 = Instant::now();
        loop {
            let w = self.ask("STATUS", "STATUS")?;
            let seen = Seen::parse(&w)?;
            output.extend_from_slice(&output_bytes(w.get(3)));
            let waited = t0.elapsed();
            if seen.state.passes > prev.passes || waited >= PROGRESS_BOUND {
                return Ok((seen, waited, seen.state.passes > prev.passes));
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

/// What a ping-pong run measured and found.
#[derive(Debug, Default)]
pub struct Stats {
    /// Downtime of each completed hop.
    pub downtimes: Vec<Duration>,
    /// Total migration time of each completed hop.
    pub totals: Vec<Duration>,
    /// Bytes sent over all hops.
    pub bytes: u64,
    /// Failed checks.
    pub inconsistencies: u32,
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
        let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3;
        format!(
            "summary: mode {} hops {}/{count} inconsistencies {} downtime mean {:.2} ms max {:.2} ms  hop time mean {:.1} ms max {:.1} ms  {} bytes  total {:.2} s",
            mode.name(),
            self.downtimes.len(),
            self.inconsistencies,
            mean(&self.downtimes),
            max(&self.downtimes),
            mean(&self.totals),
            max(&self.totals),
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

/// A `tinyvm pingpong` run.
#[derive(Debug, Clone, Copy)]
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
    /// The guest.
    pub mode: Mode,
}

impl Pingpong {
    /// `tinyvm pingpong`: prints the header line (`why`: how the mode was chosen), the hops
    /// and the summary; `Ok(true)` when every hop completed and every check passed.
    ///
    /// # Errors
    ///
    /// As [`Pingpong::run`].
    pub fn command(&self, why: &str) -> Result<bool, String> {
        println!("tinyvm pingpong: {} hops, {why}", self.count);
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
            mode,
        } = *self;
        let mut procs = [Proc::spawn("A", mode)?, Proc::spawn("B", mode)?];
        println!(
            "children: A on 127.0.0.1:{}, B on 127.0.0.1:{}",
            procs[0].port, procs[1].port
        );
        procs[0].ask("START", "OK")?;
        let mut st = Stats::default();
        let mut output: Vec<u8> = Vec::new();
        let mut last: Option<PatternState> = None;
        let mut holder = 0usize;
        for hop in 1..=count {
            std::thread::sleep(Duration::from_millis(run_ms));
            let (src, dst) = (holder, 1 - holder);
            // The guest must have run on this side since it arrived: wait for a completed pass.
            let mut stalled = false;
            if let Some(prev) = last {
                let (seen, waited, progressed) = procs[src].wait_for_progress(prev, &mut output)?;
                if !progressed {
                    stalled = true;
                    st.fail(
                        hop,
                        &format!(
                            "the guest made no progress in {:.0} ms since the last hop: {prev:?} -> {seen:?}",
                            waited.as_secs_f64() * 1e3
                        ),
                    );
                }
            }
            let port = procs[dst].port;
            let mut recv = String::from("RECV");
            if corrupt_hop == Some(hop) {
                recv.push_str(" corrupt");
            }
            if stall_hop == Some(hop) {
                recv.push_str(" stall");
            }
            procs[dst].send(&recv)?;
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
            let s_seen = Seen::parse(&sent)?;
            let r_seen = Seen::parse(&recv)?;
            let (bytes, passes, down, total) = (
                number(&sent, 3)?,
                number(&sent, 4)?,
                Duration::from_micros(number(&sent, 5)?),
                Duration::from_micros(number(&sent, 6)?),
            );
            output.extend_from_slice(&output_bytes(sent.get(7)));
            if s_seen != r_seen {
                st.fail(
                    hop,
                    &format!("destination loaded {r_seen:?}, source stopped at {s_seen:?}"),
                );
            }
            if number(&recv, 3)? != bytes {
                st.fail(
                    hop,
                    &format!("{bytes} bytes sent, {} received", number(&recv, 3)?),
                );
            }
            if let Some(prev) = last {
                if !stalled && s_seen.state.passes <= prev.passes {
                    st.fail(
                        hop,
                        &format!(
                            "the source stopped the guest behind the progress it reported: {prev:?} -> {s_seen:?}"
                        ),
                    );
                }
            }
            let bs = match check_output(&output, true, 0, s_seen.state) {
                Ok(bs) => bs,
                Err(e) => {
                    st.fail(hop, &format!("serial output: {e}"));
                    0
                }
            };
            last = Some(s_seen.state);
            st.downtimes.push(down);
            st.totals.push(total);
            st.bytes += bytes;
            println!(
                "hop {hop}/{count}: {} -> {}  passes {passes}  {bytes} bytes  total {:.1} ms  downtime {:.2} ms  guest pass {} (+{} pages)  serial: A + {bs} B",
                procs[src].name,
                procs[dst].name,
                total.as_secs_f64() * 1e3,
                down.as_secs_f64() * 1e3,
                s_seen.state.passes,
                s_seen.state.pages_done,
            );
            holder = dst;
        }
        // The guest keeps running after the last hop, and its output continues.
        std::thread::sleep(Duration::from_millis(run_ms.max(20)));
        let seen = match last {
            Some(prev) => {
                let (seen, waited, progressed) =
                    procs[holder].wait_for_progress(prev, &mut output)?;
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
/// stream format, RAM included) and prints what it wrote (`why`: how the mode was chosen).
///
/// # Errors
///
/// The guest cannot be started, the file cannot be created, or the migration fails.
pub fn save(mode: Mode, why: &str, run_ms: u64, out: &Path) -> Result<(), String> {
    let mut c = super::child::Child::new(mode)?;
    c.start()?;
    std::thread::sleep(Duration::from_millis(run_ms));
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    c.send_over(&mut FileTransport(file))?;
    let len = std::fs::metadata(out).map_or(0, |m| m.len());
    println!("tinyvm save: {why}: wrote {} ({len} bytes)", out.display());
    Ok(())
}
