//! Replays the committed fuzz corpora on the stable toolchain: every file of
//! `fuzz/corpus/<target>/` and `fuzz/artifacts-regressions/<target>/` goes through the same body
//! the cargo-fuzz target runs (`vmstate_tests::fuzz_bodies`). A failing file is named in the
//! report; see `docs/fuzzing.md`.
//!
//! The seed part of the corpora (`seed-*` files) is made by [`seed_corpus_is_current`], which
//! fails when the committed seeds differ from what the generator makes now (the stream format
//! or the example machine changed); rewrite them with
//! `VMSTATE_WRITE_SEEDS=1 cargo test -p vmstate-tests --test fuzz_corpus seed_corpus_is_current`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use examples_devices::machine::DemoMachine;

use vmstate_migration::{migrate, GuestRam, Settings};
use vmstate_tests::fuzz_bodies::{self, MemTransport, RamVm, RAM_LAYOUT, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Runs every corpus and regression file of `target` through its body; panics naming the files
/// that failed.
fn replay(target: &str) {
    let body = TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .map(|(_, b)| *b)
        .unwrap();
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty: run write_seed_corpus"
    );
    let regressions = files(&fuzz_dir().join("artifacts-regressions").join(target));
    let mut failed = Vec::new();
    // The default hook would print every caught panic; the report below names them.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap();
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| body(&data))) {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{}: {msg}", path.display()));
        }
    }
    std::panic::set_hook(hook);
    eprintln!(
        "{target}: {} corpus files, {} regressions",
        corpus.len(),
        regressions.len()
    );
    assert!(failed.is_empty(), "{target}: {failed:#?}");
}

#[test]
fn load_machine_corpus() {
    replay("load_machine");
}

#[test]
fn decode_stream_corpus() {
    replay("decode_stream");
}

#[test]
fn ram_corpus() {
    replay("ram");
}

#[test]
fn vmdesc_corpus() {
    replay("vmdesc");
}

#[test]
fn field_kinds_corpus() {
    replay("field_kinds");
}

/// Every single-byte change of the busy field-kinds seed (to 0x00, 0x01, 0x30, 0x7f and 0xff)
/// and every prefix goes through the body: hostile counts, markers and truncations at every
/// position of every kind.
#[test]
fn field_kinds_mutations() {
    let seed = std::fs::read(fuzz_dir().join("corpus/field_kinds/seed-kinds-busy")).unwrap();
    for i in 0..seed.len() {
        for b in [0x00, 0x01, 0x30, 0x7f, 0xff] {
            let mut m = seed.clone();
            m[i] = b;
            fuzz_bodies::field_kinds(&m);
        }
        fuzz_bodies::field_kinds(&seed[..i]);
    }
}

#[test]
fn every_target_has_a_replay_test() {
    // Keep this list in step with the tests above and with fuzz/Cargo.toml's [[bin]]s.
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "load_machine",
            "decode_stream",
            "ram",
            "vmdesc",
            "field_kinds"
        ]
    );
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for n in names {
        assert!(
            manifest.contains(&format!("name = \"{n}\"")),
            "fuzz/Cargo.toml has no target `{n}`"
        );
    }
}

// ---- seeds ----

mod vm_memory_bytes {
    use vm_memory::{Bytes, GuestAddress};
    use vmstate_migration::GuestRam;

    /// Writes `fill` over one page at each of `addrs`.
    pub fn write_pages(ram: &GuestRam, addrs: &[u64], fill: u8) {
        for &a in addrs {
            ram.memory()
                .write_slice(&[fill; 4096], GuestAddress(a))
                .unwrap();
        }
    }
}

fn ram_stream(pages: &[u64], busy: bool) -> Vec<u8> {
    use vm_memory_bytes::write_pages;
    let machine = DemoMachine::new(&fuzz_bodies::ram_machine()).unwrap();
    if busy {
        machine.run_guest_program();
    }
    let ram = GuestRam::new(RAM_LAYOUT).unwrap();
    write_pages(&ram, pages, 0xa5);
    // The source: the example machine and RAM_LAYOUT with a few pages of data (most pages stay
    // zero, so the streams are small).
    let mut src = RamVm {
        machine,
        ram,
        resumed: false,
    };
    let mut t = MemTransport::new(&[]);
    let settings = Settings {
        downtime: Duration::from_millis(50),
        max_passes: 2,
        auto_converge: false,
        ..Settings::default()
    };
    migrate(&mut src, &mut t, &settings).unwrap();
    t.output
}

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("golden/qemu72")
            .join(name),
    )
    .unwrap()
}

/// The vmdesc JSON at the end of a stream with one.
fn vmdesc_of(stream: &[u8]) -> Vec<u8> {
    let d = vmstate_runtime::decode_stream(stream).unwrap();
    let (range, _) = d.vmdesc.unwrap();
    stream[range.start + 5..range.end].to_vec()
}

#[test]
fn seed_corpus_is_current() {
    let cat = examples_devices::catalog();
    let mut demo = Vec::new();
    for m in [
        "pc-i440fx-7.2",
        "pc-q35-7.2",
        "pc-i440fx-2.3",
        "pc-i440fx-2.2",
    ] {
        for busy in [false, true] {
            let machine = DemoMachine::new(&cat.resolve(m).unwrap()).unwrap();
            if busy {
                machine.run_guest_program();
            }
            let (bytes, _) = machine.save().unwrap();
            demo.push((
                format!("demo-{m}-{}", if busy { "busy" } else { "reset" }),
                bytes,
            ));
        }
    }
    let ram = vec![
        ("ram-zero".to_owned(), ram_stream(&[], false)),
        (
            "ram-pages".to_owned(),
            ram_stream(&[0x1000, 0x3_0000, 0xfff0_0000], true),
        ),
    ];
    let qemu = vec![("qemu72-uart-timeout".to_owned(), golden("uart-timeout.mig"))];
    let mut vmdescs: Vec<(String, Vec<u8>)> = demo
        .iter()
        .filter(|(n, _)| !n.contains("-2.2-"))
        .map(|(n, s)| (n.clone(), vmdesc_of(s)))
        .collect();
    vmdescs.push(("ram-pages".to_owned(), vmdesc_of(&ram[1].1)));
    vmdescs.push(("qemu72-uart-timeout".to_owned(), vmdesc_of(&qemu[0].1)));

    // The seeds are accepted: fuzzing starts from inputs that reach the end.
    for (name, bytes) in &demo {
        let m = fuzz_bodies::machine_for(bytes);
        let machine = DemoMachine::new(&m).unwrap();
        machine
            .registry()
            .load(&m, bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for (name, bytes) in &ram {
        let mut dest = fuzz_bodies::RamVm::new();
        let mut t = MemTransport::new(bytes);
        let settings = vmstate_migration::ReceiveSettings {
            read_timeout: None,
            ..vmstate_migration::ReceiveSettings::default()
        };
        vmstate_migration::receive(&mut dest, &mut t, &settings)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // The field-kinds device: its reset and busy payloads (accepted), and their vmdescs (the
    // repeated members of list and tree entries, the empty struct of a NULL pointer).
    let m72 = cat.resolve("pc-i440fx-7.2").unwrap();
    let mut kinds = Vec::new();
    for (name, dev) in [
        ("reset", fuzz_bodies::kinds::destination()),
        ("busy", fuzz_bodies::kinds::busy()),
    ] {
        let (_, bytes, desc) = vmstate_runtime::save_payload(&dev, &m72).unwrap();
        let mut back = fuzz_bodies::kinds::destination();
        vmstate_runtime::load_payload(&mut back, &bytes, 1, &m72).unwrap();
        assert_eq!(back, dev, "{name}");
        let mut json = String::new();
        vmstate_runtime::vmdesc::write_device(
            &mut json,
            &vmstate_runtime::vmdesc::DescDevice {
                name: "kinds".into(),
                instance_id: 0,
                body: vmstate_runtime::vmdesc::DescBody::Vmsd(desc),
            },
        );
        let doc = format!(r#"{{"page_size": 4096, "devices": [{json}]}}"#);
        vmdescs.push((format!("kinds-{name}"), doc.into_bytes()));
        kinds.push((format!("kinds-{name}"), bytes));
    }
    let rewrite = std::env::var_os("VMSTATE_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    let mut write = |target: &str, seeds: &[(String, Vec<u8>)]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            let path = dir.join(format!("seed-{name}"));
            if rewrite {
                std::fs::write(&path, bytes).unwrap();
            } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
                stale.push(path.display().to_string());
            }
        }
    };
    // QEMU's stream is 200 KiB (libFuzzer's default max_len follows the largest seed) and the
    // example machine stops at its first section: only the decoder gets it.
    let ours: Vec<_> = demo.iter().chain(&ram).cloned().collect();
    write("load_machine", &ours);
    let all: Vec<_> = ours.iter().chain(&qemu).cloned().collect();
    write("decode_stream", &all);
    write("ram", &ram);
    write("vmdesc", &vmdescs);
    write("field_kinds", &kinds);
    assert!(
        stale.is_empty(),
        "committed fuzz seeds differ from what the generator makes now: {stale:?}; \
         rewrite them with `VMSTATE_WRITE_SEEDS=1 cargo test -p vmstate-tests --test fuzz_corpus \
         seed_corpus_is_current` and commit them"
    );
}
