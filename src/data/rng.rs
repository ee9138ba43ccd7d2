//! Random streams of the data pipeline, all MT19937 (`rand_mt::Mt`, Matsumoto & Nishimura's
//! `genrand_int32`), which is portable and fixed for ever.
//!
//! * [`numpy_legacy`], [`random_interval`] and [`legacy_shuffle`] reproduce NumPy's legacy
//!   `RandomState` bit for bit (`np.random.seed(s)`, `np.random.shuffle` of a 1-d array), as the
//!   reference draws its long-tailed subset with them.
//! * [`stream`] seeds an independent generator for one (seed, purpose, epoch, index), so that a
//!   sampler order or a batch's augmentation can be rebuilt from scratch, on any thread.
use rand_mt::Mt;

/// NumPy's `np.random.seed(seed)` for an integer seed: `_legacy_seeding` calls
/// `mt19937_seed(state, seed)`, which fills the state with Matsumoto & Nishimura's
/// `init_genrand(seed)` recurrence (numpy/random/src/mt19937/mt19937.c).
pub(crate) fn numpy_legacy(seed: u32) -> Mt {
    Mt::new(seed)
}

/// NumPy's `random_interval(bitgen, max)` (numpy/random/src/distributions/distributions.c):
/// a uniform integer in `0..=max` by rejection, with `mask` the smallest 2^k − 1 ≥ `max`,
/// drawing `next_uint32 & mask` (or `next_uint64 & mask` when `max` exceeds 32 bits, MT19937's
/// `next_uint64` being the first 32-bit draw shifted up, or'ed with the second) until ≤ `max`.
pub(crate) fn random_interval(rng: &mut Mt, max: usize) -> usize {
    if max == 0 {
        return 0;
    }
    let max = max as u64;
    let mut mask = max;
    for shift in [1, 2, 4, 8, 16, 32] {
        mask |= mask >> shift;
    }
    loop {
        let value = if max <= u64::from(u32::MAX) {
            u64::from(rng.next_u32()) & mask
        } else {
            let hi = u64::from(rng.next_u32());
            let lo = u64::from(rng.next_u32());
            ((hi << 32) | lo) & mask
        };
        if value <= max {
            return value as usize;
        }
    }
}

/// NumPy's legacy `RandomState.shuffle` of a non-empty 1-d array (`_shuffle_raw` in
/// numpy/random/mtrand.pyx): Fisher–Yates from the end, `for i in reversed(range(1, n)):
/// j = random_interval(i); swap(x[i], x[j])`. An empty or 1-element slice draws nothing, as in
/// NumPy.
pub(crate) fn legacy_shuffle<T>(rng: &mut Mt, x: &mut [T]) {
    for i in (1..x.len()).rev() {
        let j = random_interval(rng, i);
        x.swap(i, j);
    }
}

/// A uniform double in [0, 1) from two 32-bit draws, NumPy's `random_standard_uniform` on
/// MT19937 (`(a >> 5) · 2^26 + (b >> 6)) / 2^53`, numpy/random/src/mt19937/mt19937.h).
pub(crate) fn uniform01(rng: &mut Mt) -> f64 {
    let a = f64::from(rng.next_u32() >> 5);
    let b = f64::from(rng.next_u32() >> 6);
    (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
}

/// What a [`stream`] is for; part of its key so that the streams never coincide.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Purpose {
    /// The instance-balanced (shuffled) order of an epoch.
    InstanceBalanced = 1,
    /// The class-aware sampler's order of an epoch.
    ClassAware = 2,
    /// The augmentation (crop offsets, flips) of one batch.
    Augment = 3,
}

/// An MT19937 seeded by `init_by_array` with the key
/// `[seed_lo, seed_hi, purpose, epoch_lo, epoch_hi, index_lo, index_hi]` (32-bit words).
pub(crate) fn stream(seed: u64, purpose: Purpose, epoch: usize, index: usize) -> Mt {
    let (epoch, index) = (epoch as u64, index as u64);
    Mt::new_with_key([
        seed as u32,
        (seed >> 32) as u32,
        purpose as u32,
        epoch as u32,
        (epoch >> 32) as u32,
        index as u32,
        (index >> 32) as u32,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_genrand_reference_outputs() {
        // mt19937ar.c with its default seed 5489 (init_genrand): first genrand_int32 output
        // 3499211612, as C++ `std::mt19937{}()`. NumPy equality is tested in long_tail.
        let mut rng = numpy_legacy(5489);
        assert_eq!(rng.next_u32(), 3_499_211_612);
    }

    #[test]
    fn interval_stays_in_range_and_covers_it() {
        let mut rng = numpy_legacy(1);
        let mut seen = [false; 6];
        for _ in 0..1000 {
            let v = random_interval(&mut rng, 5);
            seen[v] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(random_interval(&mut rng, 0), 0);
    }

    #[test]
    fn streams_differ_by_every_key_part() {
        let a = stream(0, Purpose::Augment, 0, 0).next_u32();
        assert_ne!(a, stream(1, Purpose::Augment, 0, 0).next_u32());
        assert_ne!(a, stream(0, Purpose::ClassAware, 0, 0).next_u32());
        assert_ne!(a, stream(0, Purpose::Augment, 1, 0).next_u32());
        assert_ne!(a, stream(0, Purpose::Augment, 0, 1).next_u32());
        assert_eq!(a, stream(0, Purpose::Augment, 0, 0).next_u32());
    }
}
