//! The value model of decoded payloads: [`Value`] and its printing the way
//! `analyze-migration.py` prints it.

/// A decoded field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An integer of `size` bytes (1, 2, 4 or 8), big-endian on the wire.
    Int {
        /// Bytes on the wire.
        size: u8,
        /// Whether the codec is signed (`int*`, and `int64 equal`, which QEMU also uses for
        /// `uint64`).
        signed: bool,
        /// The raw bits, zero-extended.
        value: u64,
    },
    /// A `bool` (any non-zero byte is true).
    Bool(bool),
    /// Raw bytes: buffers, timers, unused bytes and every type the decoder does not know.
    Bytes(Vec<u8>),
    /// A struct (section, nested struct or subsection).
    Struct {
        /// Fields by vmdesc name, in wire order (arrays are one [`Value::Array`] entry).
        fields: Vec<(String, Value)>,
        /// Subsections by name, in wire order.
        subsections: Vec<(String, Value)>,
    },
    /// The elements of an array field.
    Array(Vec<Value>),
}

impl Value {
    /// The numeric value of an [`Value::Int`] (sign-extended when signed).
    #[must_use]
    pub fn int(&self) -> Option<i128> {
        match *self {
            Value::Int {
                size,
                signed,
                value,
            } => Some(if signed {
                i128::from(sign_extend(value, size))
            } else {
                i128::from(value)
            }),
            _ => None,
        }
    }

    /// The field or subsection `name` of a [`Value::Struct`].
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Struct {
                fields,
                subsections,
            } => fields
                .iter()
                .chain(subsections)
                .find(|(n, _)| n == name)
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

fn sign_extend(value: u64, size: u8) -> i64 {
    let shift = 64 - 8 * u32::from(size.clamp(1, 8));
    // Reinterpreting the bits is the point here.
    #[allow(clippy::cast_possible_wrap)]
    let v = (value << shift) as i64;
    v >> shift
}

/// Prints a value the way `analyze-migration.py` does: ints as `"0x%0{2*size}x"` (negative
/// signed values followed by ` (-n)`), bools as JSON booleans, bytes as space-separated hex
/// pairs, structs as objects (fields, then subsections keyed by name), arrays as lists.
#[must_use]
pub fn value_to_json(v: &Value) -> serde_json::Value {
    use std::fmt::Write as _;
    match v {
        Value::Int {
            size,
            signed,
            value,
        } => {
            let width = usize::from(*size) * 2;
            let mut s = format!("0x{value:0width$x}");
            if *signed {
                let n = sign_extend(*value, *size);
                if n < 0 {
                    let _ = write!(s, " ({n})");
                }
            }
            serde_json::Value::String(s)
        }
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Bytes(b) => {
            let mut s = String::with_capacity(b.len() * 3);
            for (i, x) in b.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                let _ = write!(s, "{x:02x}");
            }
            serde_json::Value::String(s)
        }
        Value::Struct {
            fields,
            subsections,
        } => {
            let mut m = serde_json::Map::new();
            for (k, v) in fields.iter().chain(subsections) {
                m.insert(k.clone(), value_to_json(v));
            }
            serde_json::Value::Object(m)
        }
        Value::Array(items) => serde_json::Value::Array(items.iter().map(value_to_json).collect()),
    }
}
