//! What a token's log-probability needs from a row of logits: the largest logit, where it
//! is, and log(sum(exp(logits))). Engines whose forward pass hands back raw logits (llama.cpp)
//! call this once per sampled token; over a 49k-entry vocabulary it is most of the work a
//! decode step does outside the forward pass, so it runs vectorized (AVX2 when the CPU has
//! it) instead of through NumPy's temporaries.

/// The facts about one row of logits that log-softmax needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogitSummary {
    /// Index of the largest logit (the first, on ties): the greedy token.
    pub argmax: usize,
    /// The largest logit.
    pub max: f32,
    /// log(sum(exp(logits))); a token's log-probability is `logit - log_sum_exp`.
    pub log_sum_exp: f32,
}

impl LogitSummary {
    /// The log-probability of the entry with logit `logit`.
    pub fn logprob(&self, logit: f32) -> f32 {
        logit - self.log_sum_exp
    }
}

/// Summarizes a row of logits; `None` when it is empty or holds a NaN (no distribution).
pub fn summarize(logits: &[f32]) -> Option<LogitSummary> {
    if logits.is_empty() {
        return None;
    }
    let (max, sum) = dispatch(logits);
    if max.is_nan() || sum.is_nan() {
        return None;
    }
    let argmax = first_index_of(logits, max)?;
    Some(LogitSummary {
        argmax,
        max,
        log_sum_exp: max + (sum.ln() as f32),
    })
}

fn dispatch(logits: &[f32]) -> (f32, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU was just checked to support the features the function enables.
        return unsafe { avx2::max_and_sum(logits) };
    }
    max_and_sum(logits)
}

fn first_index_of(logits: &[f32], value: f32) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support the features the function enables.
        return unsafe { avx2::first_index_of(logits, value) };
    }
    logits.iter().position(|&x| x == value)
}

/// Lane sums move into f64 this often, so a long row loses no precision in f32 sums.
const BLOCK: usize = 512;

/// Returns (max, sum of exp(x - max)); NaN in both when a NaN is present.
fn max_and_sum(logits: &[f32]) -> (f32, f64) {
    if logits.iter().any(|x| x.is_nan()) {
        return (f32::NAN, f64::NAN);
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if let Some(sum) = degenerate_sum(max) {
        return (max, sum);
    }
    let mut total = 0.0f64;
    for block in logits.chunks(BLOCK) {
        total += f64::from(block.iter().map(|&x| exp_nonpositive(x - max)).sum::<f32>());
    }
    (max, total)
}

/// The sum for a maximum that is not finite: +inf is a point mass, -inf everywhere is none.
fn degenerate_sum(max: f32) -> Option<f64> {
    match max {
        f32::INFINITY => Some(1.0),
        f32::NEG_INFINITY => Some(0.0),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The same computation eight lanes at a time; the compiler does not vectorize the
    //! scalar version reliably (the exp's float-to-int step and the sum's order stop it).
    use std::arch::x86_64::*;

    use super::{degenerate_sum, exp_nonpositive, BLOCK, EXP};

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn max_and_sum(logits: &[f32]) -> (f32, f64) {
        let chunks = logits.chunks_exact(8);
        let tail = chunks.remainder();
        let mut max8 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut nan8 = _mm256_setzero_ps();
        for chunk in chunks.clone() {
            let x = _mm256_loadu_ps(chunk.as_ptr());
            nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            max8 = _mm256_max_ps(max8, x);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), max8);
        let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut has_nan = _mm256_movemask_ps(nan8) != 0;
        for &x in tail {
            has_nan |= x.is_nan();
            max = max.max(x);
        }
        if has_nan {
            return (f32::NAN, f64::NAN);
        }
        if let Some(sum) = degenerate_sum(max) {
            return (max, sum);
        }
        let max8 = _mm256_set1_ps(max);
        let mut total = 0.0f64;
        for block in logits[..logits.len() - tail.len()].chunks(BLOCK) {
            // Two accumulators: consecutive adds do not wait on each other.
            let (mut even, mut odd) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut pairs = block.chunks_exact(16);
            for pair in pairs.by_ref() {
                let a = _mm256_loadu_ps(pair.as_ptr());
                let b = _mm256_loadu_ps(pair.as_ptr().add(8));
                even = _mm256_add_ps(even, exp8(_mm256_sub_ps(a, max8)));
                odd = _mm256_add_ps(odd, exp8(_mm256_sub_ps(b, max8)));
            }
            if let Some(last) = pairs.remainder().get(..8) {
                let a = _mm256_loadu_ps(last.as_ptr());
                even = _mm256_add_ps(even, exp8(_mm256_sub_ps(a, max8)));
            }
            _mm256_storeu_ps(lanes.as_mut_ptr(), _mm256_add_ps(even, odd));
            total += lanes.iter().map(|&x| f64::from(x)).sum::<f64>();
        }
        total += tail
            .iter()
            .map(|&x| f64::from(exp_nonpositive(x - max)))
            .sum::<f64>();
        (max, total)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn first_index_of(logits: &[f32], value: f32) -> Option<usize> {
        let wanted = _mm256_set1_ps(value);
        let chunks = logits.chunks_exact(8);
        let tail_start = logits.len() - chunks.remainder().len();
        for (i, chunk) in chunks.enumerate() {
            let x = _mm256_loadu_ps(chunk.as_ptr());
            let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(x, wanted));
            if hits != 0 {
                return Some(i * 8 + hits.trailing_zeros() as usize);
            }
        }
        let tail = logits[tail_start..].iter().position(|&x| x == value);
        tail.map(|i| tail_start + i)
    }

    /// `exp_nonpositive` on eight lanes, with fused multiply-adds.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_max_ps(x, _mm256_set1_ps(EXP.floor));
        let shifted = _mm256_fmadd_ps(x, _mm256_set1_ps(EXP.log2_e), _mm256_set1_ps(EXP.round));
        let k = _mm256_sub_ps(shifted, _mm256_set1_ps(EXP.round));
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(EXP.ln2_hi), x);
        let r = _mm256_fnmadd_ps(k, _mm256_set1_ps(EXP.ln2_lo), r);
        let mut p = _mm256_set1_ps(EXP.poly[0]);
        for &c in &EXP.poly[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let one = _mm256_set1_ps(1.0);
        let y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, one));
        // The integer k sits in the low mantissa bits of `shifted`.
        let k_int = _mm256_sub_epi32(
            _mm256_castps_si256(shifted),
            _mm256_set1_epi32(EXP.round_bits),
        );
        let scale = _mm256_slli_epi32::<23>(_mm256_add_epi32(k_int, _mm256_set1_epi32(127)));
        _mm256_mul_ps(y, _mm256_castsi256_ps(scale))
    }
}

/// Cephes' expf: exp(x) = 2^k * exp(r) with r = x - k*ln2 in [-ln2/2, ln2/2], exp(r) by a
/// degree-6 polynomial (within 2 ulp).
struct ExpConstants {
    /// Below this exp leaves f32's normal range; -inf and large negatives are clamped here.
    floor: f32,
    log2_e: f32,
    /// ln 2 split in two, so k*ln2 is subtracted without rounding error.
    ln2_hi: f32,
    ln2_lo: f32,
    /// Adding 1.5 * 2^23 rounds to the nearest integer, which lands in the low mantissa bits.
    round: f32,
    round_bits: i32,
    poly: [f32; 6],
}

const EXP: ExpConstants = ExpConstants {
    floor: -87.0,
    log2_e: std::f32::consts::LOG2_E,
    ln2_hi: 0.693_359_4,
    ln2_lo: -2.121_944_4e-4,
    round: 12_582_912.0,
    round_bits: 0x4B40_0000,
    poly: [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ],
};

/// exp(x) for x <= 0 (the scalar path and the rows' last few entries).
fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(EXP.floor);
    let shifted = x * EXP.log2_e + EXP.round;
    let k = shifted - EXP.round;
    let r = x - k * EXP.ln2_hi - k * EXP.ln2_lo;
    let p = EXP.poly[1..].iter().fold(EXP.poly[0], |p, &c| p * r + c);
    let y = p * r * r + r + 1.0;
    let k_int = (shifted.to_bits() as i32).wrapping_sub(EXP.round_bits);
    y * f32::from_bits(((k_int + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(logits: &[f32]) -> (usize, f64) {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let argmax = logits.iter().position(|&x| x == max).unwrap();
        let sum: f64 = logits
            .iter()
            .map(|&x| (f64::from(x) - f64::from(max)).exp())
            .sum();
        (argmax, f64::from(max) + sum.ln())
    }

    fn pseudo_random(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
            })
            .collect()
    }

    #[test]
    fn matches_a_double_precision_log_sum_exp() {
        for (n, scale) in [
            (1, 1.0),
            (7, 3.0),
            (8, 10.0),
            (49_152, 20.0),
            (262_145, 60.0),
        ] {
            let logits = pseudo_random(n, n as u64, scale);
            let summary = summarize(&logits).unwrap();
            let (argmax, lse) = reference(&logits);
            assert_eq!(summary.argmax, argmax);
            assert_eq!(summary.max, logits[argmax]);
            let error = (f64::from(summary.log_sum_exp) - lse).abs();
            assert!(
                error <= 4.0 * f64::from(f32::EPSILON) * lse.abs().max(1.0),
                "{n}: {error}"
            );
        }
    }

    #[test]
    fn the_scalar_path_agrees_with_the_vector_path() {
        for n in [1, 8, 15, 16, 17, 511, 512, 520, 49_152, 49_159] {
            let logits = pseudo_random(n, 7 + n as u64, 30.0);
            let (max, sum) = max_and_sum(&logits);
            let (vmax, vsum) = dispatch(&logits);
            assert_eq!(max, vmax);
            let argmax = logits.iter().position(|&x| x == max);
            assert_eq!(first_index_of(&logits, max), argmax);
            assert!(((sum - vsum) / sum).abs() < 1e-6, "{n}: {sum} vs {vsum}");
        }
        let with_nan = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, f32::NAN, 9.0];
        assert!(dispatch(&with_nan).0.is_nan() && max_and_sum(&with_nan).0.is_nan());
    }

    #[test]
    fn exp_is_accurate_over_its_range() {
        let mut x = -87.0f32;
        while x <= 0.0 {
            let exact = f64::from(x).exp();
            let got = f64::from(exp_nonpositive(x));
            assert!(
                ((got - exact) / exact).abs() < 3.0 * f64::from(f32::EPSILON),
                "exp({x})"
            );
            x += 0.0137;
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert!(exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn ties_take_the_first_and_masked_entries_count_for_nothing() {
        let logits = [1.0, 3.0, f32::NEG_INFINITY, 3.0, -2.0];
        let summary = summarize(&logits).unwrap();
        assert_eq!((summary.argmax, summary.max), (1, 3.0));
        let (_, lse) = reference(&logits);
        assert!((f64::from(summary.log_sum_exp) - lse).abs() < 1e-6);
        assert!((summary.logprob(3.0) - (3.0 - lse as f32)).abs() < 1e-6);
    }

    #[test]
    fn empty_and_nan_rows_have_no_summary() {
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[0.5, f32::NAN, 1.0]), None);
        let all_masked = summarize(&[f32::NEG_INFINITY; 3]).unwrap();
        assert_eq!(all_masked.log_sum_exp, f32::NEG_INFINITY);
        let point = summarize(&[0.0, f32::INFINITY]).unwrap();
        assert_eq!((point.argmax, point.max), (1, f32::INFINITY));
    }
}
