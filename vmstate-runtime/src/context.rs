//! Save and load contexts: the machine type and compat properties gates are evaluated against,
//! the vmdesc being collected, and the section being worked on.

use crate::machine::MachineType;
use crate::schema::{CmpOp, Gate, MachineVersion, Presence, StructSchema};
use crate::vmdesc::DescBuilder;

/// What gates are evaluated against: the machine type and the device whose properties apply.
#[derive(Debug, Clone, Copy)]
pub struct GateCtx<'a> {
    machine: &'a MachineType,
    driver: &'a str,
}

impl<'a> GateCtx<'a> {
    /// Gates for `driver` (the top-level section name) on `machine`.
    #[must_use]
    pub fn new(machine: &'a MachineType, driver: &'a str) -> Self {
        GateCtx { machine, driver }
    }

    /// The machine type.
    #[must_use]
    pub fn machine(&self) -> &'a MachineType {
        self.machine
    }

    /// The device whose compat properties gates read.
    #[must_use]
    pub fn driver(&self) -> &'a str {
        self.driver
    }

    /// `machine <op> version`.
    #[inline]
    #[must_use]
    pub fn machine_cmp(&self, op: CmpOp, version: MachineVersion) -> bool {
        op.eval(self.machine.version(), version)
    }

    /// The value of compat property `name` of this device (its declared default when no compat
    /// entry of the machine type sets it).
    #[inline]
    #[must_use]
    pub fn prop(&self, name: &str, default: bool) -> bool {
        self.machine.compat(self.driver, name).unwrap_or(default)
    }

    /// A gate declared in `declared` evaluated without the state: machine comparisons and
    /// properties are decided here (a property no compat entry sets takes the default
    /// `declared` gives it, `false` when undeclared, as generated code does); predicates give
    /// [`Presence::Maybe`]. What tools use to know, per machine type, what is on the wire.
    #[must_use]
    pub fn presence(&self, gate: Option<&Gate>, declared: &StructSchema) -> Presence {
        gate.map_or(Presence::Always, |g| {
            g.presence(self.machine.version(), &|name| {
                self.prop(name, declared.prop_default(name).unwrap_or(false))
            })
        })
    }
}

/// Context of a save.
pub struct SaveCx<'a> {
    gates: GateCtx<'a>,
    desc: Option<DescBuilder>,
}

impl<'a> SaveCx<'a> {
    /// A save context; `vmdesc` turns on collection of the vmdesc description.
    #[must_use]
    pub fn new(gates: GateCtx<'a>, vmdesc: bool) -> Self {
        SaveCx {
            gates,
            desc: vmdesc.then(DescBuilder::new),
        }
    }

    /// The gate context.
    #[inline]
    #[must_use]
    pub fn gates(&self) -> &GateCtx<'a> {
        &self.gates
    }

    /// The vmdesc collector, when on.
    #[inline]
    pub fn desc(&mut self) -> Option<&mut DescBuilder> {
        self.desc.as_mut()
    }

    /// Takes the finished top-level description.
    pub fn take_desc(&mut self) -> Option<crate::vmdesc::DescStruct> {
        self.desc.as_mut().and_then(DescBuilder::finish)
    }
}

/// Context of a load.
pub struct LoadCx<'a> {
    gates: GateCtx<'a>,
}

impl<'a> LoadCx<'a> {
    /// A load context.
    #[must_use]
    pub fn new(gates: GateCtx<'a>) -> Self {
        LoadCx { gates }
    }

    /// The gate context.
    #[inline]
    #[must_use]
    pub fn gates(&self) -> &GateCtx<'a> {
        &self.gates
    }
}
