//! Printing a vmdesc the way QEMU's JSON writer does: `", "` and `": "` separators, no trailing
//! newline.
//!
//! The text is appended straight to one `String`, sized up front from the tree: strings are
//! copied in runs between the (rare) characters that need escaping, and integers are formatted
//! by hand rather than through `core::fmt`. Saving a machine spends most of its time here, since
//! the vmdesc is most of the stream's bytes.

use super::{DescArray, DescBody, DescDevice, DescStruct, Vmdesc};

/// Where JSON text goes: a `String`, or the bytes of a stream being written (so a save writes the
/// vmdesc straight into its output buffer, without a copy of its own).
pub trait JsonOut {
    /// Appends `s`.
    fn push_str(&mut self, s: &str);
    /// Appends one ASCII byte.
    fn push_ascii(&mut self, b: u8);
    /// Reserves room for `n` more bytes.
    fn reserve(&mut self, n: usize);
}

impl JsonOut for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
    fn push_ascii(&mut self, b: u8) {
        self.push(char::from(b));
    }
    fn reserve(&mut self, n: usize) {
        String::reserve(self, n);
    }
}

impl JsonOut for Vec<u8> {
    fn push_str(&mut self, s: &str) {
        self.extend_from_slice(s.as_bytes());
    }
    fn push_ascii(&mut self, b: u8) {
        self.push(b);
    }
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
}

/// Appends `s` as a JSON string literal. `"`, `\` and control characters are escaped (`\n`,
/// `\r`, `\t`, else `\u00XX`); everything else, including non-ASCII, is copied verbatim.
fn json_str<O: JsonOut + ?Sized>(out: &mut O, s: &str) {
    out.push_ascii(b'"');
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
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(esc);
        }
        run = i + 1;
    }
    out.push_str(&s[run..]);
    out.push_ascii(b'"');
}

/// Appends `n` in decimal.
fn push_u64<O: JsonOut + ?Sized>(out: &mut O, mut n: u64) {
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
        out.push_ascii(d);
    }
}

/// A generous estimate of the text length of a struct's members (so the output is allocated
/// once in the common case).
fn estimate(d: &DescStruct) -> usize {
    let fields: usize = d
        .fields
        .iter()
        .map(|f| {
            64 + f.name.len()
                + f.ty.len()
                + f.strukt.as_deref().map_or(0, |s| 16 + estimate(s))
                + f.elems.iter().map(|e| 2 + estimate(e)).sum::<usize>()
        })
        .sum();
    let subs: usize = d.subsections.iter().map(|s| 4 + estimate(s)).sum();
    64 + d.vmsd_name.len() + fields + subs
}

fn write_struct_members<O: JsonOut + ?Sized>(out: &mut O, d: &DescStruct) {
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
            if !s.is_null() {
                write_struct_members(out, s);
            }
            out.push_ascii(b'}');
        }
        // List and tree elements: their members straight in the field object, as QEMU does.
        for e in &f.elems {
            out.push_str(", ");
            write_struct_members(out, e);
        }
        out.push_str(", \"size\": ");
        push_u64(out, f.size);
        out.push_ascii(b'}');
    }
    out.push_ascii(b']');
    if !d.subsections.is_empty() {
        out.push_str(", \"subsections\": [");
        for (i, s) in d.subsections.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_ascii(b'{');
            write_struct_members(out, s);
            out.push_ascii(b'}');
        }
        out.push_ascii(b']');
    }
}

/// Writes a JSON value with QEMU's separators (`", "`, `": "`).
pub fn write_value_qemu<O: JsonOut + ?Sized>(out: &mut O, v: &serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            out.push_ascii(b'{');
            for (i, (k, v)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                json_str(out, k);
                out.push_str(": ");
                write_value_qemu(out, v);
            }
            out.push_ascii(b'}');
        }
        serde_json::Value::Array(a) => {
            out.push_ascii(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value_qemu(out, v);
            }
            out.push_ascii(b']');
        }
        serde_json::Value::String(s) => json_str(out, s),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(n) => push_u64(out, n),
            None => out.push_str(&n.to_string()),
        },
        other => out.push_str(&other.to_string()),
    }
}

/// One device entry as QEMU writes it.
pub fn write_device<O: JsonOut + ?Sized>(out: &mut O, d: &DescDevice) {
    match &d.body {
        DescBody::Vmsd(s) => {
            out.reserve(48 + d.name.len() + estimate(s));
            out.push_str("{\"name\": ");
            json_str(out, &d.name);
            out.push_str(", \"instance_id\": ");
            push_u64(out, u64::from(d.instance_id));
            out.push_str(", ");
            write_struct_members(out, s);
            out.push_ascii(b'}');
        }
        DescBody::Raw(v) => write_value_qemu(out, v),
    }
}

/// The whole vmdesc JSON as QEMU writes it.
#[must_use]
pub fn write_json(v: &Vmdesc) -> String {
    let mut out = String::new();
    write_json_into(v, &mut out);
    out
}

/// [`write_json`], appended to `out` (e.g. straight into a stream's output buffer).
pub fn write_json_into<O: JsonOut + ?Sized>(v: &Vmdesc, out: &mut O) {
    let guess: usize = v
        .devices
        .iter()
        .map(|d| match &d.body {
            DescBody::Vmsd(s) => 48 + d.name.len() + estimate(s),
            DescBody::Raw(_) => 256,
        })
        .sum();
    out.reserve(64 + guess);
    out.push_ascii(b'{');
    if let Some(c) = &v.configuration {
        out.push_str("\"configuration\": ");
        write_value_qemu(out, c);
        out.push_str(", ");
    }
    out.push_str("\"page_size\": ");
    push_u64(out, v.page_size);
    out.push_str(", \"devices\": [");
    for (i, d) in v.devices.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_device(out, d);
    }
    out.push_ascii(b']');
    if let Some(m) = &v.manifest {
        out.push_str(", \"");
        out.push_str(super::MANIFEST_KEY);
        out.push_str("\": ");
        write_value_qemu(out, m);
    }
    out.push_ascii(b'}');
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
