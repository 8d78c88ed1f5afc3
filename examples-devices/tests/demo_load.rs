//! `vmstate-demo load` streams its input (issue 9): `/dev/zero`, a large random file and a
//! valid stream header followed by a large random body fail fast, with a clear one-line error,
//! in bounded memory; a stream for a machine type the demo does not know names it and the ones
//! it knows.
//!
//! Memory is bounded by running the binary under `ulimit -v` (an address-space limit of
//! [`LIMIT_KIB`], far below the input size): a loader that read the whole input would fail to
//! allocate (the old `std::fs::read` reported "out of memory") instead of reporting the stream
//! error. Time is bounded by killing the child after [`DEADLINE`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::stderr_of_failure;

mod common;

/// Address space the child may use: 64 MiB, half the size of the generated inputs.
const LIMIT_KIB: u64 = 64 * 1024;
/// Size of the generated inputs.
const INPUT_BYTES: usize = 128 << 20;
/// How long a failing load may take.
const DEADLINE: Duration = Duration::from_secs(20);

fn demo() -> &'static str {
    env!("CARGO_BIN_EXE_vmstate-demo")
}

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("demo-load-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// Runs `vmstate-demo load <file>` under the address-space limit; kills it after the deadline.
fn load_bounded(file: &Path) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" load \"$1\""))
        .arg(demo())
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vmstate-demo load {} still running after {DEADLINE:?}",
                file.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (out, start.elapsed())
}

/// Writes `prefix` then pseudo-random bytes up to [`INPUT_BYTES`].
fn random_file(name: &str, prefix: &[u8]) -> PathBuf {
    let p = tmp(name);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    f.write_all(prefix).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 16];
    let mut left = INPUT_BYTES - prefix.len();
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len());
        f.write_all(&block[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
    p
}

/// The load failed by itself (exit 1), quickly, with one line naming the file and the byte.
fn assert_fails_fast(file: &Path, out: &Output, took: Duration, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {err}", file.display());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("error: {}: at byte 0x", file.display())),
        "{err}"
    );
    assert!(err.contains(want), "{err}");
    assert!(!err.contains("out of memory"), "{err}");
    assert!(out.stdout.is_empty());
    assert!(took < DEADLINE, "{took:?}");
}

#[test]
fn dev_zero_fails_fast_in_bounded_memory() {
    let zero = Path::new("/dev/zero");
    assert!(zero.exists(), "/dev/zero is missing");
    let (out, took) = load_bounded(zero);
    assert_fails_fast(
        zero,
        &out,
        took,
        "not a QEMU migration stream: magic is 0x00000000",
    );
}

#[test]
fn large_random_files_fail_fast_in_bounded_memory() {
    // Random from the first byte: the magic is wrong.
    let f = random_file("random.bin", &[]);
    let (out, took) = load_bounded(&f);
    assert_fails_fast(&f, &out, took, "not a QEMU migration stream");
    std::fs::remove_file(&f).unwrap();

    // A valid header and configuration section, then random bytes: the stream loader reads
    // on, section by section, and stops at the first bad byte.
    let saved = tmp("saved.mig");
    let o = Command::new(demo())
        .args(["save", "--out"])
        .arg(&saved)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let bytes = std::fs::read(&saved).unwrap();
    // magic, version, 0x07, be32 length, name
    let name_len = u32::from_be_bytes(bytes[9..13].try_into().unwrap()) as usize;
    let header = &bytes[..13 + name_len];
    assert_eq!(&header[13..], b"pc-i440fx-7.2");
    let f = random_file("header-then-random.bin", header);
    let (out, took) = load_bounded(&f);
    assert_fails_fast(&f, &out, took, "");
    std::fs::remove_file(&f).unwrap();
}

#[test]
fn unknown_machine_type_is_named_with_the_known_ones() {
    let f = tmp("future.mig");
    let o = Command::new(demo())
        .args(["save", "--machine", "pc-i440fx-7.2", "--out"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut bytes = std::fs::read(&f).unwrap();
    // The configuration section names the machine type; make it one the catalog lacks.
    let at = bytes
        .windows(13)
        .position(|w| w == b"pc-i440fx-7.2")
        .unwrap();
    bytes[at..at + 13].copy_from_slice(b"pc-i440fx-9.9");
    std::fs::write(&f, &bytes).unwrap();
    let err = stderr_of_failure(Command::new(demo()).arg("load").arg(&f), 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "error: {}: the stream is for machine type `pc-i440fx-9.9`, which is not in this \
             demo's machine catalog; it knows pc-i440fx-{{2.2,2.3,",
            f.display()
        )),
        "{err}"
    );
    assert!(err.contains(",7.2} and pc-q35-{2.4,"), "{err}");
    // --machine names the option instead.
    let err = stderr_of_failure(
        Command::new(demo())
            .args(["load", "--machine", "pc-i440fx-1.0"])
            .arg(&f),
        1,
    );
    assert!(
        err.contains(
            "machine type `pc-i440fx-1.0` (--machine) is not in this demo's machine catalog; \
             it knows pc-i440fx-{2.2,"
        ),
        "{err}"
    );
}
