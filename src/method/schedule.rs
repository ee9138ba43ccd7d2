//! Learning-rate schedules: `adjust_learning_rate` of the reference's `train_stage1.py`
//! (generalised to any warm-up and milestones) and of `train_stage2.py`. The trainer sets the
//! rates once per epoch, before its first batch.
use std::f64::consts::PI;

/// Stage-1 learning rate of 0-based `epoch` of `num_epochs` (E), base rate `lr`, with
/// `warmup_epochs` (W; the reference's: 5 with step decay, 0 with cosine, see
/// `Config::effective_warmup`), 1-based `milestones` (reference: [160, 180]) and the factor
/// `decay` (γ) of each step. With e = epoch + 1:
///
/// * warm-up, e ≤ W: lr·e/W (both schedules);
/// * step (`cos: false`): lr·γ^m, m = the number of milestones M with e > M — with γ = 0.1 the
///   reference's lr for e ≤ 160, lr·0.1 for 160 < e ≤ 180, lr·0.01 after; with γ = 0.01
///   LDAM-DRW's `adjust_learning_rate` (kaidic/LDAM-DRW, `cifar_train.py`: lr·e/5 for e ≤ 5,
///   lr·0.01 for e > 160, lr·0.0001 for e > 180);
/// * cosine (`cos: true`): lr·½(1 + cos(π·(epoch − W)/(E − W))), annealing over the epochs
///   after the warm-up. With W = 0 this is the reference's lr·½(1 + cos(π·epoch/E)); the
///   reference has no warm-up with cosine, so restarting the cosine after the warm-up is this
///   crate's choice (the rate is continuous: lr at epoch W).
///
/// The reference writes π as 3.1415926535; the difference (3·10⁻¹¹ relative in the angle) is
/// far below f32 resolution. Epochs past E continue the formulas.
pub fn stage1_lr(
    lr: f64,
    epoch: usize,
    num_epochs: usize,
    cos: bool,
    warmup_epochs: usize,
    milestones: &[usize],
    decay: f64,
) -> f64 {
    let e = epoch + 1;
    if e <= warmup_epochs {
        return lr * e as f64 / warmup_epochs as f64;
    }
    if cos {
        let span = num_epochs.saturating_sub(warmup_epochs).max(1);
        cosine(lr, epoch - warmup_epochs, span)
    } else {
        let drops = milestones.iter().filter(|&&m| e > m).count();
        lr * decay.powi(drops as i32)
    }
}

/// Stage-2 learning rate η of 0-based `epoch` of `num_epochs` (E): η = lr·½(1 + cos(π·epoch/E))
/// (`adjust_learning_rate` of the reference's `train_stage2.py`). The reference gives parameter
/// group 0 (the classifier) η·`lr_factor` and group 1 (the learnable weight scaling) η; the
/// caller applies the factor.
pub fn stage2_lr(lr: f64, epoch: usize, num_epochs: usize) -> f64 {
    cosine(lr, epoch, num_epochs.max(1))
}

/// lr·½(1 + cos(π·t/span)): from lr at t = 0 towards 0 at t = span (SGDR's annealing with
/// η_min = 0, Loshchilov & Hutter, 2017).
fn cosine(lr: f64, t: usize, span: usize) -> f64 {
    0.5 * lr * (1.0 + (PI * t as f64 / span as f64).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// The reference's step schedule by hand (lr 0.1, W 5, milestones [160, 180], E 200):
    /// e = epoch + 1; e ≤ 5: 0.1·e/5; e > 180: 0.001; e > 160: 0.01; else 0.1.
    #[test]
    fn step_schedule_matches_reference() {
        let want = [
            (0, 0.02),
            (4, 0.1),
            (5, 0.1),
            (159, 0.1),
            (160, 0.01),
            (179, 0.01),
            (180, 0.001),
            (199, 0.001),
        ];
        for (epoch, lr) in want {
            let got = stage1_lr(0.1, epoch, 200, false, 5, &[160, 180], 0.1);
            assert!(close(got, lr), "epoch {epoch}: {got}");
        }
        // No warm-up: the first epoch is at the full rate.
        assert_eq!(stage1_lr(0.1, 0, 200, false, 0, &[160, 180], 0.1), 0.1);
    }

    /// LDAM-DRW's CIFAR schedule by hand (kaidic/LDAM-DRW, `cifar_train.py`,
    /// `adjust_learning_rate`, lr 0.1, 200 epochs): e = epoch + 1; e ≤ 5: 0.1·e/5; e > 180:
    /// 0.1·0.0001; e > 160: 0.1·0.01; else 0.1 — milestones [160, 180] with γ = 0.01.
    #[test]
    fn ldam_drw_schedule_matches_its_code() {
        let code = |epoch: usize| {
            let e = epoch + 1;
            match e {
                e if e <= 5 => 0.1 * e as f64 / 5.0,
                e if e > 180 => 0.1 * 0.0001,
                e if e > 160 => 0.1 * 0.01,
                _ => 0.1,
            }
        };
        for epoch in 0..200 {
            let got = stage1_lr(0.1, epoch, 200, false, 5, &[160, 180], 0.01);
            assert!(
                (got - code(epoch)).abs() < 1e-15,
                "epoch {epoch}: {got} vs {}",
                code(epoch)
            );
        }
        assert!(close(
            stage1_lr(0.1, 159, 200, false, 5, &[160, 180], 0.01),
            0.1
        ));
        assert!(close(
            stage1_lr(0.1, 160, 200, false, 5, &[160, 180], 0.01),
            1e-3
        ));
        assert!(close(
            stage1_lr(0.1, 180, 200, false, 5, &[160, 180], 0.01),
            1e-5
        ));
    }

    /// Cosine without warm-up, by hand: 0.1·½(1 + cos(π·epoch/200)): epoch 0 → 0.1,
    /// 100 → 0.05, 50 → 0.05·(1 + √2/2), 150 → 0.05·(1 − √2/2), 199 → 0.05·(1 − cos(π/200)).
    #[test]
    fn cosine_schedule_matches_reference() {
        let h = std::f64::consts::FRAC_1_SQRT_2;
        for (epoch, lr) in [
            (0, 0.1),
            (50, 0.05 * (1.0 + h)),
            (100, 0.05),
            (150, 0.05 * (1.0 - h)),
            (199, 0.05 * (1.0 - (PI / 200.0).cos())),
        ] {
            let got = stage1_lr(0.1, epoch, 200, true, 0, &[160, 180], 0.1);
            assert!(close(got, lr), "epoch {epoch}: {got}");
        }
    }

    /// Warm-up 5 then cosine over the remaining 100 of 105 epochs: epochs 0..5 → 0.02·e;
    /// epoch 5 → 0.1; epoch 55 → 0.05; epoch 104 → 0.05·(1 + cos(99π/100)).
    #[test]
    fn cosine_with_warmup() {
        for (epoch, lr) in [
            (0, 0.02),
            (2, 0.06),
            (4, 0.1),
            (5, 0.1),
            (55, 0.05),
            (104, 0.05 * (1.0 + (99.0 * PI / 100.0).cos())),
        ] {
            let got = stage1_lr(0.1, epoch, 105, true, 5, &[], 0.1);
            assert!(close(got, lr), "epoch {epoch}: {got}");
        }
        // All epochs in warm-up (E ≤ W): no division by zero.
        assert!(close(stage1_lr(0.1, 2, 3, true, 5, &[], 0.1), 0.06));
    }

    /// Stage 2 by hand with lr 0.1 over 10 epochs: η(0) = 0.1, η(5) = 0.05,
    /// η(9) = 0.05·(1 + cos(0.9π)).
    #[test]
    fn stage2_cosine() {
        assert_eq!(stage2_lr(0.1, 0, 10), 0.1);
        assert!(close(stage2_lr(0.1, 5, 10), 0.05));
        assert!(close(
            stage2_lr(0.1, 9, 10),
            0.05 * (1.0 + (0.9 * PI).cos())
        ));
    }
}
