//! The schema the derive emits as a `const` and the one read back from its JSON dump are the same
//! value of the same type, and answer the same questions (gates, pins, sizes) with the same code.

use vmstate_runtime::machine::MachineCatalog;
use vmstate_runtime::schema::{Gate, MachineVersion, Presence, SchemaRef, StructSchema};
use vmstate_runtime::{GateCtx, Timer, Unused, VmState};

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(name = "slot", version = 2, nested)]
struct Slot {
    #[vmstate(range = -3..=3)]
    a: i8,
    #[vmstate(when = machine >= "6.0", default)]
    b: u32,
}

#[derive(VmState, Clone, Default, Debug, PartialEq)]
#[vmstate(
    name = "widget",
    version = 3,
    minimum_version = 1,
    pin(below = "5.0", version = 2),
    pin(below = "4.0", version = 1),
    prop(name = "x-extra", default = true),
    subsection(name = "widget/extra", version = 1, when = prop("x-extra")),
    subsection(name = "widget/late", version = 2, minimum_version = 1,
               when = all(machine >= "7.0", not(pred(Self::idle)), any(machine < "8.0", prop("x-extra"))))
)]
struct Widget {
    #[vmstate(range = 0..=u64::MAX)]
    wide: u64,
    ctrl: u16,
    #[vmstate(since = 2, default)]
    deadline: Timer,
    _old: Unused<3>,
    grid: [[u8; 2]; 3],
    cells: [Slot; 2],
    n: u8,
    #[vmstate(count = n, max = 4)]
    log: Vec<u32>,
    #[vmstate(when = machine >= "6.0", default)]
    newer: i64,
    #[vmstate(subsection = "widget/extra", default)]
    extra: u8,
    #[vmstate(subsection = "widget/late", default)]
    late: u32,
}

impl Widget {
    fn idle(&self) -> bool {
        self.ctrl == 0
    }
}

fn round_trip(s: &StructSchema) -> StructSchema {
    let text = serde_json::to_string(s).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn json_reads_back_into_the_same_schema() {
    for s in [Widget::SCHEMA, Slot::SCHEMA] {
        let back = round_trip(s);
        assert_eq!(&back, s);
        // And it dumps to the same JSON again.
        assert_eq!(back.to_json(), s.to_json());
    }
}

#[test]
fn owned_schema_answers_like_the_const() {
    let owned = round_trip(Widget::SCHEMA);
    let cat = MachineCatalog::qemu_pc();
    for name in cat.machine_names() {
        let m = cat.resolve(&name).unwrap();
        let v = m.version();
        assert_eq!(
            owned.version_for(v),
            Widget::SCHEMA.version_for(v),
            "{name}"
        );
        assert_eq!(owned.pin_for(v), Widget::SCHEMA.pin_for(v), "{name}");
        let cx = GateCtx::new(&m, "widget");
        let gates = |s: &StructSchema| -> Vec<Presence> {
            s.fields
                .iter()
                .map(|f| f.gate.as_deref())
                .chain(s.subsections.iter().map(|x| x.gate.as_deref()))
                .map(|g| cx.presence(g, s))
                .collect()
        };
        assert_eq!(gates(&owned), gates(Widget::SCHEMA), "{name}");
    }
    assert_eq!(owned.fixed_size(), Widget::SCHEMA.fixed_size());
    assert_eq!(
        Slot::SCHEMA.fixed_size(),
        None,
        "a gated field has no fixed size"
    );
}

#[test]
fn pins_and_gates_are_evaluated_by_the_schema() {
    let s = Widget::SCHEMA;
    assert_eq!(s.version_for(MachineVersion::new(3, 1)), 1);
    assert_eq!(s.version_for(MachineVersion::new(4, 2)), 2);
    assert_eq!(s.version_for(MachineVersion::new(5, 0)), 3);
    assert_eq!(s.pin_for(MachineVersion::new(5, 0)), None);
    let late = s.subsections[1].gate.as_deref().unwrap();
    let no_props = |_: &str| false;
    assert_eq!(
        late.presence(MachineVersion::new(6, 2), &no_props),
        Presence::Never
    );
    assert_eq!(
        late.presence(MachineVersion::new(7, 2), &no_props),
        Presence::Maybe
    );
    assert_eq!(
        late.presence(MachineVersion::new(8, 0), &no_props),
        Presence::Never
    );
    assert_eq!(
        late.to_string(),
        "all(machine >= \"7.0\", not(pred(Self::idle)), any(machine < \"8.0\", prop(\"x-extra\")))"
    );
    // Owned gates, as a deserializer builds them, evaluate the same way.
    let owned = Gate::Not(SchemaRef::Owned(Box::new(Gate::Prop {
        name: "x-extra".to_owned().into(),
    })));
    assert_eq!(
        owned.presence(MachineVersion::new(1, 0), &|p| p == "x-extra"),
        Presence::Never
    );
}
