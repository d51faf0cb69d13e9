//! The hashing the hashed n-gram models share (the fast sentiment model and the language head):
//! characters chained into a 64-bit state, finished with Murmur3's mixer, salted per feature kind.

/// The multiplier each character is chained in with.
pub(crate) const CHAIN_K: u64 = 0x517c_c1b7_2722_0a95;

/// Murmur3 64-bit finaliser.
#[inline(always)]
pub(crate) fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Chains character `c` into state `h`.
#[inline(always)]
pub(crate) fn chain(h: u64, c: u32) -> u64 {
    (h.rotate_left(5) ^ c as u64).wrapping_mul(CHAIN_K)
}

/// A seed mixed with a salt (one per feature kind).
pub(crate) fn salted(seed: u64, salt: u64) -> u64 {
    fmix64(seed ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// SplitMix64: a tiny, fixed PRNG so that shuffles do not depend on any crate's version.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        fmix64(self.0)
    }

    /// Uniform integer in `0..n` (n > 0), by multiply-shift.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}
