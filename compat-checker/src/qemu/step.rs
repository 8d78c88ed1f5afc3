//! What the dump walk shows the `qemu-*` rules: one [`Step`] per thing it compares, and
//! [`Hits`] to report on.
//!
//! The walk ([`mod@super`]) pairs the sender's sections, Descriptions, fields and subsections
//! with the receiver's, with the allowances of QEMU's static checker (renames, fields moved
//! into nested structs, `unused` runs); each rule (`crate::rules::qemu::<id>`) decides whether a
//! step violates it and words the finding. A Description is compared inside only when no rule
//! reported at it.

use super::dump::{Desc, Field, Section};
use crate::finding::{Direction, Finding, Severity};
use crate::rules::{Level, Rule};

/// One step of the comparison of two dumps, in one direction (sender → receiver).
#[derive(Clone, Copy)]
pub enum Step<'a> {
    /// The machine types of the two dumps (once per comparison, not per direction).
    Machines {
        /// `vmschkmachine.Name` of the old dump.
        old: &'a str,
        /// `vmschkmachine.Name` of the new dump.
        new: &'a str,
    },
    /// A section of the sender with the receiver's section of that name (after the rename
    /// table), if any.
    Section {
        /// The sender's section.
        sender: &'a Section,
        /// The receiver's.
        receiver: Option<&'a Section>,
    },
    /// The `version_id` of a section, Description or field on both sides.
    Versions {
        /// What it is: `section`, `Description "x"`, `field "x"`.
        what: &'a str,
        /// The sender's `version_id`.
        sender: i64,
        /// The receiver's `version_id`.
        receiver: i64,
        /// The receiver's `minimum_version_id` (sections and Descriptions).
        receiver_min: Option<i64>,
        /// The path of findings.
        path: &'a str,
    },
    /// The keys of a section or Description on both sides.
    Entries {
        /// `section "key"` or `Description "name"`.
        owner: &'a str,
        /// `section` or `Description` (how the fix names the receiver's object).
        kind: &'a str,
        /// The sender's keys.
        sender: &'a [String],
        /// The receiver's keys.
        receiver: &'a [String],
        /// The path of findings.
        path: &'a str,
    },
    /// Two Descriptions at the same place. Their contents are compared only when no rule
    /// reports here.
    Description {
        /// The sender's.
        sender: &'a Desc,
        /// The receiver's.
        receiver: &'a Desc,
        /// The path of findings.
        path: &'a str,
    },
    /// A subsection of the sender, and whether the receiver's parent has one of that name.
    Subsection {
        /// The sender's subsection.
        sub: &'a Desc,
        /// The sender's parent Description.
        parent: &'a Desc,
        /// Whether the receiver knows it.
        found: bool,
        /// The path of findings.
        path: &'a str,
    },
    /// The sender's and the receiver's next fields do not line up and no allowance applies;
    /// the rest of the list is not compared.
    Misaligned {
        /// The sender's field.
        sender: &'a Field,
        /// The receiver's field.
        receiver: &'a Field,
        /// The Description whose list it is.
        desc: &'a str,
        /// The path of findings.
        path: &'a str,
    },
    /// An `unused` run that does not add up to the fields it stands for.
    UnusedMismatch {
        /// The field at which it went wrong.
        near: &'a str,
        /// `None`: the fields overshoot the padding; `Some(n)`: the receiver's padding still
        /// expects `n` bytes after the sender's last field (negative: it is `-n` bytes short).
        left_at_end: Option<i128>,
        /// The path of findings.
        path: &'a str,
    },
    /// The receiver's list ends while the sender sends `sender`.
    ReceiverEnds {
        /// The sender's field.
        sender: &'a Field,
        /// The path of findings.
        path: &'a str,
    },
    /// Two aligned fields, with the versions their lists are saved (sender) and loaded
    /// (receiver) at. Nested structs are compared inside afterwards.
    FieldPair {
        /// The sender's field.
        sender: &'a Field,
        /// The receiver's field.
        receiver: &'a Field,
        /// The version the sender saves the list at.
        sender_version: i64,
        /// The version the receiver loads the list at.
        receiver_version: i64,
        /// The path of findings.
        path: &'a str,
    },
    /// A receiver field after the sender's last field.
    Appended {
        /// The receiver's field.
        field: &'a Field,
        /// The version the receiver loads its list at.
        version: i64,
        /// The path of findings.
        path: &'a str,
    },
}

impl<'a> Step<'a> {
    /// The sender's field, the receiver's field and the path of a [`Step::FieldPair`].
    #[must_use]
    pub fn field_pair(&self) -> Option<(&'a Field, &'a Field, &'a str)> {
        match *self {
            Step::FieldPair {
                sender,
                receiver,
                path,
                ..
            } => Some((sender, receiver, path)),
            _ => None,
        }
    }
}

/// Where a rule reports what it found at one step, and who sends to whom.
pub struct Hits<'a> {
    pub(super) rule: &'static Rule,
    pub(super) dir: Direction,
    pub(super) snd: &'static str,
    pub(super) rcv: &'static str,
    pub(super) section: &'a str,
    pub(super) machines: &'a [String],
    pub(super) out: &'a mut Vec<Finding>,
    pub(super) fired: &'a mut bool,
}

impl Hits<'_> {
    /// `"old"` or `"new"`: the sending dump.
    #[must_use]
    pub fn snd(&self) -> &'static str {
        self.snd
    }

    /// `"old"` or `"new"`: the receiving dump.
    #[must_use]
    pub fn rcv(&self) -> &'static str {
        self.rcv
    }

    /// The sender's section key (the `device` of findings).
    #[must_use]
    pub fn section(&self) -> &str {
        self.section
    }

    /// Whether this is the forward direction (old sends, new receives).
    #[must_use]
    pub fn forward(&self) -> bool {
        self.dir == Direction::OldToNew
    }

    /// Reports a violation of the rule at `path`.
    pub fn push(&mut self, path: &str, message: String, fix: impl Into<String>) {
        *self.fired = true;
        self.out.push(Finding {
            rule: self.rule.id.to_owned(),
            severity: severity(self.rule.level),
            direction: self.dir,
            section: self.section.to_owned(),
            path: path.to_owned(),
            machines: self.machines.to_vec(),
            message,
            location: None,
            fix: fix.into(),
        });
    }
}

/// The severity of a finding of a rule at `level` (QEMU mode has no configuration).
#[must_use]
pub fn severity(level: Level) -> Severity {
    match level {
        Level::Warn | Level::Allow => Severity::Warn,
        Level::Deny => Severity::Deny,
    }
}
