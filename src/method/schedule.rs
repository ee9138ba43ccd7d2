//! Learning-rate schedules: `adjust_learning_rate` of the reference's `train_stage1.py`
//! (generalised to any warm-up and milestones) and of `train_stage2.py`. The learning rate is
//! set once per epoch, before its first batch.
use crate::config::Config;
use std::f64::consts::PI;

/// The stage-1 schedule: linear warm-up, then step decay or cosine annealing.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage1Schedule {
    /// Base learning rate (`lr`).
    pub base_lr: f64,
    /// Epochs of the stage, E (`num_epochs`).
    pub num_epochs: usize,
    /// Cosine annealing instead of step decay (`cos`).
    pub cos: bool,
    /// Linear warm-up epochs, W (reference: 5 with step decay, 0 with cosine).
    pub warmup_epochs: usize,
    /// 1-based epochs after which the step schedule multiplies the rate by 0.1 each
    /// (reference: [160, 180]).
    pub milestones: Vec<usize>,
}

impl Stage1Schedule {
    /// The schedule a configuration asks for (`lr`, `num_epochs`, `cos`, `lr_milestones` and
    /// [`Config::effective_warmup`]).
    pub fn from_config(c: &Config) -> Self {
        Stage1Schedule {
            base_lr: c.lr,
            num_epochs: c.num_epochs,
            cos: c.cos,
            warmup_epochs: c.effective_warmup(),
            milestones: c.lr_milestones.clone(),
        }
    }

    /// Learning rate of 0-based `epoch`. With e = epoch + 1:
    ///
    /// * warm-up, e ≤ W: lr·e/W (both schedules);
    /// * step (`cos: false`): lr·0.1^m, m = the number of milestones M with e > M — the
    ///   reference's `lr` for e ≤ 160, `lr·0.1` for 160 < e ≤ 180, `lr·0.01` after;
    /// * cosine (`cos: true`): lr·½(1 + cos(π·(epoch − W)/(E − W))), annealing over the
    ///   epochs after the warm-up. With W = 0 this is the reference's
    ///   lr·½(1 + cos(π·epoch/E)); the reference has no warm-up with cosine, so restarting the
    ///   cosine after the warm-up is this crate's choice (the rate is continuous at the end of
    ///   warm-up: lr at epoch W).
    ///
    /// The reference writes π as 3.1415926535; the difference (9·10⁻¹¹ relative in the angle)
    /// is far below f32 resolution. Epochs past E continue the formulas.
    pub fn lr(&self, epoch: usize) -> f64 {
        let e = epoch + 1;
        let w = self.warmup_epochs;
        if e <= w {
            return self.base_lr * e as f64 / w as f64;
        }
        if self.cos {
            let span = self.num_epochs.saturating_sub(w).max(1);
            cosine(self.base_lr, epoch - w, span)
        } else {
            let drops = self.milestones.iter().filter(|&&m| e > m).count();
            self.base_lr * 0.1f64.powi(drops as i32)
        }
    }
}

/// The stage-2 schedule (`adjust_learning_rate` of the reference's `train_stage2.py`): cosine
/// annealing over the stage, classifier group at lr·lr_factor, LWS group at lr.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stage2Schedule {
    /// Base learning rate (`lr`), that of the learnable weight scaling.
    pub base_lr: f64,
    /// The classifier learns at lr·lr_factor (`lr_factor`).
    pub lr_factor: f64,
    /// Epochs of the stage, E.
    pub num_epochs: usize,
}

impl Stage2Schedule {
    /// The schedule of a stage-2 configuration.
    ///
    /// # Errors
    /// When `lr_factor` is unset.
    pub fn from_config(c: &Config) -> Result<Self, String> {
        let lr_factor = c
            .lr_factor
            .ok_or_else(|| "stage 2 needs lr_factor (classifier lr = lr·lr_factor)".to_owned())?;
        Ok(Stage2Schedule {
            base_lr: c.lr,
            lr_factor,
            num_epochs: c.num_epochs,
        })
    }

    /// Learning rates of 0-based `epoch`: `[classifier, LWS]` =
    /// `[lr_factor·η, η]` with η = lr·½(1 + cos(π·epoch/E)) — parameter group 0 and 1 of the
    /// reference's optimizer.
    pub fn lrs(&self, epoch: usize) -> [f64; 2] {
        let lr = cosine(self.base_lr, epoch, self.num_epochs.max(1));
        [self.lr_factor * lr, lr]
    }
}

/// lr·½(1 + cos(π·t/span)): from lr at t = 0 towards 0 at t = span (SGDR's annealing with
/// η_min = 0, Loshchilov & Hutter, 2017).
fn cosine(lr: f64, t: usize, span: usize) -> f64 {
    0.5 * lr * (1.0 + (PI * t as f64 / span as f64).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step() -> Stage1Schedule {
        Stage1Schedule {
            base_lr: 0.1,
            num_epochs: 200,
            cos: false,
            warmup_epochs: 5,
            milestones: vec![160, 180],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// The reference's step schedule by hand: e = epoch + 1; e ≤ 5: 0.1·e/5; e > 180: 0.001;
    /// e > 160: 0.01; else 0.1.
    #[test]
    fn step_schedule_matches_reference() {
        let s = step();
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
            assert!(close(s.lr(epoch), lr), "epoch {epoch}: {}", s.lr(epoch));
        }
    }

    #[test]
    fn config_defaults_give_reference_schedules() {
        let mut c = Config::default();
        assert_eq!(Stage1Schedule::from_config(&c), step());
        c.cos = true;
        let s = Stage1Schedule::from_config(&c);
        assert_eq!(s.warmup_epochs, 0);
        assert!(Stage2Schedule::from_config(&c).is_err());
        c.lr_factor = Some(0.5);
        assert_eq!(Stage2Schedule::from_config(&c).unwrap().lr_factor, 0.5);
    }

    /// Cosine without warm-up, by hand: 0.1·½(1 + cos(π·epoch/200)): epoch 0 → 0.1,
    /// 100 → 0.05, 50 → 0.05·(1 + √2/2), 150 → 0.05·(1 − √2/2).
    #[test]
    fn cosine_schedule_matches_reference() {
        let s = Stage1Schedule {
            cos: true,
            warmup_epochs: 0,
            ..step()
        };
        let h = std::f64::consts::FRAC_1_SQRT_2;
        for (epoch, lr) in [
            (0, 0.1),
            (50, 0.05 * (1.0 + h)),
            (100, 0.05),
            (150, 0.05 * (1.0 - h)),
        ] {
            assert!(close(s.lr(epoch), lr), "epoch {epoch}: {}", s.lr(epoch));
        }
        // The last epoch is close to, not at, 0: 0.05·(1 + cos(199π/200)).
        assert!(close(s.lr(199), 0.05 * (1.0 - (PI / 200.0).cos())));
    }

    /// Warm-up 5 then cosine over the remaining 100 epochs: epochs 0..5 → 0.02·e; epoch 5 → 0.1;
    /// epoch 55 → 0.05; epoch 104 → 0.05·(1 + cos(99π/100)).
    #[test]
    fn cosine_with_warmup() {
        let s = Stage1Schedule {
            cos: true,
            num_epochs: 105,
            ..step()
        };
        for (epoch, lr) in [(0, 0.02), (2, 0.06), (4, 0.1), (5, 0.1), (55, 0.05)] {
            assert!(close(s.lr(epoch), lr), "epoch {epoch}: {}", s.lr(epoch));
        }
        assert!(close(s.lr(104), 0.05 * (1.0 + (99.0 * PI / 100.0).cos())));
    }

    /// Stage 2 by hand with lr 0.1, lr_factor 0.5, 10 epochs: η(0) = 0.1, η(5) = 0.05,
    /// η(9) = 0.05·(1 + cos(0.9π)).
    #[test]
    fn stage2_groups() {
        let s = Stage2Schedule {
            base_lr: 0.1,
            lr_factor: 0.5,
            num_epochs: 10,
        };
        assert_eq!(s.lrs(0), [0.05, 0.1]);
        let [c, l] = s.lrs(5);
        assert!(close(c, 0.025) && close(l, 0.05));
        let eta = 0.05 * (1.0 + (0.9 * PI).cos());
        let [c, l] = s.lrs(9);
        assert!(close(c, 0.5 * eta) && close(l, eta));
    }
}
