//! SplitMix64, the one small seeded generator of the project: the trainer's window sampling,
//! the synthetic benchmark workloads, the examples and the tests all draw from it. Written out
//! here rather than taken from a crate so that a seed names the same numbers forever, whatever
//! the versions of the dependencies.

/// SplitMix64 (Steele, Lea & Flood 2014): 64-bit state, one add and two multiply-xorshifts per
/// number. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, 24 bits of resolution.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller on two uniforms).
    pub fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform().max(1e-7), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }

    /// In `0..n` by a plain modulo: biased by at most `n / 2^64`, which is nothing for
    /// workloads and tests. `n` must be positive.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in `0..=bound` without bias (Lemire's multiply-and-reject), for the trainer's
    /// sampling.
    pub fn below_or_eq(&mut self, bound: u64) -> u64 {
        let range = bound.wrapping_add(1);
        if range == 0 {
            return self.next_u64();
        }
        let threshold = range.wrapping_neg() % range;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(range);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn first_outputs_match_the_published_sequence() {
        // SplitMix64 seeded with 1234567 (the reference implementation's example).
        let mut r = SplitMix64(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn bounded_draws_stay_in_range() {
        let mut r = SplitMix64(7);
        for bound in [0u64, 1, 2, 9, 1000, u64::MAX] {
            for _ in 0..200 {
                assert!(r.below_or_eq(bound) <= bound);
            }
        }
        for n in [1usize, 3, 17] {
            for _ in 0..200 {
                assert!(r.below(n) < n);
            }
        }
    }
}
