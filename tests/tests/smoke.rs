use vmstate_runtime::machine::MachineCatalog;
use vmstate_runtime::{GateCtx, LoadCx, SaveCx, SliceReader, Timer, Unused, VmState};

#[derive(Debug, Clone, Default, PartialEq, VmState)]
#[vmstate(name = "fifo8", version = 1, nested)]
struct Fifo8 {
    #[vmstate(buffer)]
    data: [u8; 16],
    head: u32,
    num: u32,
}

#[derive(Debug, Clone, Default, PartialEq, VmState)]
#[vmstate(name = "dev", version = 3, minimum_version = 2,
    prop(name = "x-new", default = true),
    subsection(name = "dev/fifo", version = 1, when = pred(Self::fifo_needed)),
    subsection(name = "dev/extra", when = all(machine >= "7.0", prop("x-new"))),
    post_load = Self::post)]
struct Dev {
    a: u16,
    b: [u8; 3],
    #[vmstate(since = 3, default = 7)]
    c: u32,
    _pad: Unused<2>,
    t: Timer,
    #[vmstate(subsection = "dev/fifo", default)]
    fifo: Fifo8,
    #[vmstate(subsection = "dev/extra", default)]
    extra: i64,
    n: u8,
    #[vmstate(count = n, max = 4)]
    v: [u16; 4],
    #[vmstate(skip)]
    local: u64,
}

impl Dev {
    fn fifo_needed(&self) -> bool {
        self.fifo.num != 0
    }
    fn post(&mut self, _v: u32) -> Result<(), String> {
        if self.n > 4 {
            return Err("bad".into());
        }
        Ok(())
    }
}

#[test]
fn smoke() {
    let cat = MachineCatalog::qemu_pc();
    let m = cat.resolve("pc-i440fx-7.2").unwrap();
    let mut d = Dev {
        a: 0x1234,
        b: [1, 2, 3],
        c: 9,
        t: Timer::armed(5),
        fifo: Fifo8 {
            data: [7; 16],
            head: 1,
            num: 2,
        },
        extra: -1,
        n: 2,
        v: [1, 2, 3, 4],
        local: 99,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut cx = SaveCx::new(GateCtx::new(&m, "dev"), true);
    if let Some(dd) = cx.desc() {
        dd.struct_begin("dev", 3, 0);
    }
    d.save_state(&mut out, 3, &mut cx).unwrap();
    if let Some(dd) = cx.desc() {
        dd.struct_end(out.len() as u64);
    }
    let desc = cx.take_desc().unwrap();
    eprintln!("{:02x?}", out);
    eprintln!("{desc:?}");
    let mut e = Dev::default();
    let mut r = SliceReader::new(&out);
    e.load_state(&mut r, 3, &mut LoadCx::new(GateCtx::new(&m, "dev")))
        .unwrap();
    assert_eq!(r.remaining().len(), 0);
    d.local = 0;
    d.v = [1, 2, 0, 0];
    assert_eq!(d, e);
    println!(
        "{}",
        serde_json::to_string_pretty(&Dev::SCHEMA.to_json())
            .unwrap()
            .len()
    );
}
