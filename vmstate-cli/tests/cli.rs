//! The `vmstate` binary, run as a user runs it: `analyze` against `analyze-migration.py`'s
//! committed output, bounded memory and time on hostile and huge inputs, `diff` on two demo
//! machines one port write apart, `explain` on a corrupted subsection name.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use examples_devices::machine::{io, DemoMachine};
use vmstate_cli::{EXIT_ERROR, EXIT_FOUND, EXIT_OK};
use vmstate_runtime::machine::Framing;
use vmstate_runtime::ram::{FLAG_CONTINUE, FLAG_EOS, FLAG_MEM_SIZE, FLAG_PAGE};
use vmstate_runtime::stream::StreamWriter;
use vmstate_runtime::{IoWriter, Writer};

/// Address space the child may use under `ulimit -v`: 64 MiB.
const LIMIT_KIB: u64 = 64 * 1024;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_vmstate")
}

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/qemu72")
}

fn tmp(name: &str) -> PathBuf {
    let d =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("vmstate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn code(o: &Output) -> u8 {
    u8::try_from(o.status.code().expect("exited")).unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// JSON text with its whitespace normalised (parsed and printed compactly, key order kept).
fn normalised(text: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(text).expect("JSON");
    serde_json::to_string(&v).unwrap()
}

/// Runs `vmstate ARGS` under the address-space limit; kills it after `deadline`.
fn run_bounded(args: &[&str], deadline: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {LIMIT_KIB} && exec \"$0\" \"$@\""))
        .arg(bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vmstate {args:?} still running after {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    (out, start.elapsed())
}

/// The golden QEMU 7.2 streams that have a vmdesc (and so the script's output next to them).
fn golden_with_vmdesc() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(golden())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mig"))
        .filter(|p| p.with_extension("state.json").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 10, "golden streams: {v:?}");
    v
}

#[test]
fn analyze_prints_what_the_script_printed_for_every_golden_stream() {
    for mig in golden_with_vmdesc() {
        for (dump, ext) in [("state", "state.json"), ("desc", "desc.json")] {
            let o = run(&["analyze", "--dump", dump, mig.to_str().unwrap()]);
            assert_eq!(code(&o), EXIT_OK, "{}: {}", mig.display(), stderr(&o));
            let want = std::fs::read(mig.with_extension(ext)).unwrap();
            assert_eq!(
                normalised(&o.stdout),
                normalised(&want),
                "{} -d {dump}",
                mig.display()
            );
            // The script's own layout (indent 4, `", "` / `": "` separators), byte for byte.
            assert_eq!(
                stdout(&o).trim_end(),
                String::from_utf8(want).unwrap().trim_end()
            );
        }
    }
}

#[test]
fn analyze_without_vmdesc_is_a_one_line_tool_error() {
    let mig = golden().join("machine-pc-i440fx-2.2.mig");
    let o = run(&["analyze", mig.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_ERROR);
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(
        e.contains("no vmdesc") && e.contains("machine-pc-i440fx-2.2.mig"),
        "{e}"
    );
    assert!(o.stdout.is_empty());
}

/// The demo machine after its guest program, saved for pc-i440fx-7.2.
fn demo_machine() -> DemoMachine {
    let mt = examples_devices::catalog()
        .resolve("pc-i440fx-7.2")
        .unwrap();
    let vm = DemoMachine::new(&mt).unwrap();
    vm.run_guest_program();
    vm
}

fn save(vm: &DemoMachine, name: &str) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, vm.save().unwrap().0).unwrap();
    p
}

#[test]
fn analyze_decodes_demo_streams() {
    let p = save(&demo_machine(), "demo.mig");
    let o = run(&["analyze", p.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_OK, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert!(v.get("serial (2)").is_some() || keys.iter().any(|k| k.starts_with("serial (")));
}

// ---- bounded memory and time ----

/// Hostile inputs fail in well under a second, in 64 MiB of address space.
const FAST: Duration = Duration::from_secs(1);

fn assert_fails_fast(args: &[&str], what: &str) {
    let (o, took) = run_bounded(args, Duration::from_secs(20));
    assert_eq!(code(&o), EXIT_ERROR, "{what}: {}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{what}: {e}");
    assert!(e.starts_with("error: "), "{e}");
    assert!(took < FAST, "{what} took {took:?}");
}

#[test]
fn dev_zero_fails_fast_in_bounded_memory() {
    for cmd in ["analyze", "explain"] {
        let (o, took) = run_bounded(&[cmd, "/dev/zero"], Duration::from_secs(20));
        let e = stdout(&o) + &stderr(&o);
        assert!(e.contains("not a QEMU migration stream"), "{cmd}: {e}");
        assert!(e.contains("at byte 0x0"), "{cmd}: {e}");
        assert!(took < FAST, "{cmd} /dev/zero took {took:?}");
    }
    assert_fails_fast(&["analyze", "/dev/zero"], "analyze /dev/zero");
    assert_fails_fast(&["diff", "/dev/zero", "/dev/zero"], "diff /dev/zero");
}

/// A 1 GiB file (sparse: its first and last MiB are pseudo-random, the rest reads as zeros) —
/// the tool reads only its head and the vmdesc window at its end.
fn big_file(name: &str, head: &[u8]) -> PathBuf {
    let p = tmp(name);
    let mut f = std::fs::File::create(&p).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for c in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
    }
    block[..head.len()].copy_from_slice(head);
    f.write_all(&block).unwrap();
    f.set_len(1 << 30).unwrap();
    use std::io::{Seek, SeekFrom};
    f.seek(SeekFrom::Start((1 << 30) - block.len() as u64))
        .unwrap();
    f.write_all(&block[head.len()..]).unwrap();
    f.write_all(&block[..head.len()]).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 30);
    p
}

#[test]
fn gigabyte_random_file_fails_fast_in_bounded_memory() {
    let random = big_file("random-1g", b"");
    assert_fails_fast(&["analyze", random.to_str().unwrap()], "1 GiB random");
    // A valid header: the vmdesc window at the end is read (and has no vmdesc), nothing else.
    let header = big_file(
        "header-1g",
        b"QEVM\0\0\0\x03\x07\x00\x00\x00\x0dpc-i440fx-7.2",
    );
    assert_fails_fast(
        &["analyze", header.to_str().unwrap()],
        "1 GiB with a header",
    );
    let (o, took) = run_bounded(
        &["explain", header.to_str().unwrap()],
        Duration::from_secs(20),
    );
    assert_eq!(code(&o), EXIT_FOUND, "{}", stderr(&o));
    assert!(took < FAST, "explain took {took:?}");
    assert!(stdout(&o).contains("offset:"), "{}", stdout(&o));
    let _ = std::fs::remove_file(random);
    let _ = std::fs::remove_file(header);
}

/// A valid stream larger than the child's address space: a RAM section of `pages` pages and one
/// device section, with a vmdesc.
fn huge_stream(pages: u64) -> PathBuf {
    let p = tmp("huge.mig");
    let f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
    let framing = Framing {
        configuration: false,
        footers: true,
        vmdesc: true,
    };
    let mut s = StreamWriter::new(IoWriter::new(f), framing);
    s.header().unwrap();
    let total = pages * 4096;
    s.start_header(0, "ram", 0, 4).unwrap();
    let w = s.payload();
    w.write_all(&(total | FLAG_MEM_SIZE).to_be_bytes()).unwrap();
    w.write_all(&[6]).unwrap();
    w.write_all(b"pc.ram").unwrap();
    w.write_all(&total.to_be_bytes()).unwrap();
    w.write_all(&FLAG_EOS.to_be_bytes()).unwrap();
    s.footer(0).unwrap();
    s.chunk_header(0, true).unwrap();
    let page = vec![0xa5u8; 4096];
    for i in 0..pages {
        let w = s.payload();
        if i == 0 {
            w.write_all(&FLAG_PAGE.to_be_bytes()).unwrap();
            w.write_all(&[6]).unwrap();
            w.write_all(b"pc.ram").unwrap();
        } else {
            w.write_all(&((i * 4096) | FLAG_PAGE | FLAG_CONTINUE).to_be_bytes())
                .unwrap();
        }
        w.write_all(&page).unwrap();
    }
    s.payload().write_all(&FLAG_EOS.to_be_bytes()).unwrap();
    s.footer(0).unwrap();
    s.full_header(1, "dev", 0, 1).unwrap();
    s.payload().write_all(&42u32.to_be_bytes()).unwrap();
    s.footer(1).unwrap();
    s.eof().unwrap();
    s.vmdesc(
        r#"{"page_size": 4096, "devices": [{"name": "dev", "instance_id": 0, "vmsd_name": "dev", "version": 1, "fields": [{"name": "x", "type": "uint32", "size": 4}]}]}"#,
    )
    .unwrap();
    drop(s);
    p
}

#[test]
fn stream_larger_than_the_address_space_is_streamed() {
    // 96 MiB of pages, under a 64 MiB address-space limit.
    let p = huge_stream(96 * 256);
    assert!(std::fs::metadata(&p).unwrap().len() > LIMIT_KIB * 1024);
    let (o, _) = run_bounded(&["analyze", p.to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(code(&o), EXIT_OK, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "ram (0)": {"section sizes": {"pc.ram": "0x0000000006000000"}},
            "dev (1)": {"x": "0x0000002a"},
        })
    );
    let _ = std::fs::remove_file(p);
}

// ---- diff ----

#[test]
fn diff_reports_exactly_the_one_register_a_port_write_changed() {
    let vm = demo_machine();
    let a = save(&vm, "before.mig");
    let before = vm.com1.lock().unwrap().state.scr;
    let value = before ^ 0x5a;
    vm.outb(io::COM1 + 7, value); // the scratch register
    let b = save(&vm, "after.mig");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let o = run(&["diff", a, b]);
    assert_eq!(code(&o), EXIT_FOUND, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("serial instance 0: state.scr: {before:#04x} -> {value:#04x}\n")
    );

    let o = run(&["diff", "--json", a, b]);
    assert_eq!(code(&o), EXIT_FOUND);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"equal": false, "differences": [{
            "section": "serial", "instance_id": 0, "field": "state.scr",
            "old": format!("{before:#04x}"), "new": format!("{value:#04x}"),
        }]})
    );

    let o = run(&["diff", a, a]);
    assert_eq!(code(&o), EXIT_OK);
    assert_eq!(stdout(&o), "equal: no differences\n");

    let o = run(&["diff", a, "/nonexistent.mig"]);
    assert_eq!(code(&o), EXIT_ERROR);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

// ---- explain ----

#[test]
fn explain_names_a_corrupted_subsection_where_and_why() {
    let p = save(&demo_machine(), "good.mig");
    let o = run(&["explain", p.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_OK, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("ok: "), "{}", stdout(&o));
    // The devices as their typed state, from the example devices' schemas.
    assert!(
        stdout(&o).contains("\nCOM1 serial: divider="),
        "{}",
        stdout(&o)
    );

    let mut bytes = std::fs::read(&p).unwrap();
    let needle = b"\x05\x10serial/recv_fifo";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the demo's COM1 sends serial/recv_fifo");
    bytes[at + needle.len() - 1] = b'X';
    let bad = tmp("bad-subsection.mig");
    std::fs::write(&bad, &bytes).unwrap();

    let o = run(&["explain", bad.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_FOUND, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("unknown subsection `serial/recv_fifX`"),
        "{out}"
    );
    assert!(out.contains(&format!("offset:   {at:#x} ({at})")), "{out}");
    assert!(out.contains("section:  `serial` instance 0 (v3)"), "{out}");
    assert!(out.contains("field:    state"), "{out}");
    assert!(out.contains("expected: one of the subsections"), "{out}");
    assert!(out.contains("a newer source"), "{out}");
    assert!(out.contains("leaked into an old machine type"), "{out}");
    // The hex window marks the subsection byte and shows the corrupted name.
    assert!(out.contains("[05]10 73"), "{out}");
    assert!(out.contains("recv_fifX"), "{out}");

    // The same from a pipe (read into memory after the header check).
    let o = Command::new("sh")
        .arg("-c")
        .arg("exec \"$0\" explain /dev/stdin < /dev/stdin")
        .arg(bin())
        .stdin(std::fs::File::open(&bad).unwrap())
        .output()
        .unwrap();
    let piped = Command::new("sh")
        .arg("-c")
        .arg("cat \"$1\" | \"$0\" explain /dev/stdin")
        .arg(bin())
        .arg(&bad)
        .output()
        .unwrap();
    for o in [o, piped] {
        assert_eq!(code(&o), EXIT_FOUND, "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("unknown subsection `serial/recv_fifX`"),
            "{out}"
        );
        assert!(out.contains("[05]10 73"), "{out}");
    }
}

#[test]
fn explain_says_why_for_truncated_and_mismatched_streams() {
    let p = save(&demo_machine(), "explain-src.mig");
    let bytes = std::fs::read(&p).unwrap();
    let cut = tmp("truncated.mig");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // The QEMU stream `q` has devices the demo machine lacks: checked with its own vmdesc it is
    // fine (no finding to name), loaded into the demo machine the first of them is a
    // configuration mismatch.
    let q = golden().join("idle.mig");
    for (file, machine, want, says) in [
        (
            &cut,
            Some("pc-i440fx-7.2"),
            EXIT_FOUND,
            "truncated: the connection dropped",
        ),
        (
            &p,
            Some("pc-q35-7.2"),
            EXIT_FOUND,
            "different machine types",
        ),
        (&q, None, EXIT_OK, ""),
        (
            &q,
            Some("pc-i440fx-7.2"),
            EXIT_FOUND,
            "configuration mismatch",
        ),
    ] {
        let mut args = vec!["explain", file.to_str().unwrap()];
        args.extend(machine.into_iter().flat_map(|m| ["--machine", m]));
        let o = run(&args);
        assert_eq!(code(&o), want, "{args:?}: {}", stdout(&o));
        assert!(stdout(&o).contains(says), "{args:?}: {}", stdout(&o));
    }

    let o = run(&[
        "explain",
        q.to_str().unwrap(),
        "--machine",
        "pc-nonexistent-1.0",
    ]);
    assert_eq!(code(&o), EXIT_ERROR);
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

/// Tests that need QEMU 7.2's `scripts/analyze-migration.py`.
mod needs_qemu {
    use super::*;

    /// `$ANALYZE`, else `/opt/qemu-src/scripts/analyze-migration.py`; fails when it is missing.
    fn script() -> PathBuf {
        let p = std::env::var_os("ANALYZE").map_or_else(
            || PathBuf::from("/opt/qemu-src/scripts/analyze-migration.py"),
            PathBuf::from,
        );
        assert!(
            p.exists(),
            "{} not found: run `bash scripts/get-qemu-scripts.sh` (or set ANALYZE=)",
            p.display()
        );
        p
    }

    fn script_output(file: &Path, dump: &str) -> Vec<u8> {
        let o = Command::new("python3")
            .arg(script())
            .args(["-f", file.to_str().unwrap(), "-d", dump])
            .output()
            .expect("run python3");
        assert!(
            o.status.success(),
            "analyze-migration.py -f {}: {}",
            file.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    fn assert_same_as_script(file: &Path) {
        for dump in ["state", "desc"] {
            let ours = run(&["analyze", "--dump", dump, file.to_str().unwrap()]);
            assert_eq!(
                code(&ours),
                EXIT_OK,
                "{}: {}",
                file.display(),
                stderr(&ours)
            );
            assert_eq!(
                normalised(&ours.stdout),
                normalised(&script_output(file, dump)),
                "{} -d {dump}",
                file.display()
            );
        }
    }

    #[test]
    #[ignore = "needs QEMU 7.2's scripts/analyze-migration.py: bash scripts/get-qemu-scripts.sh"]
    fn analyze_matches_the_script_on_golden_demo_and_tinyvm_streams() {
        for mig in golden_with_vmdesc() {
            assert_same_as_script(&mig);
        }
        for machine in ["pc-i440fx-7.2", "pc-i440fx-2.3", "pc-q35-7.2"] {
            let mt = examples_devices::catalog().resolve(machine).unwrap();
            let vm = DemoMachine::new(&mt).unwrap();
            vm.run_guest_program();
            let p = save(&vm, &format!("demo-{machine}.mig"));
            assert_same_as_script(&p);
        }
        let t = tmp("tinyvm.mig");
        examples_devices::tinyvm::driver::save(
            examples_devices::tinyvm::Mode::Soft,
            "test",
            50,
            &t,
        )
        .unwrap();
        assert_same_as_script(&t);
    }
}

#[test]
fn diff_shows_what_an_older_machine_type_does_not_send() {
    let save_for = |machine: &str| {
        let mt = examples_devices::catalog().resolve(machine).unwrap();
        let vm = DemoMachine::new(&mt).unwrap();
        vm.run_guest_program();
        save(&vm, &format!("diff-{machine}.mig"))
    };
    let (a, b) = (save_for("pc-i440fx-7.2"), save_for("pc-i440fx-4.2"));
    let o = run(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_FOUND);
    let out = stdout(&o);
    assert!(
        out.contains("stream: machine type: pc-i440fx-7.2 -> pc-i440fx-4.2\n"),
        "{out}"
    );
    // demo-wdt is pinned to version 2 below 5.0, without its since-3 fields.
    assert!(
        out.contains("demo-wdt instance 0: (section version): 3 -> 2\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .all(|l| l.starts_with("stream: ") || l.starts_with("demo-wdt ")),
        "{out}"
    );
}

#[test]
fn analyze_typed_loads_known_sections_into_their_types() {
    let p = save(&demo_machine(), "typed.mig");
    let o = run(&["analyze", "--typed", p.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_OK, "{}", stderr(&o));
    let out = stdout(&o);
    for ty in [
        "Mc146818Rtc {",
        "I8254 {",
        "SerialSection {",
        "DemoWatchdog {",
    ] {
        assert!(out.contains(ty), "{ty}: {out}");
    }
    assert!(!out.contains("does not load"), "{out}");
    // A real QEMU stream: its PIT, RTC and UART typed, everything else from the vmdesc.
    let q = golden().join("pit.mig");
    let o = run(&["analyze", "--typed", q.to_str().unwrap()]);
    assert_eq!(code(&o), EXIT_OK, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("i8254 (") && out.contains("I8254 {"), "{out}");
    assert!(
        out.contains("timer (0) instance 0 v2: no schema known"),
        "{out}"
    );
    assert!(!out.contains("does not load"), "{out}");
}
