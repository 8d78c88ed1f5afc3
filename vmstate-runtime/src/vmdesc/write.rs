//! Printing a vmdesc the way QEMU's JSON writer does: `", "` and `": "` separators, no trailing
//! newline.
//!
//! The text is appended straight to one `String`, sized up front from the tree: strings are
//! copied in runs between the (rare) characters that need escaping, and integers are formatted
//! by hand rather than through `core::fmt`. Saving a machine spends most of its time here, since
//! the vmdesc is most of the stream's bytes.

use std::fmt::Write as _;

use super::{DescArray, DescBody, DescDevice, DescStruct, Vmdesc};

/// Appends `s` as a JSON string literal. `"`, `\` and control characters are escaped (`\n`,
/// `\r`, `\t`, else `\u00XX`); everything else, including non-ASCII, is copied verbatim.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&s[run..i]);
        if esc.is_empty() {
            let _ = write!(out, "\\u{:04x}", b);
        } else {
            out.push_str(esc);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Appends `n` in decimal.
fn push_u64(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.push(char::from(d));
    }
}

/// A generous estimate of the text length of a struct's members (so the output is allocated
/// once in the common case).
fn estimate(d: &DescStruct) -> usize {
    let fields: usize = d
        .fields
        .iter()
        .map(|f| {
            64 + f.name.len() + f.ty.len() + f.strukt.as_deref().map_or(0, |s| 16 + estimate(s))
        })
        .sum();
    let subs: usize = d.subsections.iter().map(|s| 4 + estimate(s)).sum();
    64 + d.vmsd_name.len() + fields + subs
}

fn write_struct_members(out: &mut String, d: &DescStruct) {
    out.push_str("\"vmsd_name\": ");
    json_str(out, &d.vmsd_name);
    out.push_str(", \"version\": ");
    push_u64(out, u64::from(d.version));
    out.push_str(", \"fields\": [");
    for (i, f) in d.fields.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str("{\"name\": ");
        json_str(out, &f.name);
        match f.array {
            Some(DescArray::Len(n)) => {
                out.push_str(", \"array_len\": ");
                push_u64(out, n);
            }
            Some(DescArray::Index(n)) => {
                out.push_str(", \"index\": ");
                push_u64(out, n);
            }
            None => {}
        }
        out.push_str(", \"type\": ");
        json_str(out, &f.ty);
        if let Some(s) = &f.strukt {
            out.push_str(", \"struct\": {");
            write_struct_members(out, s);
            out.push('}');
        }
        out.push_str(", \"size\": ");
        push_u64(out, f.size);
        out.push('}');
    }
    out.push(']');
    if !d.subsections.is_empty() {
        out.push_str(", \"subsections\": [");
        for (i, s) in d.subsections.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('{');
            write_struct_members(out, s);
            out.push('}');
        }
        out.push(']');
    }
}

/// Writes a JSON value with QEMU's separators (`", "`, `": "`).
pub fn write_value_qemu(out: &mut String, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            out.push('{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_str(out, k);
                out.push_str(": ");
                write_value_qemu(out, v);
            }
            out.push('}');
        }
        serde_json::Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value_qemu(out, v);
            }
            out.push(']');
        }
        serde_json::Value::String(s) => json_str(out, s),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(n) => push_u64(out, n),
            None => {
                let _ = write!(out, "{n}");
            }
        },
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// One device entry as QEMU writes it.
pub fn write_device(out: &mut String, d: &DescDevice) {
    match &d.body {
        DescBody::Vmsd(s) => {
            out.reserve(48 + d.name.len() + estimate(s));
            out.push_str("{\"name\": ");
            json_str(out, &d.name);
            out.push_str(", \"instance_id\": ");
            push_u64(out, u64::from(d.instance_id));
            out.push_str(", ");
            write_struct_members(out, s);
            out.push('}');
        }
        DescBody::Raw(v) => write_value_qemu(out, v),
    }
}

/// The whole vmdesc JSON as QEMU writes it.
#[must_use]
pub fn write_json(v: &Vmdesc) -> String {
    let guess: usize = v
        .devices
        .iter()
        .map(|d| match &d.body {
            DescBody::Vmsd(s) => 48 + d.name.len() + estimate(s),
            DescBody::Raw(_) => 256,
        })
        .sum();
    let mut out = String::with_capacity(64 + guess);
    out.push('{');
    if let Some(c) = &v.configuration {
        out.push_str("\"configuration\": ");
        write_value_qemu(&mut out, c);
        out.push_str(", ");
    }
    out.push_str("\"page_size\": ");
    push_u64(&mut out, v.page_size);
    out.push_str(", \"devices\": [");
    for (i, d) in v.devices.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_device(&mut out, d);
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_in_runs() {
        let mut out = String::new();
        json_str(&mut out, "a\"b\\c\nd\re\tf\u{1}g\u{7f}é");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\u{7f}é\"");
    }

    #[test]
    fn integers_print_as_core_fmt_does() {
        for n in [0, 1, 9, 10, 4096, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn raw_numbers_print_as_serde_json_does() {
        let v = serde_json::json!({"a": 1, "b": -2, "c": 1.5, "d": u64::MAX, "e": [true, null]});
        let mut out = String::new();
        write_value_qemu(&mut out, &v);
        assert_eq!(
            out,
            "{\"a\": 1, \"b\": -2, \"c\": 1.5, \"d\": 18446744073709551615, \"e\": [true, null]}"
        );
    }
}
