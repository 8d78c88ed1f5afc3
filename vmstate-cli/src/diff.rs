//! `vmstate diff`: field-level differences between two streams.
//!
//! Both streams are decoded with the generic decoder (each with its own vmdesc). FULL sections
//! are matched by (idstr, instance id); their values are compared field by field, subsections
//! included, and every leaf that differs is one [`Difference`] with its path
//! (`state.serial/fifo_timeout_timer.timer`, `channels[2].mode`). Sections present in one
//! stream only, a different machine type and different RAM blocks are differences too.

use std::path::Path;

use vmstate_runtime::decode::{value_to_json, DecodedStream, SectionKind, Value};

use crate::input::Input;
use crate::CliError;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The section's idstr (empty for the stream's framing, e.g. the machine type).
    pub section: String,
    /// The section's instance id.
    pub instance_id: u32,
    /// The field path inside the section (empty: the whole section).
    pub field: String,
    /// The value in the first stream (`None`: absent there).
    pub old: Option<String>,
    /// The value in the second stream (`None`: absent there).
    pub new: Option<String>,
}

impl Difference {
    /// One line: `serial instance 0: state.scr: 0x00 -> 0x5a`.
    #[must_use]
    pub fn line(&self) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
        let mut s = if self.section.is_empty() {
            "stream".to_owned()
        } else {
            format!("{} instance {}", self.section, self.instance_id)
        };
        if !self.field.is_empty() {
            s.push_str(": ");
            s.push_str(&self.field);
        }
        format!("{s}: {} -> {}", show(&self.old), show(&self.new))
    }

    /// As a JSON object.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "section": self.section,
            "instance_id": self.instance_id,
            "field": self.field,
            "old": self.old,
            "new": self.new,
        })
    }
}

/// Decodes both files and compares them.
///
/// # Errors
/// Either input cannot be read or decoded.
pub fn diff_files(a: &Path, b: &Path) -> Result<Vec<Difference>, CliError> {
    let da = Input::open(a)?.decode()?;
    let db = Input::open(b)?.decode()?;
    Ok(diff_streams(&da, &db))
}

fn leaf(v: &Value) -> String {
    match value_to_json(v) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The sections of a stream keyed by (idstr, instance id), in stream order: FULL sections with
/// their value, the RAM START chunk as its block list.
fn sections(d: &DecodedStream) -> Vec<((String, u32), u32, Value)> {
    let mut out = Vec::new();
    for s in &d.sections {
        let value = match (s.kind, &s.value, &s.ram) {
            (SectionKind::Full, Some(v), _) => v.clone(),
            (SectionKind::Start, _, Some(ram)) => Value::Struct {
                fields: ram
                    .blocks
                    .iter()
                    .map(|b| {
                        let size = Value::Int {
                            size: 8,
                            signed: false,
                            value: b.used_length,
                        };
                        (format!("section sizes.{}", b.idstr), size)
                    })
                    .collect(),
                subsections: Vec::new(),
            },
            _ => continue,
        };
        out.push(((s.idstr.clone(), s.instance_id), s.version, value));
    }
    out
}

/// Compares two decoded streams.
#[must_use]
pub fn diff_streams(a: &DecodedStream, b: &DecodedStream) -> Vec<Difference> {
    let mut out = Vec::new();
    if a.machine != b.machine {
        out.push(Difference {
            section: String::new(),
            instance_id: 0,
            field: "machine type".into(),
            old: a.machine.clone(),
            new: b.machine.clone(),
        });
    }
    let sa = sections(a);
    let mut sb = sections(b);
    for ((idstr, instance), version, va) in sa {
        let found = sb
            .iter()
            .position(|((i, n), _, _)| *i == idstr && *n == instance);
        let mut d = Walk {
            section: &idstr,
            instance,
            out: &mut out,
        };
        match found {
            Some(i) => {
                let (_, vb_version, vb) = sb.remove(i);
                if version != vb_version {
                    d.push(
                        "(section version)",
                        Some(version.to_string()),
                        Some(vb_version.to_string()),
                    );
                }
                d.value("", &va, &vb);
            }
            None => d.push("", Some("(present)".into()), None),
        }
    }
    for ((idstr, instance), _, _) in sb {
        Walk {
            section: &idstr,
            instance,
            out: &mut out,
        }
        .push("", None, Some("(present)".into()));
    }
    out
}

struct Walk<'a> {
    section: &'a str,
    instance: u32,
    out: &'a mut Vec<Difference>,
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

impl Walk<'_> {
    fn push(&mut self, path: &str, old: Option<String>, new: Option<String>) {
        self.out.push(Difference {
            section: self.section.to_owned(),
            instance_id: self.instance,
            field: path.to_owned(),
            old,
            new,
        });
    }

    fn value(&mut self, path: &str, a: &Value, b: &Value) {
        match (a, b) {
            (
                Value::Struct {
                    fields: fa,
                    subsections: sa,
                },
                Value::Struct {
                    fields: fb,
                    subsections: sb,
                },
            ) => {
                self.named(path, fa, fb);
                self.named(path, sa, sb);
            }
            (Value::Array(xa), Value::Array(xb)) => {
                for i in 0..xa.len().max(xb.len()) {
                    let p = format!("{path}[{i}]");
                    match (xa.get(i), xb.get(i)) {
                        (Some(x), Some(y)) => self.value(&p, x, y),
                        (x, y) => self.push(&p, x.map(leaf), y.map(leaf)),
                    }
                }
            }
            _ if a == b => {}
            _ => self.push(path, Some(leaf(a)), Some(leaf(b))),
        }
    }

    fn named(&mut self, path: &str, a: &[(String, Value)], b: &[(String, Value)]) {
        for (name, va) in a {
            let p = join(path, name);
            match b.iter().find(|(n, _)| n == name) {
                Some((_, vb)) => self.value(&p, va, vb),
                None => self.push(&p, Some(leaf(va)), None),
            }
        }
        for (name, vb) in b {
            if !a.iter().any(|(n, _)| n == name) {
                self.push(&join(path, name), None, Some(leaf(vb)));
            }
        }
    }
}
