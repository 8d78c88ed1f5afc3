//! Helpers used only by code that `#[derive(VmState)]` generates. Not a public API.

use std::fmt::Display;

pub use crate::context::{GateCtx, LoadCx, SaveCx};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::field::Field;
pub use crate::reader::Reader;
pub use crate::schema::{
    CmpOp, FieldSchema, Gate, Kind, Location, MachineVersion, Pin, PropSchema, SchemaRef,
    StructSchema, SubsectionSchema,
};
pub use crate::state::VmState;
pub use crate::writer::Writer;
pub use std::borrow::Cow;

pub use crate::export::SCHEMAS;
pub use linkme;

/// Marker the derive emits to check that a nested field's type was declared `nested`.
pub trait NestedState: VmState {}

/// QEMU_VM_SUBSECTION.
pub const SUBSECTION: u8 = 0x05;

/// Checks a stream version against `[min, max]`.
///
/// # Errors
/// `VersionTooNew` / `VersionTooOld`.
#[inline]
pub fn check_version(version: u32, min: u32, max: u32, pos: u64) -> Result<()> {
    if version > max {
        return Err(Error::new(
            ErrorKind::VersionTooNew {
                found: version,
                max,
            },
            pos,
        ));
    }
    if version < min {
        return Err(Error::new(
            ErrorKind::VersionTooOld {
                found: version,
                min,
            },
            pos,
        ));
    }
    Ok(())
}

/// Maps a load-side hook or validation result.
///
/// # Errors
/// `ValidationFailed` with the hook's message.
#[inline]
pub fn load_hook<E: Display>(r: std::result::Result<(), E>, what: &str, pos: u64) -> Result<()> {
    r.map_err(|e| {
        Error::new(
            ErrorKind::ValidationFailed {
                message: format!("{what}: {e}"),
            },
            pos,
        )
    })
}

/// Maps a save-side hook result.
///
/// # Errors
/// `SaveFailed` with the hook's message.
#[inline]
pub fn save_hook<E: Display>(r: std::result::Result<(), E>, what: &str) -> Result<()> {
    r.map_err(|e| {
        Error::without_offset(ErrorKind::SaveFailed {
            message: format!("{what}: {e}"),
        })
    })
}

/// Writes a subsection header: `05 · u8 len · name · be32 version`.
///
/// # Errors
/// Writer errors.
#[inline]
pub fn write_subsection_header<W: Writer + ?Sized>(
    w: &mut W,
    name: &str,
    version: u32,
) -> Result<()> {
    w.write_u8(SUBSECTION)?;
    w.write_counted_str(name)?;
    w.write_be32(version)
}

/// The subsection loop's peek step (QEMU's algorithm): returns `Ok(None)` when the next bytes
/// are not a subsection of `parent` (not `0x05`, name too short, or no `parent` prefix), the
/// index into `names` and the subsection version when it is one of ours (header consumed), and
/// `UnknownSubsection` when the name has our prefix but is not declared.
///
/// # Errors
/// `UnknownSubsection`; end of input inside the header.
pub fn next_subsection<R: Reader + ?Sized>(
    r: &mut R,
    parent: &str,
    names: &[&str],
) -> Result<Option<(usize, u32)>> {
    let pos = r.position();
    let Some(name) = peek_subsection_name(r, parent)? else {
        return Ok(None);
    };
    let len = name.len();
    let Some(idx) = names.iter().position(|n| n.as_bytes() == name) else {
        return Err(Error::new(
            ErrorKind::UnknownSubsection {
                name: String::from_utf8_lossy(name).into_owned(),
            },
            pos,
        ));
    };
    r.take(2 + len)?;
    let version = r.read_be32()?;
    Ok(Some((idx, version)))
}

/// Peeks at a subsection header of `parent` without consuming it: the name when the next bytes
/// are `05 · len · name` with `len > parent.len()` and `name` starting with `parent`. Anything
/// else (also a header cut short by the end of input) ends the subsection loop, as in QEMU.
///
/// # Errors
/// Reader errors other than the end of input.
#[inline]
pub(crate) fn peek_subsection_name<'r, R: Reader + ?Sized>(
    r: &'r mut R,
    parent: &str,
) -> Result<Option<&'r [u8]>> {
    let Some(h) = r.peek(2)? else {
        return Ok(None);
    };
    if h[0] != SUBSECTION {
        return Ok(None);
    }
    let len = usize::from(h[1]);
    if len < parent.len() + 1 {
        return Ok(None);
    }
    let Some(h) = r.peek(2 + len)? else {
        return Ok(None);
    };
    let name = &h[2..];
    Ok(name.starts_with(parent.as_bytes()).then_some(name))
}

/// `DuplicateSubsection` error.
#[cold]
#[must_use]
pub fn duplicate_subsection(name: &str, pos: u64) -> Error {
    Error::new(
        ErrorKind::DuplicateSubsection {
            name: name.to_owned(),
        },
        pos,
    )
}

/// A fixed-size byte buffer field (`#[vmstate(buffer)]`).
pub trait ByteBuffer {
    /// Its length.
    const LEN: u32;
    /// The bytes.
    fn bytes(&self) -> &[u8];
    /// The bytes, mutable.
    fn bytes_mut(&mut self) -> &mut [u8];
}

impl<const N: usize> ByteBuffer for [u8; N] {
    #[allow(clippy::cast_possible_truncation)]
    const LEN: u32 = N as u32;
    #[inline]
    fn bytes(&self) -> &[u8] {
        self
    }
    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Saves a fixed buffer.
///
/// # Errors
/// Writer errors.
#[inline]
pub fn save_buffer<B: ByteBuffer, W: Writer + ?Sized>(b: &B, w: &mut W) -> Result<()> {
    w.write_all(b.bytes())
}

/// Loads a fixed buffer.
///
/// # Errors
/// End of input.
#[inline]
pub fn load_buffer<B: ByteBuffer, R: Reader + ?Sized>(b: &mut B, r: &mut R) -> Result<()> {
    let n = b.bytes().len();
    let s = r.take(n)?;
    b.bytes_mut().copy_from_slice(s);
    Ok(())
}

/// An integer field usable as a count or length of a variable array or buffer.
pub trait Count {
    /// The value as a count, or `None` if negative.
    fn as_count(&self) -> Option<u64>;
}

macro_rules! count_impl {
    ($($t:ty),*) => {$(
        impl Count for $t {
            #[inline]
            #[allow(unused_comparisons, clippy::cast_sign_loss)]
            fn as_count(&self) -> Option<u64> {
                if *self < 0 { None } else { Some(*self as u64) }
            }
        }
    )*};
}
count_impl!(u8, u16, u32, u64, i8, i16, i32, i64, usize);

/// The container of a variable array or buffer: a `Vec<T>` (grown up to the declared maximum)
/// or a fixed array `[T; N]` (capacity `N`).
pub trait VarContainer {
    /// Element type.
    type Elem;
    /// The local capacity (`None`: grows up to the declared maximum).
    fn capacity(&self) -> Option<usize>;
    /// Makes room for exactly `n` elements (`n` already checked against capacity and max) and
    /// returns them.
    fn prepare(&mut self, n: usize) -> &mut [Self::Elem];
    /// The first `n` elements for saving, if there are that many.
    fn elems_mut(&mut self, n: usize) -> Option<&mut [Self::Elem]>;
}

impl<T: Default> VarContainer for Vec<T> {
    type Elem = T;
    fn capacity(&self) -> Option<usize> {
        None
    }
    fn prepare(&mut self, n: usize) -> &mut [T] {
        self.truncate(n);
        self.resize_with(n, T::default);
        self
    }
    fn elems_mut(&mut self, n: usize) -> Option<&mut [T]> {
        self.get_mut(..n)
    }
}

impl<T, const N: usize> VarContainer for [T; N] {
    type Elem = T;
    fn capacity(&self) -> Option<usize> {
        Some(N)
    }
    fn prepare(&mut self, n: usize) -> &mut [T] {
        &mut self[..n]
    }
    fn elems_mut(&mut self, n: usize) -> Option<&mut [T]> {
        self.get_mut(..n)
    }
}

/// Checks a count from the stream before any element is read: not negative, at most the
/// declared maximum and at most the local capacity.
///
/// # Errors
/// `InvalidValue` (negative) or `LengthTooLarge`.
#[inline]
pub fn checked_count<C: Count, V: VarContainer + ?Sized>(
    count: &C,
    max: u32,
    container: &V,
    pos: u64,
) -> Result<usize> {
    let n = count.as_count().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidValue {
                expected: "a non-negative count".into(),
                found: -1,
            },
            pos,
        )
    })?;
    let limit = container
        .capacity()
        .map_or(u64::from(max), |c| (c as u64).min(u64::from(max)));
    if n > limit {
        return Err(Error::new(ErrorKind::LengthTooLarge { len: n, limit }, pos));
    }
    usize::try_from(n).map_err(|_| Error::new(ErrorKind::LengthTooLarge { len: n, limit }, pos))
}

/// Saves the first `count` elements of a variable array.
///
/// # Errors
/// `SaveFailed` when the count is above the maximum or the container holds fewer elements;
/// writer errors.
pub fn save_varray<C, V, W>(
    v: &mut V,
    count: &C,
    max: u32,
    w: &mut W,
    cx: &mut SaveCx<'_>,
) -> Result<u64>
where
    C: Count,
    V: VarContainer + ?Sized,
    V::Elem: Field,
    W: Writer + ?Sized,
{
    let n = count.as_count().unwrap_or(u64::MAX);
    let elems =
        usize::try_from(n)
            .ok()
            .filter(|_| n <= u64::from(max))
            .and_then(|n| v.elems_mut(n))
            .ok_or_else(|| {
                Error::without_offset(ErrorKind::SaveFailed {
                    message: format!(
                    "count {} is negative, above the maximum {max} or above the number of elements",
                    count.as_count().map_or_else(|| "<0".to_owned(), |c| c.to_string())
                ),
                })
            })?;
    for (i, e) in elems.iter_mut().enumerate() {
        e.save_field(w, cx).map_err(|err| err.at_index(i))?;
    }
    Ok(n)
}

/// Loads a variable array of `count` elements (checked first).
///
/// # Errors
/// Count errors, then element errors.
pub fn load_varray<C, V, R>(
    v: &mut V,
    count: &C,
    max: u32,
    r: &mut R,
    cx: &mut LoadCx<'_>,
) -> Result<()>
where
    C: Count,
    V: VarContainer + ?Sized,
    V::Elem: Field,
    R: Reader + ?Sized,
{
    let n = checked_count(count, max, v, r.position())?;
    for (i, e) in v.prepare(n).iter_mut().enumerate() {
        e.load_field(r, cx).map_err(|err| err.at_index(i))?;
    }
    Ok(())
}

/// Saves a variable byte buffer of `len` bytes.
///
/// # Errors
/// As [`save_varray`].
pub fn save_vbuffer<C, V, W>(v: &mut V, len: &C, max: u32, w: &mut W) -> Result<()>
where
    C: Count,
    V: VarContainer<Elem = u8> + ?Sized,
    W: Writer + ?Sized,
{
    let n = len.as_count().unwrap_or(u64::MAX);
    let bytes = usize::try_from(n)
        .ok()
        .filter(|_| n <= u64::from(max))
        .and_then(|n| v.elems_mut(n))
        .ok_or_else(|| {
            Error::without_offset(ErrorKind::SaveFailed {
                message: format!("buffer length is above the maximum {max} or the buffer size"),
            })
        })?;
    w.write_all(bytes)
}

/// Loads a variable byte buffer of `len` bytes (checked first).
///
/// # Errors
/// Length errors, end of input.
pub fn load_vbuffer<C, V, R>(v: &mut V, len: &C, max: u32, r: &mut R) -> Result<()>
where
    C: Count,
    V: VarContainer<Elem = u8> + ?Sized,
    R: Reader + ?Sized,
{
    let n = checked_count(len, max, v, r.position())?;
    let dst = v.prepare(n);
    let src = r.take(n)?;
    dst.copy_from_slice(src);
    Ok(())
}

/// An integer field that can be `equal`-checked or range-checked.
pub trait IntValue: Copy {
    /// The value widened.
    fn to_i128(self) -> i128;
}

macro_rules! intvalue_impl {
    ($($t:ty),*) => {$(
        impl IntValue for $t {
            #[inline]
            fn to_i128(self) -> i128 { i128::from(self) }
        }
    )*};
}
intvalue_impl!(u8, u16, u32, u64, i8, i16, i32, i64);

impl IntValue for bool {
    #[inline]
    fn to_i128(self) -> i128 {
        i128::from(u8::from(self))
    }
}

/// Loads an `equal` field: the value read must equal the local one, which is kept.
///
/// # Errors
/// `NotEqual`; decode errors.
#[inline]
pub fn load_equal<T: Field + IntValue, R: Reader + ?Sized>(
    local: &mut T,
    r: &mut R,
    cx: &mut LoadCx<'_>,
) -> Result<()> {
    let pos = r.position();
    let mut v = *local;
    v.load_field(r, cx)?;
    if v.to_i128() != local.to_i128() {
        return Err(Error::new(
            ErrorKind::NotEqual {
                expected: local.to_i128(),
                found: v.to_i128(),
            },
            pos,
        ));
    }
    Ok(())
}

/// Checks an integer against a declared inclusive range.
///
/// # Errors
/// `InvalidValue`.
#[inline]
pub fn check_range<T: IntValue>(
    v: T,
    lo: i128,
    hi: i128,
    text: &'static str,
    pos: u64,
) -> Result<()> {
    let x = v.to_i128();
    if x < lo || x > hi {
        return Err(Error::new(
            ErrorKind::InvalidValue {
                expected: text.into(),
                found: x,
            },
            pos,
        ));
    }
    Ok(())
}
