//! The debiased ℓ1 calibration error of Kumar, Liang & Ma ("Verified Uncertainty
//! Calibration", NeurIPS 2019, §5 and their `calibration` package's `get_calibration_error(…,
//! debias=True)` for p = 1), on the reference's 15 equal-width bins.
//!
//! The plug-in ECE Σ_b (n_b/N)·|ȳ_b − s̄_b| (ȳ_b: the bin's accuracy, s̄_b: its mean
//! confidence) is biased upward: |·| of a noisy difference exceeds the difference on average,
//! by about σ_b·√(2/π) when the model is calibrated (σ_b² = ȳ_b(1 − ȳ_b)/n_b). Kumar et al.
//! estimate that bias by drawing each bin's accuracy again from N(ȳ_b, σ_b²) and subtract it:
//! `ECE_debiased = 2·ECE − E_R[Σ_b (n_b/N)·|R_b − s̄_b|]`. Their package takes the expectation
//! by Monte Carlo; here it is exact, the mean of a folded normal,
//! `E|N(d, σ²)| = σ·√(2/π)·exp(−d²/2σ²) + d·(1 − 2Φ(−d/σ))` with d = ȳ_b − s̄_b, so the figure
//! does not depend on a random stream. A bin of one sample, or of all right or all wrong
//! (σ_b = 0), keeps its plug-in term.
//!
//! Why this one, and not Roelofs et al.'s equal-mass "sweep" ECE: it keeps the binning of the
//! plug-in ECE the table reports (so the two differ by the bias correction only), it has a
//! closed form, and it can go below 0 — which is what lets it be unbiased near a calibrated
//! model, where every plug-in estimate is positive.

/// The debiased ECE, a fraction (may be slightly negative for a well-calibrated model), from
/// per-bin sums: `(n_b, Σ confidence, Σ correct)` over the bins and `n` the samples scored
/// (samples in no bin count in `n`). 0 when `n` is 0.
pub fn debiased_ece_of_bins(bins: &[(f64, f64, f64)], n: f64) -> f64 {
    if n <= 0.0 {
        return 0.0;
    }
    bins.iter()
        .filter(|b| b.0 > 0.0)
        .map(|&(count, conf, hits)| {
            let (acc, mean_conf) = (hits / count, conf / count);
            let d = acc - mean_conf;
            let sigma = (acc * (1.0 - acc) / count).sqrt();
            count / n * (2.0 * d.abs() - folded_normal_mean(d, sigma))
        })
        .sum()
}

/// `E|X|` for `X ~ N(mu, sigma²)` (the folded normal's mean; Leone, Nelson & Nottingham 1961);
/// `|mu|` when `sigma` is 0.
pub fn folded_normal_mean(mu: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return mu.abs();
    }
    let z = mu / sigma;
    sigma * (2.0 / std::f64::consts::PI).sqrt() * (-z * z / 2.0).exp()
        + mu * (1.0 - 2.0 * normal_cdf(-z))
}

/// Φ(x), the standard normal distribution function, as `erfc(−x/√2)/2`.
pub fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

/// The complementary error function, with fractional error below 1.2e-7 everywhere
/// (Chebyshev fit of Press et al., Numerical Recipes in C, 2nd ed., §6.2, `erfcc`).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_and_the_folded_normal_match_scipy() {
        // scipy.special.erfc(0.5) = 0.4795001221869535, erfc(-1.3) = 1.9340079449406524;
        // scipy.stats.norm.cdf(1.96) = 0.9750021048517795.
        assert!((erfc(0.5) - 0.479_500_122_186_953_5).abs() < 1e-7);
        assert!((erfc(-1.3) - 1.934_007_944_940_652_4).abs() < 1e-7);
        assert!((normal_cdf(1.96) - 0.975_002_104_851_779_5).abs() < 1e-7);
        // E|N(0, σ²)| = σ·√(2/π); E|N(μ, σ²)| → |μ| when μ ≫ σ.
        assert!(
            (folded_normal_mean(0.0, 2.0) - 2.0 * (2.0 / std::f64::consts::PI).sqrt()).abs()
                < 1e-12
        );
        assert!((folded_normal_mean(-5.0, 0.1) - 5.0).abs() < 1e-9);
        assert_eq!(folded_normal_mean(-0.3, 0.0), 0.3);
    }

    /// The closed form against Kumar et al.'s own algorithm (their package's
    /// `normal_debiased_ce`, p = 1: bin accuracies redrawn from N(ȳ_b, ȳ_b(1 − ȳ_b)/n_b), the
    /// mean of the redrawn plug-ins subtracted from twice the plug-in) run by the venv's NumPy
    /// with 400 000 redraws: equal within 4 standard errors of its Monte Carlo mean.
    #[test]
    fn the_closed_form_matches_kumar_et_als_monte_carlo() {
        const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
        // (n_b, Σ confidence, Σ correct) of four bins.
        let bins = [
            (40.0, 40.0 * 0.55, 21.0),
            (120.0, 120.0 * 0.71, 90.0),
            (300.0, 300.0 * 0.86, 255.0),
            (25.0, 25.0 * 0.97, 25.0),
        ];
        let n: f64 = bins.iter().map(|b| b.0).sum();
        let script = format!(
            "import numpy as np\n\
             b = np.array({bins:?})\n\
             sizes, conf, acc = b[:, 0], b[:, 1] / b[:, 0], b[:, 2] / b[:, 0]\n\
             p = sizes / sizes.sum()\n\
             ce = np.dot(p, np.abs(acc - conf))\n\
             rng = np.random.default_rng(0)\n\
             r = rng.normal(acc, np.sqrt(acc * (1 - acc) / sizes), size=(400000, len(sizes)))\n\
             v = np.abs(r - conf) @ p\n\
             print(repr(float(2 * ce - v.mean())), repr(float(v.std() / np.sqrt(len(v)))))"
        );
        let out = std::process::Command::new(PYTHON)
            .args(["-c", &script])
            .output()
            .expect("the venv's Python runs (scripts/setup.sh links it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Vec<f64> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        let (want, se) = (v[0], v[1]);
        assert!(se > 0.0 && se < 1e-4, "standard error {se}");
        let got = debiased_ece_of_bins(&bins, n);
        // 4 standard errors of the Monte Carlo mean (and the erfc fit's 1e-7).
        assert!(
            (got - want).abs() < 4.0 * se + 1e-6,
            "{got} vs NumPy {want} ± {se}"
        );
    }

    /// One bin: 100 samples of confidence 0.8, 80 right. Plug-in 0; debiased −σ·√(2/π) with
    /// σ = √(0.8·0.2/100) = 0.04 (it goes below 0: unbiased, not clipped).
    #[test]
    fn a_calibrated_bin_is_corrected_below_its_plug_in() {
        let got = debiased_ece_of_bins(&[(100.0, 80.0, 80.0)], 100.0);
        let want = -0.04 * (2.0 / std::f64::consts::PI).sqrt();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        // Far from calibrated (accuracy 0.5, confidence 0.9): the correction vanishes.
        let got = debiased_ece_of_bins(&[(1000.0, 900.0, 500.0)], 1000.0);
        assert!((got - 0.4).abs() < 1e-9, "{got}");
        assert_eq!(debiased_ece_of_bins(&[], 0.0), 0.0);
    }
}
