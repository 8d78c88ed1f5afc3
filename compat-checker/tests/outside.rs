//! The README's "Use it in your project" path, as a new user takes it: a crate outside this
//! workspace depends on `vmstate-runtime` by path, derives a device with a gated field, adds
//! the export line and a small machine catalog; the checker freezes it, passes, reports a
//! planted leak with `file:line` and a fix, and leaves the baselines alone when code moves.
//!
//! The crate is built with this workspace's `Cargo.lock` and target directory, so it reuses
//! what is already compiled and needs no network.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_contains, assert_starts_with, git, temp_dir, Run};

const DEVICE: &str = r#"//! A VMM's devices.
use vmstate_runtime::machine::{Family, MachineCatalog};
use vmstate_runtime::VmState;

/// A tiny timer device.
#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "mytimer", version = 1)]
pub struct MyTimer {
    pub ctrl: u32,
    pub count: u64,
    #[vmstate(when = machine >= "2.0", default)]
    pub irq_mask: u8,
}

/// The machine types this VMM supports.
pub fn catalog() -> MachineCatalog {
    MachineCatalog {
        families: vec![Family {
            name: "myvm".into(),
            versions: vec!["1.0".into(), "2.0".into()],
        }],
        compat: vec![],
    }
}

vmstate_runtime::export_schemas!(catalog = crate::catalog);
"#;

/// This workspace's target directory (the binary is `<target>/<profile>/cargo-compat-check`).
fn target_dir() -> PathBuf {
    let exe = Path::new(env!("CARGO_BIN_EXE_cargo-compat-check"));
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Runs the checker on the crate at `dir`, as `cargo compat-check --manifest-path …` would.
fn run(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_cargo-compat-check"))
        .current_dir(dir)
        .args(args)
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir())
        .env("CARGO_TERM_COLOR", "never")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn baselines(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir.join("compat"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// The 1-based line of the first line of `src` containing `needle`.
fn line_of(src: &str, needle: &str) -> usize {
    src.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn a_crate_outside_the_workspace() {
    let dir = temp_dir("outside").join("mydevs");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let runtime = common::manifest_dir().join("../vmstate-runtime");
    std::fs::write(
        dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"mydevs\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\nvmstate-runtime = {{ path = {:?} }}\n",
            runtime.display().to_string()
        ),
    )
    .unwrap();
    std::fs::copy(
        common::manifest_dir().join("../Cargo.lock"),
        dir.join("Cargo.lock"),
    )
    .unwrap();
    let lib = dir.join("src/lib.rs");
    std::fs::write(&lib, DEVICE).unwrap();

    // Freeze, then check.
    let r = run(&dir, &["freeze", "--all"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_contains(&r.stderr, "   Exporting mydevs (schema export)");
    assert_contains(
        &r.stderr,
        "    Freezing myvm-1.0: 1 device → compat/myvm-1.0.json",
    );
    assert_contains(
        &r.stderr,
        "    Freezing myvm-2.0: 1 device → compat/myvm-2.0.json",
    );
    let frozen = baselines(&dir);
    assert_eq!(frozen.len(), 2);
    let r = run(&dir, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_contains(&r.stderr, "Summary compatible with 2 frozen machine types");
    git(&dir, &["init", "-q"]);
    git(&dir, &["add", "Cargo.toml", "src", "compat"]);
    git(&dir, &["commit", "-q", "-m", "freeze"]);

    // A planted leak: an ungated new field.
    let leaky = DEVICE.replace(
        "    pub irq_mask: u8,\n",
        "    pub irq_mask: u8,\n    pub flags: u16,\n",
    );
    std::fs::write(&lib, &leaky).unwrap();
    let line = line_of(&leaky, "pub flags");
    for args in [&[][..], &["--baseline-rev", "HEAD"][..]] {
        let r = run(&dir, args);
        assert_eq!(r.code, 1, "{args:?}: {}{}", r.stdout, r.stderr);
        assert_starts_with(
            &r.stdout,
            "--- failure field-leaks-into-old-machine: field on the wire where the baseline never had it ---\n",
        );
        assert_contains(&r.stdout, "Machine types: myvm-1.0, myvm-2.0\n");
        assert_contains(&r.stdout, &format!("Failed in:\n  src/lib.rs:{line}\n"));
        assert_contains(
            &r.stdout,
            "Fix:\n  gate `flags` with `#[vmstate(when = machine >= \"2.1\", default)]`",
        );
    }
    let r = run(&dir, &["--format", "github"]);
    assert_eq!(r.code, 1);
    assert_starts_with(
        &r.stdout,
        &format!("::error file=src/lib.rs,line={line},title=field-leaks-into-old-machine"),
    );

    // Moving code without changing the wire changes no baseline.
    let moved = DEVICE.replace(
        "/// A tiny timer device.\n",
        "/// Timer ticks per second.\npub const HZ: u64 = 1_000_000;\n\n/// A tiny timer device.\n",
    );
    let moved = moved.replace(
        "    pub ctrl: u32,\n",
        "    /// Control.\n    pub ctrl: u32,\n\n",
    );
    std::fs::write(&lib, &moved).unwrap();
    let r = run(&dir, &["freeze", "--all"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_contains(&r.stderr, "   Unchanged myvm-1.0");
    assert_contains(&r.stderr, "   Unchanged myvm-2.0");
    assert_eq!(baselines(&dir), frozen);
    let r = run(&dir, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}
