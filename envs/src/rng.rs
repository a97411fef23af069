//! The environment RNG: NumPy's `SeedSequence` → `PCG64` → `Generator`, reproduced bit for bit.
//!
//! Gymnasium seeds every environment with `np.random.default_rng`-style seeding
//! (`reset(seed=s)` → `SeedSequence(s)` → `PCG64`). Reproducing that chain lets CartPole-v1 and
//! Pendulum-v1 start from exactly the state Python Gymnasium gives for the same seed. The PCG64
//! generator itself is `rand_pcg::Pcg64` (XSL-RR 128/64), which seeds exactly like NumPy's; only
//! `SeedSequence` is written here, since no crate provides it.

use rand::{RngCore, SeedableRng};
use rand_pcg::Pcg64;

const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// NumPy's `SeedSequence` for an integer entropy without spawn key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSequence {
    pool: [u32; POOL_SIZE],
}

impl SeedSequence {
    /// `np.random.SeedSequence(entropy)`.
    pub fn new(entropy: u128) -> Self {
        let mut words = Vec::new();
        let mut e = entropy;
        loop {
            words.push(e as u32);
            e >>= 32;
            if e == 0 {
                break;
            }
        }
        let mut hash_const = INIT_A;
        let mut hashmix = |value: u32| -> u32 {
            let mut v = value ^ hash_const;
            hash_const = hash_const.wrapping_mul(MULT_A);
            v = v.wrapping_mul(hash_const);
            v ^ (v >> XSHIFT)
        };
        let mix = |x: u32, y: u32| -> u32 {
            let r = MIX_MULT_L
                .wrapping_mul(x)
                .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
            r ^ (r >> XSHIFT)
        };
        let mut pool = [0u32; POOL_SIZE];
        for (i, slot) in pool.iter_mut().enumerate() {
            *slot = hashmix(words.get(i).copied().unwrap_or(0));
        }
        for src in 0..POOL_SIZE {
            for dst in 0..POOL_SIZE {
                if src != dst {
                    let h = hashmix(pool[src]);
                    pool[dst] = mix(pool[dst], h);
                }
            }
        }
        for &extra in words.iter().skip(POOL_SIZE) {
            for slot in pool.iter_mut() {
                let h = hashmix(extra);
                *slot = mix(*slot, h);
            }
        }
        SeedSequence { pool }
    }

    /// `generate_state(n, np.uint64)`: `n` 64-bit words.
    pub fn generate_state_u64(&self, n: usize) -> Vec<u64> {
        let mut hash_const = INIT_B;
        let mut words = (0..2 * n).map(|i| {
            let mut v = self.pool[i % POOL_SIZE] ^ hash_const;
            hash_const = hash_const.wrapping_mul(MULT_B);
            v = v.wrapping_mul(hash_const);
            v ^ (v >> XSHIFT)
        });
        (0..n)
            .map(|_| {
                let lo = words.next().unwrap_or(0) as u64;
                let hi = words.next().unwrap_or(0) as u64;
                lo | (hi << 32)
            })
            .collect()
    }
}

/// The RNG every built-in environment draws from: NumPy's PCG64 seeded through `SeedSequence`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRng(Pcg64);

impl EnvRng {
    /// The generator `np.random.default_rng(seed)` (and Gymnasium's `reset(seed=seed)`) creates.
    pub fn from_seed(seed: u64) -> Self {
        let w = SeedSequence::new(seed as u128).generate_state_u64(4);
        let state = ((w[0] as u128) << 64) | w[1] as u128;
        let stream = ((w[2] as u128) << 64) | w[3] as u128;
        EnvRng(Pcg64::new(state, stream))
    }

    /// A generator seeded from operating-system entropy (Gymnasium's behaviour for an unseeded reset).
    pub fn from_entropy() -> Self {
        Self::from_seed(rand::rng().next_u64())
    }

    /// NumPy's `random()`: a double in [0, 1) with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// NumPy's `uniform(low, high)`: `low + (high - low) * random()`.
    #[inline]
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// A uniform integer in `0..n` (unbiased; not NumPy's bounded-integer algorithm).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        // Lemire's multiply-shift with rejection.
        let mut m = (self.0.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.0.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// Shuffle a slice uniformly (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

impl RngCore for EnvRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst)
    }
}

impl SeedableRng for EnvRng {
    type Seed = [u8; 8];
    fn from_seed(seed: Self::Seed) -> Self {
        EnvRng::from_seed(u64::from_le_bytes(seed))
    }
    fn seed_from_u64(state: u64) -> Self {
        EnvRng::from_seed(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Check values from NumPy (docs/research/envs.md §8.4).
    #[test]
    fn seed_sequence_matches_numpy_for_seed_0() {
        let w = SeedSequence::new(0).generate_state_u64(4);
        assert_eq!(
            w,
            vec![
                0xdb2cd7e7b0f478be,
                0xabf4641a2c71ba49,
                0x20c6ed6d9d7b8d41,
                0x2c4099de223c39d4
            ]
        );
    }

    #[test]
    fn pcg64_outputs_match_numpy() {
        let mut r = EnvRng::from_seed(0);
        assert_eq!(r.next_u64(), 0xa30febcfd9c2825f);
        assert_eq!(r.next_u64(), 0x4510bdf882d9d721);
        let mut r = EnvRng::from_seed(42);
        assert_eq!(r.next_u64(), 0xc621fbcd16d92688);
        assert_eq!(r.next_u64(), 0x705a5661a791ffc1);
    }

    #[test]
    fn uniform_matches_gymnasium_cartpole_reset_seed_0() {
        let mut r = EnvRng::from_seed(0);
        let x = r.uniform(-0.05, 0.05);
        assert_eq!(x, 0.013696168732145436);
        assert_eq!(r.uniform(-0.05, 0.05), -0.02302132862361297);
    }

    #[test]
    fn below_is_in_range_and_covers_all_values() {
        let mut r = EnvRng::from_seed(3);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[r.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }
}
