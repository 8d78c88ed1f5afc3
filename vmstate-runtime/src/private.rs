//! Helpers used only by code that `#[derive(VmState)]` generates. Not a public API.

use std::collections::VecDeque;
use std::fmt::Display;

pub use crate::context::{GateCtx, LoadCx, SaveCx};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::field::{CodecDescription, Field, TmpMarker, TmpView};
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` is used as a list or tree element but is not `#[vmstate(nested)]`",
    label = "not a nested VmState struct",
    note = "QEMU's QTAILQ, QLIST and GTREE elements are vmsds: add `#[derive(VmState)]` and `#[vmstate(name = \"...\", nested)]` to the element's definition"
)]
pub trait NestedState: VmState {}

/// A field predicate (`when = pred(path)`): `fn(&S) -> bool`, or `fn(&S, u32) -> bool`, which
/// receives the version of the vmsd being saved or loaded (QEMU's `field_exists(opaque,
/// version_id)`). `M` tells the two apart; it is inferred.
#[diagnostic::on_unimplemented(
    message = "a field predicate must be `fn(&self) -> bool` or `fn(&self, version: u32) -> bool`",
    label = "not a field predicate of `{S}`"
)]
pub trait PredFn<S: ?Sized, M> {
    /// Evaluates the predicate.
    fn eval(&self, s: &S, version: u32) -> bool;
}

impl<S: ?Sized, F: Fn(&S) -> bool> PredFn<S, fn(&S)> for F {
    #[inline]
    fn eval(&self, s: &S, _: u32) -> bool {
        self(s)
    }
}

impl<S: ?Sized, F: Fn(&S, u32) -> bool> PredFn<S, fn(&S, u32)> for F {
    #[inline]
    fn eval(&self, s: &S, version: u32) -> bool {
        self(s, version)
    }
}

/// Calls a field predicate (see [`PredFn`]).
#[inline]
pub fn call_pred<S: ?Sized, M, F: PredFn<S, M>>(f: F, s: &S, version: u32) -> bool {
    f.eval(s, version)
}

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

/// Saves a `u32` as be16 (QEMU's `VMSTATE_UINT16_HACK`).
///
/// # Errors
/// [`ErrorKind::SaveFailed`] when the value does not fit 16 bits (QEMU never saves such a
/// field; a value that would be cut is refused rather than truncated); writer errors.
#[inline]
pub fn save_u16_hack<W: Writer + ?Sized>(v: u32, w: &mut W) -> Result<()> {
    let v = u16::try_from(v).map_err(|_| {
        Error::without_offset(ErrorKind::SaveFailed {
            message: format!("value {v:#x} does not fit the 16 bits it is sent as (u16_hack)"),
        })
    })?;
    w.write_be16(v)
}

/// Loads a be16 into a `u32` (QEMU's `get_uint32_as_uint16`: zero-extended; every be16 fits).
///
/// # Errors
/// End of input.
#[inline]
pub fn load_u16_hack<R: Reader + ?Sized>(v: &mut u32, r: &mut R) -> Result<()> {
    *v = u32::from(r.read_be16()?);
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

/// A count field times a constant (QEMU's `VMS_MULTIPLY` / `VMS_MULTIPLY_ELEMENTS`); a product
/// past `u64` counts as `u64::MAX`, which no maximum admits.
pub struct Multiplied<'a, C: ?Sized>(pub &'a C, pub u32);

impl<C: Count + ?Sized> Count for Multiplied<'_, C> {
    #[inline]
    fn as_count(&self) -> Option<u64> {
        self.0
            .as_count()
            .map(|n| n.saturating_mul(u64::from(self.1)))
    }
}

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

impl<V: VarContainer + ?Sized> VarContainer for Box<V> {
    type Elem = V::Elem;
    fn capacity(&self) -> Option<usize> {
        (**self).capacity()
    }
    fn prepare(&mut self, n: usize) -> &mut [V::Elem] {
        (**self).prepare(n)
    }
    fn elems_mut(&mut self, n: usize) -> Option<&mut [V::Elem]> {
        (**self).elems_mut(n)
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

/// Loads an `le` field (QEMU's `vmstate_info_int32_le`): the value read must lie in
/// `0..=local`, and then replaces the local one.
///
/// # Errors
/// `InvalidValue` naming both values (the local value is kept); decode errors.
#[inline]
pub fn load_le<R: Reader + ?Sized>(local: &mut i32, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()> {
    let pos = r.position();
    let mut v = 0i32;
    v.load_field(r, cx)?;
    if v < 0 || v > *local {
        return Err(Error::new(
            ErrorKind::InvalidValue {
                expected: format!(
                    "a value in 0..={local} (at most the destination's value {local})",
                    local = *local
                )
                .into(),
                found: i128::from(v),
            },
            pos,
        ));
    }
    *local = v;
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

fn too_many(len: u64, limit: u32, pos: u64) -> Error {
    Error::new(
        ErrorKind::LengthTooLarge {
            len,
            limit: u64::from(limit),
        },
        pos,
    )
}

fn save_too_many(what: &str, len: usize, max: u32) -> Error {
    Error::without_offset(ErrorKind::SaveFailed {
        message: format!(
            "{what} has {len} elements, above its declared maximum {max}: the destination would refuse it"
        ),
    })
}

/// The container of a QTAILQ / QLIST field (`#[vmstate(list, max = N)]`): `Vec<T>` or
/// `VecDeque<T>`, in list order.
pub trait ListContainer {
    /// Element type (a nested struct).
    type Elem;
    /// Number of elements.
    fn count(&self) -> usize;
    /// Empties the container.
    fn clear_all(&mut self);
    /// Appends a default element and returns it. Room is reserved in steps of at most half the
    /// current length, never past `max` elements.
    fn push_default(&mut self, max: usize) -> &mut Self::Elem;
    /// Calls `f` on each element in order, stopping at the first error.
    ///
    /// # Errors
    /// The first error `f` returns.
    fn try_each(&mut self, f: &mut dyn FnMut(usize, &mut Self::Elem) -> Result<()>) -> Result<()>;
}

fn grow_step(len: usize, max: usize) -> usize {
    (len / 2).max(4).min(max.saturating_sub(len)).max(1)
}

/// `Vec<T>` and `VecDeque<T>` are list containers the same way; only the name of the method that
/// appends differs.
macro_rules! list_container {
    ($($container:ident :: $push:ident),*) => {$(
        impl<T: Default> ListContainer for $container<T> {
            type Elem = T;
            fn count(&self) -> usize {
                self.len()
            }
            fn clear_all(&mut self) {
                self.clear();
            }
            fn push_default(&mut self, max: usize) -> &mut T {
                if self.len() == self.capacity() {
                    self.reserve_exact(grow_step(self.len(), max));
                }
                self.$push(T::default());
                let last = self.len() - 1;
                &mut self[last]
            }
            fn try_each(&mut self, f: &mut dyn FnMut(usize, &mut T) -> Result<()>) -> Result<()> {
                self.iter_mut().enumerate().try_for_each(|(i, e)| f(i, e))
            }
        }
    )*};
}

list_container!(Vec::push, VecDeque::push_back);

/// Saves a QTAILQ / QLIST: per element `0x01` and the element (at its own version), then `0x00`.
/// Returns the element count.
///
/// # Errors
/// `SaveFailed` when there are more than `max` elements; element and writer errors.
pub fn save_list<L, W>(l: &mut L, max: u32, w: &mut W, cx: &mut SaveCx<'_>) -> Result<u64>
where
    L: ListContainer + ?Sized,
    L::Elem: NestedState + Field,
    W: Writer + ?Sized,
{
    let n = l.count();
    if n as u64 > u64::from(max) {
        return Err(save_too_many("the list", n, max));
    }
    l.try_each(&mut |i, e| {
        w.write_u8(1)?;
        e.save_field(w, cx).map_err(|err| err.at_index(i))
    })?;
    w.write_u8(0)?;
    Ok(n as u64)
}

/// Loads a QTAILQ / QLIST into an emptied container: while the next byte is not `0x00`, one
/// element loaded at `version` (QEMU's field version). The element after the `max`-th is an
/// error before it is allocated or read.
///
/// # Errors
/// `LengthTooLarge` past `max`; element errors (with the index); end of input.
pub fn load_list<L, R>(
    l: &mut L,
    max: u32,
    version: u32,
    r: &mut R,
    cx: &mut LoadCx<'_>,
) -> Result<()>
where
    L: ListContainer + ?Sized,
    L::Elem: NestedState,
    R: Reader + ?Sized,
{
    l.clear_all();
    let cap = usize::try_from(max).unwrap_or(usize::MAX);
    let mut i = 0usize;
    loop {
        let pos = r.position();
        if r.read_u8()? == 0 {
            return Ok(());
        }
        if i >= cap {
            return Err(too_many(i as u64 + 1, max, pos));
        }
        let e = l.push_default(cap);
        e.load_state(r, version, cx)
            .map_err(|err| err.at_index(i))?;
        i += 1;
    }
}

/// A key of a GTREE field: an unsigned integer (QEMU's direct key, be64 on the wire) or a
/// nested struct (a key vmsd).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the key of a vmstate tree",
    label = "not a tree key",
    note = "a GTREE key is `u8`, `u16`, `u32` or `u64` (QEMU's direct key, be64 on the wire) or a `#[vmstate(nested)]` struct that is also `Ord + Clone + Default`"
)]
pub trait TreeKey: Ord + Sized {
    /// The key's kind in the description; `None` for a direct key.
    const KEY_KIND: Option<SchemaRef<Kind>>;
    /// Writes the key.
    ///
    /// # Errors
    /// Writer errors; hook errors of a struct key.
    fn save_key<W: Writer + ?Sized>(&self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()>;
    /// Reads a key (a struct key at `version`).
    ///
    /// # Errors
    /// Decode errors; a direct key too large for the key type.
    fn load_key<R: Reader + ?Sized>(r: &mut R, version: u32, cx: &mut LoadCx<'_>) -> Result<Self>;
}

macro_rules! direct_key {
    ($($t:ty),*) => {$(
        impl TreeKey for $t {
            const KEY_KIND: Option<SchemaRef<Kind>> = None;
            #[inline]
            fn save_key<W: Writer + ?Sized>(&self, w: &mut W, _: &mut SaveCx<'_>) -> Result<()> {
                w.write_be64(u64::from(*self))
            }
            #[inline]
            fn load_key<R: Reader + ?Sized>(r: &mut R, _: u32, _: &mut LoadCx<'_>) -> Result<Self> {
                let pos = r.position();
                let k = r.read_be64()?;
                <$t>::try_from(k).map_err(|_| {
                    Error::new(
                        ErrorKind::InvalidValue {
                            expected: concat!("a direct key that fits ", stringify!($t)).into(),
                            found: i128::from(k),
                        },
                        pos,
                    )
                })
            }
        }
    )*};
}
direct_key!(u8, u16, u32, u64);

impl<T: NestedState + Field + Ord + Clone + Default> TreeKey for T {
    const KEY_KIND: Option<SchemaRef<Kind>> = Some(SchemaRef::Static(&<T as Field>::KIND));
    #[inline]
    fn save_key<W: Writer + ?Sized>(&self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()> {
        self.clone().save_field(w, cx)
    }
    #[inline]
    fn load_key<R: Reader + ?Sized>(r: &mut R, version: u32, cx: &mut LoadCx<'_>) -> Result<T> {
        let mut k = T::default();
        k.load_state(r, version, cx)?;
        Ok(k)
    }
}

/// The map type of a GTREE field, naming its key and value types for the description.
pub trait TreeMap {
    /// Key type.
    type Key;
    /// Value type.
    type Value;
}

impl<K, V> TreeMap for std::collections::BTreeMap<K, V> {
    type Key = K;
    type Value = V;
}

/// Saves a GTREE: be32 node count, per node in key order `0x01`, key, value, then `0x00`.
/// Returns the node count.
///
/// # Errors
/// `SaveFailed` when there are more than `max` nodes; key, value and writer errors.
pub fn save_tree<K, V, W>(
    m: &mut std::collections::BTreeMap<K, V>,
    max: u32,
    w: &mut W,
    cx: &mut SaveCx<'_>,
) -> Result<u64>
where
    K: TreeKey,
    V: NestedState + Field,
    W: Writer + ?Sized,
{
    let n = m.len();
    if n as u64 > u64::from(max) {
        return Err(save_too_many("the tree", n, max));
    }
    #[allow(clippy::cast_possible_truncation)]
    w.write_be32(n as u32)?;
    for (i, (k, v)) in m.iter_mut().enumerate() {
        w.write_u8(1)?;
        k.save_key(w, cx).map_err(|e| e.at_index(i))?;
        v.save_field(w, cx).map_err(|e| e.at_index(i))?;
    }
    w.write_u8(0)?;
    Ok(n as u64)
}

/// Loads a GTREE into an emptied map. The node count is checked against `max` before any node
/// is read; then nodes while the next byte is not `0x00`, keys and values loaded at `version`
/// (QEMU's field version). More nodes than the count, or fewer, is an error (as in QEMU); a
/// repeated key replaces the earlier value (as `g_tree_insert` does).
///
/// # Errors
/// `LengthTooLarge`, `InvalidValue` (node count mismatch), key and value errors, end of input.
pub fn load_tree<K, V, R>(
    m: &mut std::collections::BTreeMap<K, V>,
    max: u32,
    version: u32,
    r: &mut R,
    cx: &mut LoadCx<'_>,
) -> Result<()>
where
    K: TreeKey,
    V: NestedState + Default,
    R: Reader + ?Sized,
{
    let pos = r.position();
    let nnodes = r.read_be32()?;
    if nnodes > max {
        return Err(too_many(u64::from(nnodes), max, pos));
    }
    m.clear();
    let mut count = 0u32;
    loop {
        let pos = r.position();
        let b = r.read_u8()?;
        if b == 0 {
            break;
        }
        if count == nnodes {
            return Err(Error::new(
                ErrorKind::InvalidValue {
                    expected: format!("the end of the tree (0x00) after its {nnodes} nodes").into(),
                    found: i128::from(b),
                },
                pos,
            ));
        }
        let i = count as usize;
        let k = K::load_key(r, version, cx).map_err(|e| e.at_index(i))?;
        let mut v = V::default();
        v.load_state(r, version, cx).map_err(|e| e.at_index(i))?;
        m.insert(k, v);
        count += 1;
    }
    if count != nnodes {
        return Err(Error::new(
            ErrorKind::InvalidValue {
                expected: format!("{nnodes} nodes, the tree's count").into(),
                found: i128::from(count),
            },
            r.position(),
        ));
    }
    Ok(())
}

/// Saves a `Tmp<V>` field: the view computed from the parent, written as a nested struct.
///
/// # Errors
/// `SaveFailed` with the view's error; the view's save errors.
pub fn save_tmp<V, P, W>(parent: &P, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()>
where
    V: TmpView<P> + NestedState + Field,
    P: ?Sized,
    W: Writer + ?Sized,
{
    let mut v = save_hook_value(V::save_view(parent))?;
    v.save_field(w, cx)
}

fn save_hook_value<T, E: Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| {
        Error::without_offset(ErrorKind::SaveFailed {
            message: format!("save_view: {e}"),
        })
    })
}

/// Loads a `Tmp<V>` field: a default view read at version 0 (QEMU loads a tmp vmsd at its
/// field's version, which `VMSTATE_WITH_TMP` leaves at 0), then folded back into the parent.
///
/// # Errors
/// The view's load errors; `ValidationFailed` with the fold-back's error.
pub fn load_tmp<V, P, R>(parent: &mut P, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()>
where
    V: TmpView<P> + NestedState + Default,
    P: ?Sized,
    R: Reader + ?Sized,
{
    let pos = r.position();
    let mut v = V::default();
    v.load_state(r, 0, cx)?;
    load_hook(v.load_view(parent), "load_view", pos)
}

/// Saves a field through a codec module (`with = module`): `save` must write exactly the
/// declared size, if any.
///
/// # Errors
/// The codec's errors; `SaveFailed` when it wrote another number of bytes than declared.
pub fn save_with<W, F>(d: &CodecDescription, save: F, w: &mut W) -> Result<()>
where
    W: Writer + ?Sized,
    F: FnOnce(&mut W) -> Result<()>,
{
    let start = w.position();
    save(w)?;
    let n = w.position() - start;
    match d.size {
        Some(size) if n != u64::from(size) => Err(Error::without_offset(ErrorKind::SaveFailed {
            message: format!(
                "the `{}` codec wrote {n} bytes, its description declares {size}",
                d.vmdesc_type
            ),
        })),
        _ => Ok(()),
    }
}

/// Loads a field through a codec module (`with = module`): `load` must consume exactly the
/// declared size, if any.
///
/// # Errors
/// The codec's errors; `InvalidValue` when it read another number of bytes than declared.
pub fn load_with<R, F>(d: &CodecDescription, load: F, r: &mut R) -> Result<()>
where
    R: Reader + ?Sized,
    F: FnOnce(&mut R) -> Result<()>,
{
    let start = r.position();
    load(r)?;
    let n = r.position() - start;
    match d.size {
        Some(size) if n != u64::from(size) => Err(Error::new(
            ErrorKind::InvalidValue {
                expected: format!(
                    "the `{}` codec to read the {size} bytes its description declares",
                    d.vmdesc_type
                )
                .into(),
                found: i128::from(n),
            },
            start,
        )),
        _ => Ok(()),
    }
}

/// Saves a bitmap of `bits` bits: its first `ceil(bits / 64)` words, each be64.
///
/// # Errors
/// `SaveFailed` when the bit count is negative, above `max` or above the words held; writer
/// errors.
pub fn save_bitmap<C, V, W>(v: &V, bits: &C, max: u32, w: &mut W) -> Result<()>
where
    C: Count,
    V: BitmapWords + ?Sized,
    W: Writer + ?Sized,
{
    let words = v.words();
    let n =
        bits.as_count()
            .filter(|&n| n <= u64::from(max))
            .and_then(|n| usize::try_from(n.div_ceil(64)).ok())
            .and_then(|k| words.get(..k))
            .ok_or_else(|| {
                Error::without_offset(ErrorKind::SaveFailed {
                    message: format!(
                    "bit count {} is negative, above the maximum {max} or above the {} bits held",
                    bits.as_count().map_or_else(|| "<0".to_owned(), |c| c.to_string()),
                    words.len() * 64
                ),
                })
            })?;
    for &word in n {
        w.write_be64(word)?;
    }
    Ok(())
}

/// The words of a bitmap field: `Vec<u64>` (resized to the stream's word count) or `[u64; N]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a vmstate bitmap",
    label = "not bitmap words",
    note = "a `bitmap` field is `Vec<u64>` or `[u64; N]`: QEMU's bitmaps travel as be64 words"
)]
pub trait BitmapWords {
    /// The words held.
    fn words(&self) -> &[u64];
    /// Makes room for exactly `n` words (checked against `capacity` first) and returns them.
    fn words_for(&mut self, n: usize) -> &mut [u64];
    /// The local capacity in words (`None`: grows up to the declared maximum).
    fn word_capacity(&self) -> Option<usize>;
}

impl BitmapWords for Vec<u64> {
    fn words(&self) -> &[u64] {
        self
    }
    fn words_for(&mut self, n: usize) -> &mut [u64] {
        self.truncate(n);
        self.resize(n, 0);
        self
    }
    fn word_capacity(&self) -> Option<usize> {
        None
    }
}

impl<const N: usize> BitmapWords for [u64; N] {
    fn words(&self) -> &[u64] {
        self
    }
    fn words_for(&mut self, n: usize) -> &mut [u64] {
        &mut self[..n]
    }
    fn word_capacity(&self) -> Option<usize> {
        Some(N)
    }
}

/// Loads a bitmap of `bits` bits (an earlier field): the count is checked against `max` and the
/// local capacity before any word is read, then `ceil(bits / 64)` be64 words.
///
/// # Errors
/// `InvalidValue` (negative), `LengthTooLarge`; end of input.
pub fn load_bitmap<C, V, R>(v: &mut V, bits: &C, max: u32, r: &mut R) -> Result<()>
where
    C: Count,
    V: BitmapWords + ?Sized,
    R: Reader + ?Sized,
{
    let pos = r.position();
    let n = bits.as_count().ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidValue {
                expected: "a non-negative bit count".into(),
                found: -1,
            },
            pos,
        )
    })?;
    let limit = v
        .word_capacity()
        .map_or(u64::from(max), |c| (c as u64 * 64).min(u64::from(max)));
    if n > limit {
        return Err(Error::new(ErrorKind::LengthTooLarge { len: n, limit }, pos));
    }
    let words = usize::try_from(n.div_ceil(64))
        .map_err(|_| Error::new(ErrorKind::LengthTooLarge { len: n, limit }, pos))?;
    for word in v.words_for(words) {
        *word = r.read_be64()?;
    }
    Ok(())
}

/// Saves a nested struct at an explicit version (QEMU's `VMSTATE_VSTRUCT`), described as QEMU
/// does: its `struct` object carries that version.
///
/// # Errors
/// The struct's save errors.
pub fn save_vstruct<T, W>(t: &mut T, version: u32, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()>
where
    T: NestedState,
    W: Writer + ?Sized,
{
    let name: &'static str = match &T::SCHEMA.name {
        Cow::Borrowed(n) => n,
        Cow::Owned(_) => "",
    };
    if let Some(d) = cx.desc() {
        d.struct_begin(name, version, w.position());
    }
    t.save_state(w, version, cx)?;
    if let Some(d) = cx.desc() {
        d.struct_end(w.position());
    }
    Ok(())
}

/// Loads a nested struct at an explicit version (QEMU's `VMSTATE_VSTRUCT`); the struct's
/// version range is checked as for a section.
///
/// # Errors
/// `VersionTooNew` / `VersionTooOld`; the struct's load errors.
pub fn load_vstruct<T, R>(t: &mut T, version: u32, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()>
where
    T: NestedState,
    R: Reader + ?Sized,
{
    t.load_state(r, version, cx)
}
