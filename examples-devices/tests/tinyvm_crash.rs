//! Who broke, with real processes: the source VMM is killed (SIGKILL) in the middle of a live
//! migration. The destination (another `tinyvm serve` process) must notice at once — the kernel
//! closed the dead process's socket, no timeout involved — and say the source or the network went
//! away, where the stream stopped (byte offset and section), that nothing was applied, and not
//! start a guest.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Proc {
    /// A `tinyvm serve --soft` child with a 64 MiB guest that dirties memory as fast as it can
    /// (every page holds a counter soon after the start) and whose migrations are limited to
    /// 8 MB/s (so the first pass takes 8 s and can be interrupted); reads its `READY <port>`.
    fn spawn() -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tinyvm"))
            .args([
                "serve",
                "--soft",
                "--mem",
                &(64u64 << 20).to_string(),
                "--dirty-rate",
                "max",
                "--bandwidth",
                "8000000",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tinyvm serve");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut p = Proc {
            child,
            stdin,
            stdout,
            port: 0,
        };
        let ready = p.read();
        p.port = ready
            .strip_prefix("READY ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {ready:?}"));
        p
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn read(&mut self) -> String {
        let mut s = String::new();
        self.stdout.read_line(&mut s).unwrap();
        s.trim_end().to_owned()
    }

    fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.read()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_source_killed_mid_stream_is_reported_by_the_destination_at_once() {
    let mut src = Proc::spawn();
    let mut dst = Proc::spawn();
    assert_eq!(src.ask("START"), "OK");
    // The guest runs and writes every page (none is a zero page then).
    std::thread::sleep(Duration::from_millis(500));
    assert!(dst.ask("PREPARE").starts_with("PREPARED "));
    dst.send("RECV");
    src.send(&format!("SEND {}", dst.port));
    // 64 MiB at 8 MB/s: the first pass alone takes about 8 s; kill the source inside it.
    std::thread::sleep(Duration::from_millis(700));
    let killed = Instant::now();
    src.child.kill().expect("SIGKILL the source");
    let status = src.child.wait().unwrap();
    assert!(!status.success());
    let answer = dst.read();
    let noticed = killed.elapsed();
    eprintln!("destination after {noticed:?}: {answer}");
    let msg = answer
        .strip_prefix("FAIL ")
        .unwrap_or_else(|| panic!("the destination did not fail: {answer}"));
    assert!(
        msg.contains("the source or the network went away: the stream ended at byte 0x"),
        "{msg}"
    );
    assert!(msg.contains("in section `ram` instance 0"), "{msg}");
    assert!(msg.contains("nothing was applied here"), "{msg}");
    // Noticed through the closed connection, not by its 30 s read timeout.
    assert!(noticed < Duration::from_secs(10), "{noticed:?}");
    // The destination has no guest running: it holds nothing to inspect.
    let status = dst.ask("STATUS");
    assert!(status.starts_with("FAIL"), "{status}");
}
