//! Dynamic loss scaling for fp16 mixed precision, step for step as PyTorch's
//! `torch.amp.GradScaler("cuda")` with its defaults (Micikevicius et al., "Mixed Precision
//! Training", ICLR 2018, §3.2): the loss is multiplied by a scale S before `backward`, so that
//! small fp16 gradients do not flush to zero; the gradients are divided by S before the
//! optimizer step; a step whose gradients hold an inf or a NaN is skipped and S halves; after
//! `growth_interval` clean steps in a row S doubles.
use super::sgd::Sgd;
use tch::{Device, Kind, Tensor};

/// Prefix of the scaler's entries in an optimizer state ([`GradScaler::state`]).
pub const STATE_PREFIX: &str = "grad_scaler.";

/// PyTorch's `GradScaler(init_scale=2.**16, growth_factor=2.0, backoff_factor=0.5,
/// growth_interval=2000)`.
#[derive(Debug)]
pub struct GradScaler {
    /// S, `[1]` f32 on the training device.
    scale: Tensor,
    /// Clean steps since the last change of S, `[1]` i32 on the training device.
    growth_tracker: Tensor,
    /// S × `growth_factor` after `growth_interval` clean steps. PyTorch: 2.
    pub growth_factor: f64,
    /// S × `backoff_factor` after an overflow. PyTorch: 0.5.
    pub backoff_factor: f64,
    /// Clean steps before S grows. PyTorch: 2000.
    pub growth_interval: i64,
}

impl GradScaler {
    /// PyTorch's initial scale, 2^16.
    pub const INIT_SCALE: f64 = 65536.0;

    /// A scaler at S = [`GradScaler::INIT_SCALE`] with PyTorch's factors, its state on `device`.
    pub fn new(device: Device) -> Self {
        GradScaler {
            scale: Tensor::from_slice(&[Self::INIT_SCALE as f32]).to_device(device),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }

    /// The current scale S.
    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[0])
    }

    /// Sets S (a checkpoint's, or a test's).
    pub fn set_scale(&mut self, s: f64) {
        let _ = tch::no_grad(|| self.scale.fill_(s));
    }

    /// `loss · S`: the tensor to call `backward` on (`GradScaler.scale(loss)`). `loss` is a
    /// scalar f32 tensor on the scaler's device.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale.squeeze()
    }

    /// `GradScaler.step(optimizer)` then `GradScaler.update()`: divides every gradient of
    /// `sgd` by S in place (libtorch's fused `_amp_foreach_non_finite_check_and_unscale_`, one
    /// call per gradient), takes the SGD step only when no gradient holds an inf or a NaN, then
    /// updates S (`_amp_update_scale_`). Returns whether the step was taken.
    ///
    /// This reads one value back from the device (as PyTorch's `found_inf.item()`).
    pub fn step(&mut self, sgd: &mut Sgd) -> bool {
        let found_inf = Tensor::zeros([1], (Kind::Float, self.scale.device()));
        tch::no_grad(|| {
            // PyTorch: inv_scale = scale.double().reciprocal().float().
            let inv_scale = self
                .scale
                .to_kind(Kind::Double)
                .reciprocal()
                .to_kind(Kind::Float);
            let mut found = found_inf.shallow_clone();
            for mut g in sgd.gradients() {
                g.internal_amp_non_finite_check_and_unscale(&mut found, &inv_scale);
            }
        });
        let clean = found_inf.double_value(&[0]) == 0.0;
        if clean {
            sgd.step();
        }
        tch::no_grad(|| {
            let _ = self.scale.internal_amp_update_scale_(
                &self.growth_tracker,
                &found_inf,
                self.growth_factor,
                self.backoff_factor,
                self.growth_interval,
            );
        });
        clean
    }

    /// Updates the scale as after an overflow (S × `backoff_factor`, the clean-step count reset)
    /// without looking at gradients: for a step abandoned because its loss was not finite.
    pub fn record_overflow(&mut self) {
        let found_inf = Tensor::ones([1], (Kind::Float, self.scale.device()));
        tch::no_grad(|| {
            let _ = self.scale.internal_amp_update_scale_(
                &self.growth_tracker,
                &found_inf,
                self.growth_factor,
                self.backoff_factor,
                self.growth_interval,
            );
        });
    }

    /// The state a checkpoint keeps: `grad_scaler.scale` `[1]` f32 and
    /// `grad_scaler.growth_tracker` `[1]` i32.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            (format!("{STATE_PREFIX}scale"), self.scale.shallow_clone()),
            (
                format!("{STATE_PREFIX}growth_tracker"),
                self.growth_tracker.shallow_clone(),
            ),
        ]
    }

    /// Restores [`GradScaler::state`]; entries without [`STATE_PREFIX`] are not looked at.
    ///
    /// # Errors
    /// A missing entry, or one that is not a single finite positive scale or count.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<(), String> {
        let find = |name: &str| {
            let key = format!("{STATE_PREFIX}{name}");
            named
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, t)| t)
                .ok_or_else(|| format!("optimizer state: no '{key}'"))
        };
        let scale = find("scale")?;
        let tracker = find("growth_tracker")?;
        if scale.numel() != 1 || tracker.numel() != 1 {
            return Err("optimizer state: the grad_scaler entries must hold one value each".into());
        }
        let s = scale.double_value(&[0]);
        if !(s.is_finite() && s > 0.0) {
            return Err(format!(
                "optimizer state: grad_scaler.scale must be finite and > 0, is {s}"
            ));
        }
        let device = self.scale.device();
        self.scale = scale.reshape([1]).to_kind(Kind::Float).to_device(device);
        self.growth_tracker = tracker.reshape([1]).to_kind(Kind::Int).to_device(device);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(v: &[f32]) -> Tensor {
        Tensor::from_slice(v).set_requires_grad(true)
    }

    /// One parameter w, loss = Σ c·w; returns the optimizer and w.
    fn model(momentum: f64) -> (Sgd, Tensor) {
        let w = param(&[1.0, -2.0, 0.5]);
        let sgd = Sgd::new(
            vec![vec![("w".into(), w.shallow_clone())]],
            0.1,
            momentum,
            0.0,
        );
        (sgd, w)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.detach().flatten(0, -1)).unwrap()
    }

    #[test]
    fn scaled_steps_equal_unscaled_ones_in_fp32() {
        // Multiplying by a power of two and dividing again is exact in binary floating point,
        // so with fp32 gradients a scaled step is bit-identical to a plain one.
        let c = Tensor::from_slice(&[0.3f32, -1.7, 2.9]);
        let (mut plain, w1) = model(0.9);
        let (mut scaled, w2) = model(0.9);
        let mut scaler = GradScaler::new(Device::Cpu);
        for _ in 0..3 {
            plain.zero_grad();
            (&w1 * &c * &w1).sum(Kind::Float).backward();
            plain.step();
            scaled.zero_grad();
            scaler
                .scale_loss(&(&w2 * &c * &w2).sum(Kind::Float))
                .backward();
            assert!(scaler.step(&mut scaled));
        }
        assert_eq!(values(&w1), values(&w2));
        assert_eq!(scaler.scale(), GradScaler::INIT_SCALE);
    }

    #[test]
    fn overflow_skips_the_step_and_halves_the_scale() {
        let (mut sgd, w) = model(0.9);
        let mut scaler = GradScaler::new(Device::Cpu);
        scaler.set_scale(f32::MAX as f64);
        sgd.zero_grad();
        // Gradient 4·S overflows f32.
        scaler.scale_loss(&(&w * 4.0).sum(Kind::Float)).backward();
        assert!(!scaler.step(&mut sgd));
        assert_eq!(values(&w), vec![1.0, -2.0, 0.5]);
        assert_eq!(scaler.scale(), f32::MAX as f64 * 0.5);
        // No momentum buffer was started by the skipped step.
        assert!(sgd.state().is_empty());
    }

    #[test]
    fn an_abandoned_step_backs_off_and_restarts_the_growth_count() {
        let (mut sgd, w) = model(0.0);
        let mut scaler = GradScaler::new(Device::Cpu);
        scaler.growth_interval = 2;
        sgd.zero_grad();
        scaler.scale_loss(&w.sum(Kind::Float)).backward();
        assert!(scaler.step(&mut sgd));
        scaler.record_overflow();
        assert_eq!(scaler.scale(), GradScaler::INIT_SCALE / 2.0);
        // One clean step after the overflow is not yet two in a row.
        sgd.zero_grad();
        scaler.scale_loss(&w.sum(Kind::Float)).backward();
        assert!(scaler.step(&mut sgd));
        assert_eq!(scaler.scale(), GradScaler::INIT_SCALE / 2.0);
    }

    #[test]
    fn the_scale_grows_after_growth_interval_clean_steps() {
        let (mut sgd, w) = model(0.0);
        let mut scaler = GradScaler::new(Device::Cpu);
        scaler.growth_interval = 3;
        let mut seen = Vec::new();
        for _ in 0..7 {
            sgd.zero_grad();
            scaler.scale_loss(&w.sum(Kind::Float)).backward();
            assert!(scaler.step(&mut sgd));
            seen.push(scaler.scale());
        }
        let s = GradScaler::INIT_SCALE;
        assert_eq!(
            seen,
            vec![s, s, 2.0 * s, 2.0 * s, 2.0 * s, 4.0 * s, 4.0 * s]
        );
        // Each clean step moved w by lr·1 (gradient 1 after unscaling).
        let want: Vec<f32> = [1.0f32, -2.0, 0.5].iter().map(|v| v - 0.7).collect();
        for (a, b) in values(&w).iter().zip(&want) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn state_round_trips_and_rejects_a_bad_scale() {
        let mut a = GradScaler::new(Device::Cpu);
        a.set_scale(1024.0);
        let state = a.state();
        let mut b = GradScaler::new(Device::Cpu);
        b.load_state(&state).unwrap();
        assert_eq!(b.scale(), 1024.0);
        let bad = vec![
            (
                format!("{STATE_PREFIX}scale"),
                Tensor::from_slice(&[0.0f32]),
            ),
            (state[1].0.clone(), state[1].1.shallow_clone()),
        ];
        let e = b.load_state(&bad).unwrap_err();
        assert!(e.contains("grad_scaler.scale"), "{e}");
        let e = b.load_state(&state[..1]).unwrap_err();
        assert!(e.contains("grad_scaler.growth_tracker"), "{e}");
    }
}
