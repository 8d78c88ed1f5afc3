//! Field codecs: how one Rust field goes on the wire.
//!
//! [`Field`] is implemented for `bool`, the fixed-width integers (big-endian), [`Timer`],
//! [`Unused<N>`], fixed arrays of any `Field`, and every struct that derives `VmState` with
//! `#[vmstate(nested)]`. Byte buffers (`#[vmstate(buffer)]`), variable arrays and the `equal`
//! check are handled by the generated code through [`crate::__private`].

use crate::context::{LoadCx, SaveCx};
use crate::error::Result;
use crate::reader::Reader;
use crate::schema::Kind;
use crate::writer::Writer;

/// A type that can be a field of a `VmState` struct.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a vmstate field",
    label = "no VMState codec for this type",
    note = "fields are bool, u8..u64, i8..i64, Timer, Unused<N>, fixed arrays of these, or structs that derive VmState with #[vmstate(nested)]"
)]
pub trait Field {
    /// The codec and shape, for the static description.
    const KIND: Kind;

    /// Writes the value.
    ///
    /// # Errors
    /// Writer errors; hook errors of nested structs.
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()>;

    /// Reads the value in place.
    ///
    /// # Errors
    /// Any decode error, with offset.
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()>;

    /// Writes consecutive elements (an array); byte-sized codecs override it with one copy.
    ///
    /// # Errors
    /// As [`Field::save_field`], with the element index in the path.
    #[inline]
    fn save_elems<W: Writer + ?Sized>(
        elems: &mut [Self],
        w: &mut W,
        cx: &mut SaveCx<'_>,
    ) -> Result<()>
    where
        Self: Sized,
    {
        for (i, e) in elems.iter_mut().enumerate() {
            e.save_field(w, cx).map_err(|err| err.at_index(i))?;
        }
        Ok(())
    }

    /// Reads consecutive elements (an array); byte-sized codecs override it with one copy.
    ///
    /// # Errors
    /// As [`Field::load_field`], with the element index in the path.
    #[inline]
    fn load_elems<R: Reader + ?Sized>(
        elems: &mut [Self],
        r: &mut R,
        cx: &mut LoadCx<'_>,
    ) -> Result<()>
    where
        Self: Sized,
    {
        for (i, e) in elems.iter_mut().enumerate() {
            e.load_field(r, cx).map_err(|err| err.at_index(i))?;
        }
        Ok(())
    }
}

/// A bulk byte read that ran out: point at the first missing element, as the per-element
/// loop would have.
#[cold]
fn bulk_error(e: crate::error::Error, start: u64) -> crate::error::Error {
    match *e.kind() {
        crate::error::ErrorKind::UnexpectedEof { available, .. } => crate::error::Error::new(
            crate::error::ErrorKind::UnexpectedEof {
                needed: 1,
                available: 0,
            },
            start + available,
        )
        .at_index(usize::try_from(available).unwrap_or(usize::MAX)),
        _ => e,
    }
}

macro_rules! int_field {
    ($($t:ty => $k:ident),*) => {$(
        impl Field for $t {
            const KIND: Kind = Kind::$k;
            #[inline]
            fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, _: &mut SaveCx<'_>) -> Result<()> {
                w.write_all(&self.to_be_bytes())
            }
            #[inline]
            fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, _: &mut LoadCx<'_>) -> Result<()> {
                *self = <$t>::from_be_bytes(r.read_array()?);
                Ok(())
            }
        }
    )*};
}
// `u8` is written out below: its arrays are copied in one piece.
int_field!(i8 => I8, u16 => U16, u32 => U32, u64 => U64, i16 => I16, i32 => I32, i64 => I64);

impl Field for u8 {
    const KIND: Kind = Kind::U8;
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, _: &mut SaveCx<'_>) -> Result<()> {
        w.write_u8(*self)
    }
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, _: &mut LoadCx<'_>) -> Result<()> {
        *self = r.read_u8()?;
        Ok(())
    }
    #[inline]
    fn save_elems<W: Writer + ?Sized>(
        elems: &mut [u8],
        w: &mut W,
        _: &mut SaveCx<'_>,
    ) -> Result<()> {
        w.write_all(elems)
    }
    #[inline]
    fn load_elems<R: Reader + ?Sized>(
        elems: &mut [u8],
        r: &mut R,
        _: &mut LoadCx<'_>,
    ) -> Result<()> {
        let start = r.position();
        let src = r.take(elems.len()).map_err(|e| bulk_error(e, start))?;
        elems.copy_from_slice(src);
        Ok(())
    }
}

impl Field for bool {
    const KIND: Kind = Kind::Bool;
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, _: &mut SaveCx<'_>) -> Result<()> {
        w.write_u8(u8::from(*self))
    }
    /// Any non-zero byte is `true`, as in QEMU.
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, _: &mut LoadCx<'_>) -> Result<()> {
        *self = r.read_u8()? != 0;
        Ok(())
    }
}

/// A timer's migrated state: its expiry time in ns on the timer's clock, or not armed.
/// On the wire: be64, all ones when not armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timer {
    /// Expiry in ns, `None` when not armed.
    pub expire_ns: Option<u64>,
}

impl Timer {
    /// A timer armed to fire at `ns`.
    #[must_use]
    pub const fn armed(ns: u64) -> Self {
        Timer {
            expire_ns: Some(ns),
        }
    }

    /// A timer that is not armed.
    #[must_use]
    pub const fn disarmed() -> Self {
        Timer { expire_ns: None }
    }

    /// Whether the timer is armed.
    #[must_use]
    pub const fn is_armed(&self) -> bool {
        self.expire_ns.is_some()
    }
}

impl Field for Timer {
    const KIND: Kind = Kind::Timer;
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, _: &mut SaveCx<'_>) -> Result<()> {
        w.write_be64(self.expire_ns.unwrap_or(u64::MAX))
    }
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, _: &mut LoadCx<'_>) -> Result<()> {
        let v = r.read_be64()?;
        self.expire_ns = (v != u64::MAX).then_some(v);
        Ok(())
    }
}

/// `N` bytes of padding that keep the layout after a field was removed: zeros on save,
/// skipped on load (QEMU's `VMSTATE_UNUSED`). A zero-sized Rust field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Unused<const N: usize>;

impl<const N: usize> Field for Unused<N> {
    #[allow(clippy::cast_possible_truncation)]
    const KIND: Kind = Kind::Unused { len: N as u32 };
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, _: &mut SaveCx<'_>) -> Result<()> {
        w.write_zeros(N)
    }
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, _: &mut LoadCx<'_>) -> Result<()> {
        r.skip(N as u64)
    }
}

impl<T: Field, const N: usize> Field for [T; N] {
    #[allow(clippy::cast_possible_truncation)]
    const KIND: Kind = Kind::Array {
        elem: crate::schema::SchemaRef::Static(&T::KIND),
        len: N as u32,
    };
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()> {
        T::save_elems(self, w, cx)
    }
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()> {
        T::load_elems(self, r, cx)
    }
}

/// The byte QEMU writes for a NULL element of an array of pointers (`vmstate_info_nullptr`,
/// `VMS_NULLPTR_MARKER`).
pub const NULL_MARKER: u8 = 0x30;

/// An element of an array of pointers that may be NULL (QEMU's `VMSTATE_ARRAY_OF_POINTER` and
/// `VMSTATE_ARRAY_OF_POINTER_TO_STRUCT`): `[Option<T>; N]` or `[Option<Box<T>>; N]`.
///
/// `None` is written as the single byte [`NULL_MARKER`], `Some` as the element. Loading follows
/// QEMU 7.2: a slot that is `None` on the destination must read the marker (anything else is an
/// error naming the field and index); a slot that is `Some` reads an element in place. Which
/// slots are NULL is the destination's configuration, not the stream's: as in QEMU, a marker
/// sent for a slot that is `Some` here cannot be told apart from element bytes starting with
/// 0x30, so it is read as an element (the checks on the element's fields still apply).
impl<T: Field> Field for Option<T> {
    const KIND: Kind = Kind::Pointer {
        elem: crate::schema::SchemaRef::Static(&T::KIND),
    };
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()> {
        let start = w.position();
        match self {
            Some(e) => e.save_field(w, cx)?,
            None => {
                w.write_u8(NULL_MARKER)?;
                if let (Some(d), Kind::Struct { .. }) = (cx.desc(), &T::KIND) {
                    d.null_struct();
                }
            }
        }
        if !matches!(T::KIND, Kind::Struct { .. }) {
            if let Some(d) = cx.desc() {
                d.elem_size(w.position() - start);
            }
        }
        Ok(())
    }
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()> {
        match self {
            Some(e) => e.load_field(r, cx),
            None => {
                let pos = r.position();
                let b = r.read_u8()?;
                if b == NULL_MARKER {
                    Ok(())
                } else {
                    Err(crate::error::Error::new(
                        crate::error::ErrorKind::InvalidValue {
                            expected: "the NULL-pointer marker 0x30 (this element is NULL on the destination)".into(),
                            found: i128::from(b),
                        },
                        pos,
                    ))
                }
            }
        }
    }
}

/// A boxed element: the element itself on the wire (for `[Option<Box<T>>; N]`).
impl<T: Field> Field for Box<T> {
    const KIND: Kind = T::KIND;
    #[inline]
    fn save_field<W: Writer + ?Sized>(&mut self, w: &mut W, cx: &mut SaveCx<'_>) -> Result<()> {
        (**self).save_field(w, cx)
    }
    #[inline]
    fn load_field<R: Reader + ?Sized>(&mut self, r: &mut R, cx: &mut LoadCx<'_>) -> Result<()> {
        (**self).load_field(r, cx)
    }
}

/// A temporary view of the struct that holds it (QEMU's `VMSTATE_WITH_TMP`): a zero-sized
/// marker field of type `Tmp<V>`, where `V` is a `#[vmstate(nested)]` struct implementing
/// [`TmpView`] for the parent. On save the view is computed from the parent
/// ([`TmpView::save_view`]) and written as a nested struct; on load it is read and folded back
/// into the parent ([`TmpView::load_view`]). Nothing of the view is stored in the parent.
///
/// The field's wire name defaults to `tmp`, as QEMU's macro names it; its vmdesc entry is
/// `{"name": "tmp", "type": "tmp", "vmsd_name": …, "version": …, "fields": […], "size": …}`.
pub struct Tmp<V>(std::marker::PhantomData<fn() -> V>);

impl<V> Tmp<V> {
    /// The marker.
    #[must_use]
    pub const fn new() -> Self {
        Tmp(std::marker::PhantomData)
    }
}

impl<V> Default for Tmp<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Clone for Tmp<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Tmp<V> {}

impl<V> PartialEq for Tmp<V> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<V> Eq for Tmp<V> {}

impl<V> std::hash::Hash for Tmp<V> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl<V> std::fmt::Debug for Tmp<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tmp<{}>", std::any::type_name::<V>())
    }
}

/// A temporary view `Self` of a parent struct `P` (QEMU's tmp vmsd with its `pre_save` and
/// `post_load`), migrated through a [`Tmp<Self>`] field of `P`.
///
/// # Examples
///
/// QEMU's x86 `fpreg`: the 80-bit register is migrated as a mantissa and an exponent.
///
/// ```
/// use vmstate_runtime::field::{Tmp, TmpView};
/// use vmstate_runtime::VmState;
///
/// #[derive(VmState, Clone, Default)]
/// #[vmstate(name = "fpreg_tmp", version = 0, nested)]
/// struct FpregTmp { tmp_mant: u64, tmp_exp: u16 }
///
/// #[derive(VmState, Clone, Default)]
/// #[vmstate(name = "fpreg", version = 0, nested)]
/// struct FpReg {
///     tmp: Tmp<FpregTmp>,
///     #[vmstate(skip)] bits: u128, // the register itself: only its view is migrated
/// }
///
/// impl TmpView<FpReg> for FpregTmp {
///     type Error = std::convert::Infallible;
///     fn save_view(r: &FpReg) -> Result<Self, Self::Error> {
///         Ok(FpregTmp { tmp_mant: r.bits as u64, tmp_exp: (r.bits >> 64) as u16 })
///     }
///     fn load_view(self, r: &mut FpReg) -> Result<(), Self::Error> {
///         r.bits = u128::from(self.tmp_exp) << 64 | u128::from(self.tmp_mant);
///         Ok(())
///     }
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a temporary view of `{P}`",
    label = "no `TmpView<{P}>` impl",
    note = "a `Tmp<V>` field needs `impl TmpView<{P}> for V`: `save_view` computes V from the parent on save (QEMU's tmp pre_save), `load_view` folds it back on load (post_load)"
)]
pub trait TmpView<P: ?Sized>: Sized {
    /// The error of either direction (shown with the field path).
    type Error: std::fmt::Display;

    /// Computes the view from the parent, on save.
    ///
    /// # Errors
    /// Any; the save fails with it.
    fn save_view(parent: &P) -> std::result::Result<Self, Self::Error>;

    /// Folds the loaded view back into the parent, on load.
    ///
    /// # Errors
    /// Any; the load fails with it, naming the field path.
    fn load_view(self, parent: &mut P) -> std::result::Result<(), Self::Error>;
}

/// The view type of a [`Tmp`] field (used by generated code).
pub trait TmpMarker {
    /// The view.
    type View;
}

impl<V> TmpMarker for Tmp<V> {
    type View = V;
}
