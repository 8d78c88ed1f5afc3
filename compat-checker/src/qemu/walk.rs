//! The comparison of two dumps in one direction (sender → receiver): the walk that pairs
//! sections, Descriptions, fields and subsections, and asks every `qemu-*` rule about each pair.
//!
//! Presence follows QEMU's rule (qemu-wire-format.md §1.2, §1.7): a top-level section or a
//! subsection is saved and loaded at the sender's `version_id` (it is in the header); a nested
//! struct is saved at the sender's nested `version_id` and loaded at the receiver's.

use super::allow;
use super::dump::{Desc, Dump, Field, Header, Section};
use super::step::{Hits, Step};
use crate::finding::{Direction, Finding};
use crate::rules::{self, Detect};

/// A field path being built (see the module docs).
#[derive(Clone)]
struct Path {
    text: String,
    /// The path is just a top-level Description name: the next field follows a `/`.
    at_root: bool,
}

impl Path {
    fn root(name: &str) -> Self {
        Path {
            text: name.to_owned(),
            at_root: true,
        }
    }

    fn field(&self, name: &str) -> Self {
        let sep = if self.at_root { '/' } else { '.' };
        Path {
            text: format!("{}{sep}{name}", self.text),
            at_root: false,
        }
    }

    fn subsection(&self, name: &str) -> Self {
        Path {
            text: format!("{}{{{name}}}", self.text),
            at_root: false,
        }
    }
}

/// One level of a field list being walked: the list, the next index, the path of the list's
/// owner and the version its fields are saved (sender) or loaded (receiver) at.
struct Frame<'f> {
    items: &'f [Field],
    next: usize,
    path: Path,
    version: i64,
}

impl<'f> Frame<'f> {
    fn new(items: &'f [Field], path: Path, version: i64) -> Self {
        Frame {
            items,
            next: 0,
            path,
            version,
        }
    }

    /// The fields of the nested struct `sub` at `path`, at its own version.
    fn nested(sub: &'f Desc, path: &Path) -> Self {
        Frame::new(
            sub.fields.as_deref().unwrap_or(&[]),
            path.clone(),
            sub.header.version,
        )
    }
}

/// What advancing one side of the walk gave.
enum Next<'f> {
    /// The next field of the innermost list.
    Field(Cur<'f>),
    /// The innermost list was a nested struct's and is done: the walk is back in its parent.
    Left,
    /// The side's own field list is done.
    End,
}

/// Advances one side of the walk: the next field of its innermost list, or leaves that list
/// (`None`: no list at all).
fn advance<'f>(stack: &mut Vec<Frame<'f>>) -> Option<Next<'f>> {
    let top = stack.last_mut()?;
    if let Some(f) = top.items.get(top.next) {
        top.next += 1;
        return Some(Next::Field(Cur {
            field: f,
            path: top.path.field(&f.name),
            version: top.version,
        }));
    }
    if stack.len() == 1 {
        return Some(Next::End);
    }
    stack.pop();
    Some(Next::Left)
}

/// The current field of one side of the walk, with its path and its list's version.
#[derive(Clone)]
struct Cur<'f> {
    field: &'f Field,
    path: Path,
    version: i64,
}

/// One direction of the comparison.
pub(super) struct Walk<'a> {
    pub(super) dir: Direction,
    /// "old" or "new": the sending side.
    pub(super) snd: &'static str,
    /// "old" or "new": the receiving side.
    pub(super) rcv: &'static str,
    pub(super) machines: &'a [String],
    /// The sender's section key, the `device` of findings.
    pub(super) section: String,
    pub(super) findings: &'a mut Vec<Finding>,
}

impl Walk<'_> {
    /// Shows `step` to every `qemu-*` rule; whether any of them reported.
    pub(super) fn ask(&mut self, step: &Step<'_>) -> bool {
        let mut fired = false;
        for &rule in rules::qemu::ALL {
            let Detect::QemuDump(detect) = rule.detect else {
                continue;
            };
            let mut hits = Hits {
                rule,
                dir: self.dir,
                snd: self.snd,
                rcv: self.rcv,
                section: &self.section,
                machines: self.machines,
                out: self.findings,
                fired: &mut fired,
            };
            detect(step, &mut hits);
        }
        fired
    }

    pub(super) fn check_dumps(&mut self, sender: &Dump, receiver: &Dump) {
        for s in &sender.sections {
            self.section.clone_from(&s.key);
            let d = receiver.lookup(&s.key);
            self.ask(&Step::Section {
                sender: s,
                receiver: d,
            });
            if let Some(d) = d {
                self.check_section(s, d);
            }
        }
    }

    fn check_section(&mut self, s: &Section, d: &Section) {
        let top = Path::root("");
        self.ask_versions("section", &s.header, &d.header, &top);
        let owner = format!("section \"{}\"", s.key);
        self.ask_entries(&owner, "section", &s.header, &d.header, &top);
        if let (Some(sd), Some(dd)) = (&s.desc, &d.desc) {
            // A top-level section is saved at the sender's version, which is in its header.
            let v = sd.header.version;
            self.check_desc(sd, dd, &Path::root(&sd.name), v, v);
        }
    }

    /// Asks about the `version_id`s of a section or Description (`what`).
    fn ask_versions(&mut self, what: &str, s: &Header, d: &Header, path: &Path) {
        self.ask(&Step::Versions {
            what,
            sender: s.version,
            receiver: d.version,
            receiver_min: d.min,
            path: &path.text,
        });
    }

    /// Asks about the keys of a section or Description (`owner`, of `kind`).
    fn ask_entries(&mut self, owner: &str, kind: &str, s: &Header, d: &Header, path: &Path) {
        self.ask(&Step::Entries {
            owner,
            kind,
            sender: &s.entries,
            receiver: &d.entries,
            path: &path.text,
        });
    }

    /// Compares two Descriptions. `vs` and `vl`: the version the sender saves and the receiver
    /// loads this Description's fields at.
    fn check_desc(&mut self, s: &Desc, d: &Desc, path: &Path, vs: i64, vl: i64) {
        let owner = format!("Description \"{}\"", s.name);
        self.ask_versions(&owner, &s.header, &d.header, path);
        if self.ask(&Step::Description {
            sender: s,
            receiver: d,
            path: &path.text,
        }) {
            return;
        }
        self.ask_entries(&owner, "Description", &s.header, &d.header, path);
        match (&s.fields, &d.fields) {
            (Some(sf), Some(df)) => self.walk_fields(sf, df, &s.name, path, vs, vl),
            // The script does not look here: the sender sends no field, the receiver expects some.
            (None, Some(df)) => self.walk_fields(&[], df, &s.name, path, vs, vl),
            _ => {}
        }
        if let (Some(ss), Some(ds)) = (&s.subsections, &d.subsections) {
            for sub in ss {
                let sub_path = path.subsection(&sub.name);
                let mut found = false;
                for dsub in ds.iter().filter(|x| x.name == sub.name) {
                    found = true;
                    // A subsection is saved at the sender's version, which is in its header.
                    let v = sub.header.version;
                    self.check_desc(sub, dsub, &sub_path, v, v);
                }
                self.ask(&Step::Subsection {
                    sub,
                    parent: s,
                    found,
                    path: &sub_path.text,
                });
            }
        }
    }

    /// Walks two field lists in lock-step, with the allowances of the module docs.
    ///
    /// The state machine follows QEMU's checker so that the two report the same things: each
    /// side advances unless it is held back (while an `unused` on one side absorbs fields of the
    /// other, or for one step after entering or leaving a nested struct); `pending` counts the
    /// bytes of an `unused` still to be matched.
    fn walk_fields(
        &mut self,
        s_fields: &[Field],
        d_fields: &[Field],
        desc_name: &str,
        path: &Path,
        vs: i64,
        vl: i64,
    ) {
        let mut s_stack = vec![Frame::new(s_fields, path.clone(), vs)];
        let mut d_stack = vec![Frame::new(d_fields, path.clone(), vl)];
        let mut s_cur: Option<Cur<'_>> = None;
        let mut d_cur: Option<Cur<'_>> = None;
        let (mut adv_s, mut adv_d) = (true, true);
        let mut pending: i128 = 0;
        // Every step consumes a field, enters or leaves a struct, or clears a hold; this bound is
        // far above what any input needs and only guards against a logic error.
        let mut budget = 8 * (count_fields(s_fields) + count_fields(d_fields)) + 64;
        let mut sender_done = false;

        while budget > 0 {
            budget -= 1;

            if adv_s {
                match advance(&mut s_stack) {
                    None => return,
                    Some(Next::Field(c)) => s_cur = Some(c),
                    Some(Next::End) => {
                        sender_done = true;
                        break;
                    }
                    Some(Next::Left) => continue,
                }
            } else if pending == 0 {
                adv_s = true;
            }

            if adv_d {
                match advance(&mut d_stack) {
                    None => return,
                    Some(Next::Field(c)) => d_cur = Some(c),
                    Some(Next::End) => {
                        if let Some(s) = &s_cur {
                            self.ask(&Step::ReceiverEnds {
                                sender: s.field,
                                path: &s.path.text,
                            });
                        }
                        return;
                    }
                    Some(Next::Left) => {
                        adv_s = false;
                        continue;
                    }
                }
            } else if pending == 0 {
                adv_d = true;
            }

            let (Some(s), Some(d)) = (s_cur.clone(), d_cur.clone()) else {
                return;
            };

            if pending != 0 {
                // One side's `unused` is absorbing the other side's fields.
                let near = if !adv_d {
                    pending -= s.field.wire_size();
                    &s
                } else if !adv_s {
                    pending -= d.field.wire_size();
                    &d
                } else {
                    return;
                };
                if pending == 0 {
                    adv_s = true;
                    adv_d = true;
                } else if pending < 0 {
                    self.ask(&Step::UnusedMismatch {
                        near: &near.field.name,
                        left_at_end: None,
                        path: &near.path.text,
                    });
                    return;
                }
                continue;
            }

            if !allow::names_match(desc_name, &s.field.name, &d.field.name) {
                // One side has the other's next fields in a nested struct (the receiver moved
                // them into it, or the sender had them there): walk into it, holding the other
                // side for a step.
                if let Some(sub) = allow::substruct_starting_with(d.field, &s.field.name) {
                    d_stack.push(Frame::nested(sub, &d.path));
                    adv_s = false;
                    continue;
                }
                if let Some(sub) = allow::substruct_starting_with(s.field, &d.field.name) {
                    s_stack.push(Frame::nested(sub, &s.path));
                    adv_d = false;
                    continue;
                }
                if s.field.is_unused() || d.field.is_unused() {
                    let (ss, ds) = (s.field.wire_size(), d.field.wire_size());
                    if ss == ds {
                        continue;
                    }
                    if d.field.is_unused() {
                        adv_d = false;
                        pending = ds - ss;
                    } else {
                        adv_s = false;
                        pending = ss - ds;
                    }
                    continue;
                }
                self.ask(&Step::Misaligned {
                    sender: s.field,
                    receiver: d.field,
                    desc: desc_name,
                    path: &s.path.text,
                });
                return;
            }

            self.check_field_pair(&s, &d);
        }

        if !sender_done {
            return;
        }
        if pending != 0 {
            // An `unused` of the receiver is still open when the sender has no more fields
            // (the script stops silently here).
            if let Some(d) = &d_cur {
                self.ask(&Step::UnusedMismatch {
                    near: &d.field.name,
                    left_at_end: Some(pending),
                    path: &d.path.text,
                });
            }
            return;
        }
        // The receiver's remaining fields (the script never looks at them).
        for frame in d_stack.iter().rev() {
            for f in frame.items.get(frame.next..).unwrap_or(&[]) {
                self.ask(&Step::Appended {
                    field: f,
                    version: frame.version,
                    path: &frame.path.field(&f.name).text,
                });
            }
        }
    }

    fn check_field_pair(&mut self, s: &Cur<'_>, d: &Cur<'_>) {
        let (sf, df) = (s.field, d.field);
        self.ask(&Step::Versions {
            what: &format!("field \"{}\"", sf.name),
            sender: sf.version,
            receiver: df.version,
            receiver_min: None,
            path: &s.path.text,
        });
        self.ask(&Step::FieldPair {
            sender: sf,
            receiver: df,
            sender_version: s.version,
            receiver_version: d.version,
            path: &s.path.text,
        });
        if let (Some(sd), Some(dd)) = (&sf.desc, &df.desc) {
            // Nested structs are saved and loaded at each side's own nested version (§1.7).
            self.check_desc(sd, dd, &s.path, sd.header.version, dd.header.version);
        }
    }
}

/// Fields in a list, nested structs included (a bound for the walk).
fn count_fields(fields: &[Field]) -> usize {
    fields
        .iter()
        .map(|f| {
            1 + f
                .desc
                .as_ref()
                .and_then(|d| d.fields.as_deref())
                .map_or(0, count_fields)
        })
        .sum()
}
