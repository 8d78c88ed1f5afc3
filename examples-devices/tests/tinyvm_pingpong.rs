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

mod needs_kvm {
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
