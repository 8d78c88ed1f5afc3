//! What the walk shows the rules: one [`Step`] per thing it compares, and [`Hits`] to report on.
//!
//! The walk ([`mod@super`]) decides *what* is compared with what: which machine types and
//! devices pair up, how two field lists align (longest common subsequence, padding that absorbs
//! fields, renames of equal shape), which subsections match. Each rule (`crate::rules::<id>`)
//! decides *whether* a step violates it and says so in its own words. A step the walk descends
//! from (a device's section version, a subsection) is only descended into when no rule reported
//! at it: a wire that is already incompatible at the header is not compared field by field.

use crate::finding::Direction;
use crate::layout::{DeviceLayout, Item, Loc, Presence, SubItem};
use crate::rules::Rule;

/// Placeholder in fix texts for the first machine version a change may be gated on; replaced
/// when findings are merged across machine types.
pub const NEXT: &str = "{next}";

/// One step of the comparison of a frozen baseline with the current code, for one machine
/// type.
#[derive(Clone, Copy)]
pub enum Step<'a> {
    /// A frozen machine type; `known` says whether any machine catalog still declares it (when
    /// not, nothing else is compared for it).
    Machine {
        /// The machine type.
        machine: &'a str,
        /// Whether a catalog declares it.
        known: bool,
    },
    /// A frozen device the current code does not declare under that section name.
    DeviceGone {
        /// The frozen device.
        base: &'a DeviceLayout,
        /// A current device of the same Rust type under a name the baseline does not have.
        renamed: Option<&'a DeviceLayout>,
    },
    /// A current device the baseline does not have (neither by name nor as a rename).
    DeviceNew {
        /// The current device.
        cur: &'a DeviceLayout,
    },
    /// A device in both. The rest of the device is compared only when the baseline sends it.
    Device {
        /// Frozen.
        base: &'a DeviceLayout,
        /// Current.
        cur: &'a DeviceLayout,
    },
    /// The section version of a device in one direction (`NewToOld` only when the current code
    /// sends the section). Its fields are compared only when no rule reports here.
    SectionVersion {
        /// Frozen.
        base: &'a DeviceLayout,
        /// Current.
        cur: &'a DeviceLayout,
        /// The direction checked.
        dir: Direction,
    },
    /// A field on the wire in both lists, at another position among the aligned fields.
    Moved {
        /// Its key.
        key: &'a str,
        /// The current item.
        new: &'a Item,
        /// The keys of the frozen wire list, in order.
        old_keys: &'a [&'a str],
        /// The list.
        cx: ListCx<'a>,
    },
    /// A frozen item between two aligned ones that has no counterpart on the current wire (the
    /// gap is not the same bytes on both sides).
    Dropped {
        /// The frozen item.
        old: &'a Item,
        /// The current item of that key, when still declared (but off the wire here).
        now: Option<&'a Item>,
        /// The current items of the same gap.
        new_gap: &'a [&'a Item],
        /// The list; `container` is where the current gap is.
        cx: ListCx<'a>,
    },
    /// A current item between two aligned ones that has no counterpart on the frozen wire.
    Appeared {
        /// The current item.
        new: &'a Item,
        /// The frozen item of that key, when the baseline declares it (but off the wire here).
        was: Option<&'a Item>,
        /// The frozen items of the same gap.
        old_gap: &'a [&'a Item],
        /// The list.
        cx: ListCx<'a>,
    },
    /// Two aligned items (same key). Arrays of structs are compared element-wise when their
    /// dimensions are equal.
    Pair {
        /// Frozen.
        old: &'a Item,
        /// Current.
        new: &'a Item,
        /// The list.
        cx: ListCx<'a>,
    },
    /// A subsection on the sender's side (`NewToOld`: the current one, `OldToNew`: the frozen
    /// one), with its counterpart by name. Its fields are compared only when no rule reports.
    Subsection {
        /// Frozen.
        old: Option<&'a SubItem>,
        /// Current.
        new: Option<&'a SubItem>,
        /// The list the subsection belongs to.
        cx: ListCx<'a>,
    },
}

impl<'a> Step<'a> {
    /// The frozen device and its rename, if any, of a [`Step::DeviceGone`] whose frozen device
    /// the baseline sends (one it never sent is not on the wire either way).
    #[must_use]
    pub fn sent_device_gone(&self) -> Option<(&'a DeviceLayout, Option<&'a DeviceLayout>)> {
        match *self {
            Step::DeviceGone { base, renamed } if base.presence != Presence::Never => {
                Some((base, renamed))
            }
            _ => None,
        }
    }
}

/// What the items of one compared list share.
#[derive(Clone, Copy)]
pub struct ListCx<'a> {
    /// The current device.
    pub dev: &'a DeviceLayout,
    /// Where the (current) container of the list is declared (for removed items: where the
    /// gap is); from the current code, as every location in a finding.
    pub container: Option<&'a Loc>,
    /// Whether the list is the device's own field list (so `since`/`pin` can be suggested).
    pub top: bool,
    /// The subsection the list belongs to, if any.
    pub sub: Option<&'a str>,
    /// The container version in the stream (what `since` compares with).
    pub v: u32,
    /// The direction checked.
    pub dir: Direction,
}

impl ListCx<'_> {
    /// ` (subsection `name`)` inside a subsection, else empty.
    #[must_use]
    pub fn in_sub(&self) -> String {
        self.sub
            .map(|s| format!(" (subsection `{s}`)"))
            .unwrap_or_default()
    }
}

/// A finding for one machine type and direction, before merging.
pub(crate) struct Raw {
    pub(crate) rule: &'static Rule,
    pub(crate) dir: Direction,
    pub(crate) section: String,
    pub(crate) path: String,
    pub(crate) machine: String,
    pub(crate) message: String,
    pub(crate) location: Option<Loc>,
    pub(crate) fix: String,
}

/// Where a rule reports what it found at one step.
pub struct Hits<'a> {
    pub(crate) rule: &'static Rule,
    pub(crate) machine: &'a str,
    pub(crate) section: &'a str,
    pub(crate) out: &'a mut Vec<Raw>,
    pub(crate) fired: &'a mut bool,
}

impl Hits<'_> {
    /// Reports a violation of the rule: the direction that breaks, the path inside the device
    /// (empty for the device itself), a one-line message, where to look and how to fix it
    /// ([`NEXT`] stands for the first machine version it may be gated on).
    pub fn push(
        &mut self,
        dir: Direction,
        path: &str,
        message: String,
        location: Option<&Loc>,
        fix: String,
    ) {
        *self.fired = true;
        self.out.push(Raw {
            rule: self.rule,
            dir,
            section: self.section.to_owned(),
            path: path.to_owned(),
            machine: self.machine.to_owned(),
            message,
            location: location.cloned(),
            fix,
        });
    }

    /// Reports that the item `key` of the list `cx` changed its wire form from `old` to `new`
    /// (kind, size or shape), with the fix `fix`.
    pub fn shape_changed(
        &mut self,
        cx: &ListCx<'_>,
        key: &str,
        old: &Item,
        new: &Item,
        fix: String,
    ) {
        self.push(
            cx.dir,
            key,
            format!(
                "field `{key}`{} changed from {} to {}",
                cx.in_sub(),
                old.shape(),
                new.shape()
            ),
            new.at(),
            fix,
        );
    }
}

/// `machine >= "{next}"`, combined with an existing gate.
#[must_use]
pub fn gate_with_next(existing: Option<&str>) -> String {
    match existing {
        // A plain lower bound on the machine version is replaced, not combined.
        Some(g) if g.starts_with("machine >") && !g.contains(',') => {
            format!("machine >= \"{NEXT}\"")
        }
        Some(g) => format!("all(machine >= \"{NEXT}\", {g})"),
        None => format!("machine >= \"{NEXT}\""),
    }
}

/// The fix for a section sent on frozen machine types that must not get it: gate it.
#[must_use]
pub fn gate_section(cd: &DeviceLayout) -> String {
    format!(
        "gate the section: `#[vmstate(when = {})]` on `{}`",
        gate_with_next(cd.when.as_deref()),
        cd.rust_name
    )
}

/// How an item or section is sent: `always sent`, ``sent when `g` holds``, ….
#[must_use]
pub fn presence_text(p: Presence, when: Option<&str>) -> String {
    match (p, when) {
        (Presence::Always, _) => "always sent".to_owned(),
        (Presence::Maybe, Some(w)) => format!("sent when `{w}` holds"),
        (Presence::Maybe, None) => "sent depending on runtime state".to_owned(),
        (Presence::Never, _) => "never sent".to_owned(),
    }
}

/// `1 byte`, `N bytes`.
#[must_use]
pub fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// The fix for an item whose wire form changed: keep the frozen form.
#[must_use]
pub fn keep_frozen_form(key: &str, old: &Item) -> String {
    format!(
        "keep `{key}` as {} on the wire (convert in `pre_save`/`post_load`) and send the new \
         form as a new field or subsection gated `when = machine >= \"{NEXT}\"`",
        old.shape()
    )
}

/// Whether an item is a field of `unused` padding.
#[must_use]
pub fn is_padding(i: &Item) -> bool {
    matches!(i, Item::Field(f) if f.kind == "unused")
}
