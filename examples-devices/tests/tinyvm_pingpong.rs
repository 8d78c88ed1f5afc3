//! `tinyvm pingpong`: live migration of a running guest back and forth between two processes
//! over loopback TCP, with the memory, progress and serial-output checks after every hop.
//!
//! The software guest always runs. The KVM run is in `needs_kvm`, ignored by default; run it
//! where `/dev/kvm` opens with
//! `cargo test -p examples-devices --features kvm --test tinyvm_pingpong -- --ignored needs_kvm::`.

mod tools;

use std::process::Command;

/// Runs `tinyvm pingpong <args>`, prints its output, checks that it succeeds exactly when
/// `succeeds` says, and returns its stdout.
fn run_pingpong(args: &[&str], succeeds: bool) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tinyvm"))
        .arg("pingpong")
        .args(args)
        .output()
        .expect("run tinyvm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}{stderr}");
    assert_eq!(
        out.status.success(),
        succeeds,
        "tinyvm pingpong {args:?}: {:?}",
        out.status
    );
    stdout
}

fn pingpong(args: &[&str]) -> String {
    run_pingpong(args, true)
}

#[test]
fn pingpong_soft_5_hops() {
    let out = pingpong(&["--count", "5", "--soft", "--verbose"]);
    assert!(out.contains("software guest"), "{out}");
    assert!(
        out.contains("summary: mode soft hops 5/5 inconsistencies 0 downtime mean "),
        "{out}"
    );
    // The demo says what it checks and what its numbers mean before the first hop.
    for check in [
        "  memory  ",
        "  devices  ",
        "  serial  ",
        "  progress  ",
        "downtime = ",
    ] {
        assert!(out.contains(check), "the legend lacks {check:?}: {out}");
    }
    // Every hop names its checks and their outcome, and with --verbose its critical path.
    let hops: Vec<&str> = out.lines().filter(|l| l.starts_with("hop ")).collect();
    assert_eq!(hops.len(), 5, "{out}");
    for hop in &hops {
        assert!(
            hop.contains("checks: memory ok, devices ok, serial ok (A + "),
            "{hop}"
        );
        assert!(hop.contains(", progress ok (pass "), "{hop}");
    }
    let paths: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  critical path (ms): source: stop "))
        .collect();
    assert_eq!(paths.len(), 5, "{out}");
    for step in [
        " last-pages ",
        " devices ",
        " loaded ",
        " go ",
        "destination: go-wait ",
        " resume ",
    ] {
        assert!(paths[0].contains(step), "{step:?} missing: {}", paths[0]);
    }
    for stat in [" p50 ", " p99 ", " max "] {
        assert!(out.contains(stat), "the summary lacks {stat:?}: {out}");
    }
    assert!(out.contains("after the last hop:"), "{out}");
}

/// Checks a `--verbose` run of a large guest with a dirty rate: every hop completed with its
/// checks passing, printed its precopy passes (one line per pass, numbered from 0, as many as
/// the hop line says), and converged (at the downtime target, or by auto-converge's throttle).
fn check_large_guest_run(out: &str, mode: &str, hops: usize) {
    assert!(out.contains("MiB of guest RAM, dirty rate "), "{out}");
    assert!(
        out.contains(&format!(
            "summary: mode {mode} hops {hops}/{hops} inconsistencies 0"
        )),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().collect();
    let hop_at: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("hop "))
        .collect();
    assert_eq!(hop_at.len(), hops, "{out}");
    let mut total_passes = 0;
    for &i in &hop_at {
        let hop = lines[i];
        assert!(
            hop.contains("checks: memory ok, devices ok, serial ok"),
            "{hop}"
        );
        assert!(hop.contains(", progress ok (pass "), "{hop}");
        // "hop N/M: A -> B  <passes> pass[es]  ..."
        let passes: usize = hop
            .split("  ")
            .nth(1)
            .and_then(|w| w.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{hop}"));
        let pass_lines: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with("  "))
            .filter(|l| l.starts_with("  pass ") && !l.contains(" in progress: "))
            .copied()
            .collect();
        assert_eq!(pass_lines.len(), passes, "{hop}: {pass_lines:?}");
        for (n, l) in pass_lines.iter().enumerate() {
            assert!(l.starts_with(&format!("  pass {n}: ")), "{l}");
            for field in [
                " pages (",
                " zero) in ",
                " MiB/s ",
                " dirtied meanwhile ",
                " expected downtime ",
                " throttle ",
            ] {
                assert!(l.contains(field), "{field:?} missing: {l}");
            }
        }
        let verdict = lines[i + 1..]
            .iter()
            .take_while(|l| l.starts_with("  "))
            .find(|l| l.starts_with("  converged after ") || l.starts_with("  did not converge"))
            .unwrap_or_else(|| panic!("no convergence line after {hop}"));
        assert!(
            verdict.starts_with("  converged after "),
            "{hop}: {verdict}"
        );
        total_passes += passes;
    }
    // The bandwidth limit makes pass 0 last at least a second (64 MiB at 64 MiB/s), in which
    // the guest dirties thousands of pages: more than the 50 ms target lets the stop send.
    assert!(total_passes > hops, "no hop took more than one pass: {out}");
}

/// The arguments of the large-guest runs: 64 MiB, 5,000 pages/s, at most 64 MiB/s.
const LARGE_GUEST: [&str; 7] = [
    "--mem",
    "64M",
    "--dirty-rate",
    "5000",
    "--bandwidth",
    "64M",
    "--verbose",
];

/// A 64 MiB software guest dirtying 5,000 pages a second, migrated at 64 MiB/s: its hops take
/// several precopy passes (the guest dirties pages while pass 0 sends 16,384 of them) and
/// converge, every check passes, and `--verbose` shows each pass.
#[test]
fn pingpong_soft_large_guest_with_dirty_rate() {
    let out = pingpong(&[&["--soft", "--count", "3"][..], &LARGE_GUEST].concat());
    assert!(
        out.contains("64 MiB of guest RAM, dirty rate 5000 pages/s, bandwidth limit 67108864 B/s"),
        "{out}"
    );
    check_large_guest_run(&out, "soft", 3);
}

/// With `--preflight`, a destination built with 1 MiB more RAM is refused before any guest state
/// moves, naming the block and both sizes; the source's guest keeps running and the hops that
/// follow (with preflight, into matching destinations) pass every check.
#[test]
fn pingpong_soft_preflight_refuses_a_ram_mismatch() {
    assert_preflight_refuses(
        "ram",
        "RAM block `pc.ram`: source 0x100000 bytes, destination 0x200000 — start the \
         destination with the same memory size (-m) and devices",
    );
}

/// `--mismatch device`: the first destination has a second UART (COM2) the source lacks; the
/// preflight refuses it (an extra section), the source's guest keeps running, the hops follow.
#[test]
fn pingpong_soft_preflight_refuses_a_device_mismatch() {
    assert_preflight_refuses(
        "device",
        "section `serial` instance 1: the destination has this device, the source sends no \
         state for it",
    );
}

/// A soft ping-pong of 3 hops whose first destination is built with `--mismatch kind`: the
/// preflight refuses it saying `why`, the source's guest keeps running, every hop then passes.
fn assert_preflight_refuses(kind: &str, why: &str) {
    let out = pingpong(&["--soft", "--count", "3", "--preflight", "--mismatch", kind]);
    assert!(
        out.contains(&format!("preflight (--mismatch {kind}): refused after "))
            && out.contains(why),
        "{out}"
    );
    assert!(out.contains("preflight: A's guest kept running"), "{out}");
    assert!(
        out.contains("summary: mode soft hops 3/3 inconsistencies 0"),
        "{out}"
    );
}

/// With `--verify` every hop commits only after the destination's digests of what it loaded
/// equal the source's; the critical path shows the step.
#[test]
fn pingpong_soft_with_verification() {
    let out = pingpong(&[
        "--soft",
        "--count",
        "3",
        "--verify",
        "--preflight",
        "--verbose",
    ]);
    assert!(
        out.contains("summary: mode soft hops 3/3 inconsistencies 0"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("critical path") && l.contains("  verify "))
            .count(),
        3,
        "{out}"
    );
}

mod needs_kvm {
    /// A destination whose vCPU lacks CPUID features the source's guest has is refused by the
    /// preflight, naming them (x2apic: KVM always offers it).
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn pingpong_kvm_preflight_refuses_a_cpu_mismatch() {
        super::tools::require_kvm();
        let out = super::pingpong(&[
            "--kvm",
            "--count",
            "2",
            "--preflight",
            "--mismatch",
            "cpu:x2apic",
        ]);
        assert!(
            out.contains("vCPU: the source's guest uses `x2apic` that the destination's CPU"),
            "{out}"
        );
        assert!(out.contains("preflight: A's guest kept running"), "{out}");
        assert!(
            out.contains("summary: mode kvm hops 2/2 inconsistencies 0"),
            "{out}"
        );
    }

    /// The 32-bit KVM guest (64 MiB, started in protected mode, paced through its budget port)
    /// migrates back and forth with every check passing and its passes shown.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn pingpong_kvm_large_guest_with_dirty_rate() {
        super::tools::require_kvm();
        let out = super::pingpong(&[&["--kvm", "--count", "3"][..], &super::LARGE_GUEST].concat());
        super::check_large_guest_run(&out, "kvm", 3);
    }

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn pingpong_kvm_10_hops() {
        super::tools::require_kvm();
        let out = super::pingpong(&["--count", "10", "--kvm"]);
        assert!(
            out.contains("summary: mode kvm hops 10/10 inconsistencies 0"),
            "{out}"
        );
        assert_eq!(out.lines().filter(|l| l.starts_with("hop ")).count(), 10);
    }
}

/// A guest that stops running after a migration fails the next hop, after the progress check has
/// waited its bound for it; the hops around it pass.
#[test]
fn pingpong_detects_a_stalled_guest() {
    // It fails: the stalled guest was noticed.
    let stdout = run_pingpong(&["--count", "3", "--soft", "--stall-hop", "1"], false);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("hop 2: INCONSISTENT: the guest made no progress in "))
        .unwrap_or_else(|| panic!("{stdout}"));
    // It waited the whole bound before failing.
    let waited: f64 = line
        .trim_start_matches("hop 2: INCONSISTENT: the guest made no progress in ")
        .split(' ')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(waited >= 2000.0, "{line}");
    assert!(stdout.contains("inconsistencies 1"), "{stdout}");
    assert!(stdout.contains("summary: mode soft hops 3/3"), "{stdout}");
}

/// The checks are not vacuous: a destination that changes one byte of the RAM it received is
/// reported as an inconsistency and the run exits non-zero.
#[test]
fn pingpong_detects_a_corrupted_destination() {
    // It fails: the corrupted hop was noticed.
    let stdout = run_pingpong(&["--count", "3", "--soft", "--corrupt-hop", "2"], false);
    assert!(
        stdout.contains("hop 2: INCONSISTENT: memory: destination loaded"),
        "{stdout}"
    );
    let hop2 = stdout.lines().find(|l| l.starts_with("hop 2/3: "));
    assert!(
        hop2.is_some_and(|l| l.contains("checks: memory FAILED, devices ok")),
        "{stdout}"
    );
    assert!(stdout.contains("inconsistencies 1"), "{stdout}");
}
