//! Exponential decay by half-life.

/// Multiplier that a quantity keeps after `elapsed_seconds` with the given half-life:
/// `2^(-elapsed / half_life)`. Never above 1: a negative elapsed time (an evaluation before the
/// quantity's reference time) counts as zero.
pub fn decay_factor(elapsed_seconds: f64, half_life_seconds: f64) -> f64 {
    if elapsed_seconds <= 0.0 {
        1.0
    } else {
        (-elapsed_seconds / half_life_seconds).exp2()
    }
}

/// `values` referenced at `from_ms`, decayed to `to_ms`: sums that share a half-life share one
/// decay factor, computed only when a value is not zero (zeros stay exactly zero).
pub fn decayed<const N: usize>(
    values: [f64; N],
    from_ms: i64,
    to_ms: i64,
    half_life_seconds: f64,
) -> [f64; N] {
    if values.iter().all(|value| *value == 0.0) {
        return [0.0; N];
    }
    let elapsed_seconds = (to_ms.saturating_sub(from_ms)) as f64 / 1000.0;
    let factor = decay_factor(elapsed_seconds, half_life_seconds);
    values.map(|value| if value == 0.0 { 0.0 } else { value * factor })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_half_life_halves() {
        assert!((decay_factor(3600.0, 3600.0) - 0.5).abs() < 1e-12);
        assert_eq!(decay_factor(0.0, 10.0), 1.0);
        assert_eq!(decay_factor(-5.0, 10.0), 1.0);
    }

    proptest! {
        /// Decaying in two steps equals decaying once over the sum.
        #[test]
        fn decay_composes(a in 0.0f64..1e8, b in 0.0f64..1e8, half_life in 1.0f64..1e8) {
            let stepwise = decay_factor(a, half_life) * decay_factor(b, half_life);
            let direct = decay_factor(a + b, half_life);
            prop_assert!((stepwise - direct).abs() <= 1e-12 + 1e-9 * direct);
        }

        /// Decay never increases a quantity and stays within [0, 1].
        #[test]
        fn decay_is_monotone(a in 0.0f64..1e9, extra in 0.0f64..1e9, half_life in 1.0f64..1e8) {
            let early = decay_factor(a, half_life);
            let late = decay_factor(a + extra, half_life);
            prop_assert!((0.0..=1.0).contains(&early));
            prop_assert!(late <= early);
        }

        /// A sum of decayed contributions is the same whichever way it is accumulated: folding
        /// forward event by event equals summing each contribution decayed directly.
        #[test]
        fn forward_fold_equals_direct_sum(
            mut times in proptest::collection::vec(0i64..10_000_000_000, 1..40),
            half_life in 60.0f64..1e8,
        ) {
            times.sort_unstable();
            let mut folded = 0.0;
            let mut at = times[0];
            for &t in &times {
                folded = decayed([folded], at, t, half_life)[0] + 1.0;
                at = t;
            }
            let end = times[times.len() - 1] + 1_000_000;
            let [folded_at_end] = decayed([folded], at, end, half_life);
            let direct: f64 = times.iter().map(|&t| decayed([1.0], t, end, half_life)[0]).sum();
            prop_assert!((folded_at_end - direct).abs() <= 1e-9 * direct.max(1.0));
        }
    }
}
