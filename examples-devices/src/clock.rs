//! Time as the example devices keep it: nanoseconds on a clock the VMM moves forward, shared
//! arithmetic, and the `now_ns` / `set_now_ns` accessors every device has.

/// Nanoseconds per second.
pub(crate) const NS_PER_SEC: u64 = 1_000_000_000;

/// `a * b / c` with a 128-bit intermediate, truncated to 64 bits (QEMU's `muldiv64`; a zero
/// `c` divides by 1).
pub(crate) fn muldiv64(a: u64, b: u64, c: u64) -> u64 {
    #[allow(clippy::cast_possible_truncation)]
    {
        (u128::from(a) * u128::from(b) / u128::from(c.max(1))) as u64
    }
}

/// A device's `now_ns()` and `set_now_ns(now_ns)` over its `now_ns` field (the clock it keeps
/// time on, in ns): `clock_accessors! { /// doc… now_ns; /// doc… set_now_ns; }`, each method
/// with the doc comment written before its name.
macro_rules! clock_accessors {
    ($(#[$get:meta])* now_ns; $(#[$set:meta])* set_now_ns;) => {
        $(#[$get])*
        #[must_use]
        pub fn now_ns(&self) -> u64 {
            self.now_ns
        }

        $(#[$set])*
        pub fn set_now_ns(&mut self, now_ns: u64) {
            self.now_ns = now_ns;
        }
    };
}
pub(crate) use clock_accessors;
