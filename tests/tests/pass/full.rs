use vmstate_runtime::{Timer, Unused, VmState};

#[derive(VmState, Default, Clone)]
#[vmstate(name = "fifo8", nested)]
struct Fifo {
    #[vmstate(buffer)]
    data: [u8; 16],
    head: u32,
}

#[derive(VmState, Default, Clone)]
#[vmstate(
    name = "dev",
    version = 3,
    minimum_version = 1,
    priority = -2,
    pin(below = "5.0", version = 2),
    prop(name = "x-stats", default = true),
    subsection(name = "dev/fifo", version = 2, minimum_version = 1, when = pred(Self::busy)),
    subsection(name = "dev/stats", when = all(machine >= "6.0", prop("x-stats"), not(pred(Self::busy)))),
    pre_save = Self::pre_save,
    post_load = Self::post_load,
    validate = Self::check,
    when = any(machine >= "2.4", prop("x-stats"))
)]
struct Dev {
    a: u16,
    #[vmstate(since = 2, default = 5)]
    b: i32,
    #[vmstate(rename = "regs[0].c", range = 0..=15)]
    c: u8,
    _gone: Unused<4>,
    t: Timer,
    #[vmstate(equal)]
    channels: u32,
    n: u8,
    #[vmstate(count = n, max = 8)]
    v: Vec<u16>,
    #[vmstate(buffer, count = n, max = 8)]
    raw: [u8; 8],
    #[vmstate(subsection = "dev/fifo", default)]
    fifo: Fifo,
    #[vmstate(subsection = "dev/fifo", since = 2, default)]
    fifo_extra: u8,
    #[vmstate(subsection = "dev/stats", default)]
    stats: [u64; 2],
    #[vmstate(skip)]
    _cache: Vec<String>,
}

impl Dev {
    fn busy(&self) -> bool {
        self.fifo.head != 0
    }
    fn pre_save(&mut self) -> Result<(), String> {
        Ok(())
    }
    fn post_load(&mut self, _version: u32) -> Result<(), String> {
        Ok(())
    }
    fn check(&self) -> Result<(), &'static str> {
        Ok(())
    }
}

fn main() {
    assert_eq!(Dev::SCHEMA.subsections.len(), 2);
}
