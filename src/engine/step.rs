//! One training step: mixup, micro-batches, forward pass and loss of the stage's
//! [`Objective`], backward (loss-scaled under `amp`) and one SGD step.
use crate::config::Config;
use crate::distributed::GradientSync;
use crate::method::grad_scaler::GradScaler;
use crate::method::mixup::{mixup_data, MixedBatch};
use crate::method::sgd::Sgd;
use crate::model::Network;
use rand::SeedableRng;
use tch::{Kind, Tensor};

/// Stream tag of the mixup RNG (see [`super::stream_seed`]); `bench` draws the same streams.
pub const MIXUP_STREAM: u64 = 1;

/// The loss a stage trains: what differs between recipes inside a training step.
pub trait Objective {
    /// Beta(α, α) parameter of mixup (Zhang et al., 2018); `None` trains on unmixed batches.
    fn mixup_alpha(&self) -> Option<f64>;

    /// Logits `[b, K]` and the loss (a scalar, nats) of one (micro-)batch of `batch.images`
    /// `[b, C, H, W]`; `backbone_train` puts the backbone's BatchNorm in train mode.
    fn forward_loss(
        &self,
        net: &Network,
        batch: &MixedBatch,
        backbone_train: bool,
    ) -> (Tensor, Tensor);
}

/// Figures of one training step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepOutput {
    /// Batch loss, nats (non-finite: the step was not applied).
    pub loss: f64,
    /// Correct top-1 predictions against the unmixed labels.
    pub hits: i64,
    /// Images of the step (over every rank in data-parallel training).
    pub images: i64,
    /// The SGD step was taken: false after a non-finite loss, or when the loss scaler found an
    /// inf or a NaN in the gradients (mixed precision; the scale then halves).
    pub applied: bool,
}

/// How a training step computes, beyond its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOptions {
    /// BatchNorm of the backbone (or Places-LT's block) in train mode: stage 1, and stage 2 with
    /// shift learning.
    pub backbone_train: bool,
    /// Micro-batches per batch (`accum_steps`); see [`micro_batches`].
    pub accum_steps: usize,
    /// Forward pass and loss under CUDA fp16 autocast (`amp`; a no-op without CUDA).
    pub autocast: bool,
}

impl StepOptions {
    /// The options of a stage of `cfg`; `backbone_train` as in [`StepOptions::backbone_train`].
    pub fn of(cfg: &Config, backbone_train: bool) -> Self {
        StepOptions {
            backbone_train,
            accum_steps: cfg.accum_steps.max(1),
            autocast: cfg.amp,
        }
    }
}

/// The micro-batches of a batch of `batch` images split `accum_steps` ways, as
/// `(start, len)`: sizes differ by at most one, larger first (`numpy.array_split`). With
/// `bn_train` no micro-batch holds a single image (BatchNorm in train mode needs two), so
/// fewer micro-batches are made when `batch < 2·accum_steps`.
pub fn micro_batches(batch: usize, accum_steps: usize, bn_train: bool) -> Vec<(i64, i64)> {
    let mut k = accum_steps.clamp(1, batch.max(1));
    if bn_train {
        k = k.min(batch / 2).max(1);
    }
    let (base, extra) = (batch / k, batch % k);
    let mut start = 0;
    (0..k)
        .map(|i| {
            let len = base + usize::from(i < extra);
            let chunk = (start as i64, len as i64);
            start += len;
            chunk
        })
        .collect()
}

/// A training batch on the network's device.
#[derive(Debug, Clone, Copy)]
pub struct TrainBatch<'a> {
    /// Images `[B, C, H, W]` f32.
    pub images: &'a Tensor,
    /// Class indices `[B]` i64.
    pub labels: &'a Tensor,
    /// Seed of the batch's mixup draw (λ and the pairing).
    pub mixup_seed: u64,
}

/// One SGD step on a batch already on the network's device. The batch is mixed (when the
/// objective has an α) with an RNG seeded by `batch.mixup_seed`; the objective says what the
/// forward pass trains (stage 1: backbone and classifier; MiSLAS's stage 2: classifier and LWS
/// on features computed without gradient, BatchNorm in train mode when `opts.backbone_train`,
/// i.e. shift learning). A non-finite loss skips the update (and, with `scaler`, counts as an
/// overflow: the scale backs off).
///
/// With `opts.accum_steps` > 1 the mixed batch is cut into [`micro_batches`], each forward and
/// backward pass weighted by its share of the batch (len/B), so the summed gradient is the
/// batch-mean loss's; one SGD step follows. With `scaler` the losses are scaled before
/// `backward` and the step goes through [`GradScaler::step`]; with `opts.autocast` each
/// forward pass and loss run under CUDA fp16 autocast (`torch.autocast("cuda")`).
pub fn train_step(
    net: &Network,
    sgd: &mut Sgd,
    scaler: Option<&mut GradScaler>,
    objective: &dyn Objective,
    batch: TrainBatch<'_>,
    opts: StepOptions,
) -> StepOutput {
    train_step_synced(net, sgd, scaler, objective, batch, opts, None)
        .expect("a step without gradient synchronisation cannot fail")
}

/// [`train_step`] on one rank of a data-parallel run: `sync` averages the gradients over the
/// ranks (and sums the loss, hits and images), so the non-finite check and the SGD step see
/// the same values on every rank, and the figures are the global batch's. It is told the SGD's
/// parameters before the last micro-batch's backward pass ([`GradientSync::before_backward`],
/// where DDP's buckets start their all-reduce from gradient hooks) and completes the average
/// after it ([`GradientSync::average`]).
///
/// # Errors
/// A lost rank (from `sync`).
pub fn train_step_synced(
    net: &Network,
    sgd: &mut Sgd,
    scaler: Option<&mut GradScaler>,
    objective: &dyn Objective,
    batch: TrainBatch<'_>,
    opts: StepOptions,
    sync: Option<&dyn GradientSync>,
) -> anyhow::Result<StepOutput> {
    let (x, y) = (batch.images, batch.labels);
    let alpha = objective.mixup_alpha();
    let mut rng = rand::rngs::StdRng::seed_from_u64(batch.mixup_seed);
    let mixed = mixup_data(x, y, alpha, &mut rng);
    let b = x.size()[0];
    let chunks = micro_batches(b as usize, opts.accum_steps, opts.backbone_train);
    sgd.zero_grad();
    let mut loss_t = Tensor::zeros([], (Kind::Float, x.device()));
    let mut hits_t = Tensor::zeros([], (Kind::Int64, x.device()));
    for &(start, len) in &chunks {
        let part = mixed.narrow(start, len);
        let forward = || objective.forward_loss(net, &part, opts.backbone_train);
        let (logits, loss) = if opts.autocast {
            tch::autocast(true, forward)
        } else {
            forward()
        };
        let loss = if chunks.len() == 1 {
            loss
        } else {
            loss * (len as f64 / b as f64)
        };
        if let (Some(sync), true) = (sync, start + len == b) {
            // The last micro-batch: its backward pass may start averaging the gradients.
            sync.before_backward(&sgd.parameters())?;
        }
        match &scaler {
            Some(s) => s.scale_loss(&loss).backward(),
            None => loss.backward(),
        }
        tch::no_grad(|| {
            loss_t += loss.detach().to_kind(Kind::Float);
            hits_t += logits
                .argmax(-1, false)
                .eq_tensor(&y.narrow(0, start, len))
                .sum(Kind::Int64);
        });
    }
    let mut loss_v = loss_t.double_value(&[]);
    let (mut hits, mut images) = (hits_t.int64_value(&[]), b);
    if let Some(sync) = sync {
        let mut figures = Tensor::from_slice(&[loss_v * b as f64, hits as f64, b as f64]);
        sync.average(&sgd.gradients(), &mut figures)?;
        let f = Vec::<f64>::try_from(&figures)?;
        (loss_v, hits, images) = (f[0] / f[2].max(1.0), f[1] as i64, f[2] as i64);
    }
    Ok(StepOutput {
        loss: loss_v,
        hits,
        images,
        applied: apply(sgd, scaler, loss_v),
    })
}

/// The SGD step on the gradients of a batch whose loss is `loss`: skipped after a non-finite
/// loss (with `scaler`, counted as an overflow: the scale backs off) or when the scaler finds
/// an inf or a NaN in the gradients. Whether it was taken.
fn apply(sgd: &mut Sgd, scaler: Option<&mut GradScaler>, loss: f64) -> bool {
    if !loss.is_finite() {
        if let Some(s) = scaler {
            s.record_overflow();
        }
        false
    } else if let Some(s) = scaler {
        s.step(sgd)
    } else {
        sgd.step();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::recipe::mislas::LabelAwareSmoothingOnLws;
    use crate::engine::recipe::mixup::MixupCrossEntropy;
    use crate::method::las::LabelAwareSmoothing;
    use crate::method::mixup::{mixup_criterion, mixup_data};
    use crate::model::Part;
    use rand::SeedableRng;
    use tch::Device;

    const TRAIN: StepOptions = StepOptions {
        backbone_train: true,
        accum_steps: 1,
        autocast: false,
    };

    fn batch<'a>(x: &'a Tensor, y: &'a Tensor, mixup_seed: u64) -> TrainBatch<'a> {
        TrainBatch {
            images: x,
            labels: y,
            mixup_seed,
        }
    }

    fn setup() -> (Network, Sgd, Tensor, Tensor) {
        tch::manual_seed(3);
        let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        let mut params = net.part_parameters(Part::Backbone);
        params.extend(net.part_parameters(Part::Classifier));
        let sgd = Sgd::new(vec![params], 0.1, 0.9, 0.0);
        let x = Tensor::randn([8, 1, 12, 12], (Kind::Float, Device::Cpu));
        let y = Tensor::from_slice(&[0i64, 1, 2, 3, 0, 1, 2, 3]);
        (net, sgd, x, y)
    }

    #[test]
    fn stage1_step_trains_on_the_mixed_batch_and_counts_unmixed_labels() {
        let (net, mut sgd, x, y) = setup();
        let seed = 11;
        // The loss the step must report: mixup CE on the batch mixed with the same seed.
        let mixed = mixup_data(
            &x,
            &y,
            Some(1.0),
            &mut rand::rngs::StdRng::seed_from_u64(seed),
        );
        assert!(mixed.lam < 1.0);
        let (expected, hits) = tch::no_grad(|| {
            let logits = net.classify(&net.features(&mixed.images, true));
            let hits = logits
                .argmax(-1, false)
                .eq_tensor(&y)
                .sum(Kind::Int64)
                .int64_value(&[]);
            (mixup_criterion(&logits, &mixed).double_value(&[]), hits)
        });
        let method = MixupCrossEntropy { alpha: Some(1.0) };
        let out = train_step(&net, &mut sgd, None, &method, batch(&x, &y, seed), TRAIN);
        assert!(
            (out.loss - expected).abs() < 1e-5,
            "{} vs {expected}",
            out.loss
        );
        assert_eq!(out.hits, hits);
        // The step was applied: the same batch now gives another loss.
        let after = train_step(&net, &mut sgd, None, &method, batch(&x, &y, seed), TRAIN);
        assert!((after.loss - out.loss).abs() > 1e-6);
    }

    #[test]
    fn micro_batches_split_evenly_and_never_leave_one_image_to_batchnorm() {
        assert_eq!(micro_batches(8, 1, true), vec![(0, 8)]);
        assert_eq!(micro_batches(8, 3, true), vec![(0, 3), (3, 3), (6, 2)]);
        assert_eq!(
            micro_batches(10, 4, false),
            vec![(0, 3), (3, 3), (6, 2), (8, 2)]
        );
        // Five images in four parts would leave a one-image part: two parts in train mode.
        assert_eq!(micro_batches(5, 4, true), vec![(0, 3), (3, 2)]);
        assert_eq!(
            micro_batches(5, 4, false),
            vec![(0, 2), (2, 1), (3, 1), (4, 1)]
        );
        assert_eq!(micro_batches(3, 8, true), vec![(0, 3)]);
    }

    /// A second network with `net`'s weights (tests run in parallel and share torch's
    /// generator, so two seeded constructions need not agree).
    fn twin(net: &Network) -> (Network, Sgd) {
        let other = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
        let theirs = other.vs.variables();
        tch::no_grad(|| {
            for (k, t) in net.vs.variables() {
                theirs[&k].shallow_clone().copy_(&t);
            }
        });
        let mut params = other.part_parameters(Part::Backbone);
        params.extend(other.part_parameters(Part::Classifier));
        (other, Sgd::new(vec![params], 0.1, 0.9, 0.0))
    }

    /// Steps with BatchNorm on its running statistics, so that a loss is a mean over
    /// independent images and micro-batches add up exactly to the batch.
    fn frozen_bn(accum_steps: usize) -> StepOptions {
        StepOptions {
            backbone_train: false,
            accum_steps,
            autocast: false,
        }
    }

    /// Moves BatchNorm's running statistics to those of `x` (30 train-mode passes), so that
    /// eval-mode activations stay of order one.
    fn settle_batchnorm(net: &Network, x: &Tensor) {
        tch::no_grad(|| {
            for _ in 0..30 {
                let _ = net.features(x, true);
            }
        });
    }

    fn max_difference(a: &Network, b: &Network) -> f64 {
        let (va, vb) = (a.vs.variables(), b.vs.variables());
        va.iter()
            .map(|(k, t)| (t - &vb[k]).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    }

    #[test]
    fn accumulated_micro_batches_take_the_full_batch_step() {
        // With BatchNorm on running statistics the loss is a mean over independent images, so
        // the weighted micro-batch gradients add up to the batch's: the same step, to rounding.
        let method = MixupCrossEntropy { alpha: Some(1.0) };
        let (net1, mut sgd1, x, y) = setup();
        settle_batchnorm(&net1, &x);
        let (net3, mut sgd3) = twin(&net1);
        sgd1.set_lr(0, 0.01);
        sgd3.set_lr(0, 0.01);
        let fresh = twin(&net1).0;
        assert_eq!(max_difference(&net1, &net3), 0.0);
        for seed in [11, 12] {
            let a = train_step(
                &net1,
                &mut sgd1,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(1),
            );
            let b = train_step(
                &net3,
                &mut sgd3,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(3),
            );
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
            assert_eq!(a.hits, b.hits);
            assert!(a.applied && b.applied);
        }
        let d = max_difference(&net1, &net3);
        assert!(d < 1e-5, "weights differ by {d}");
        // And the steps did move the weights.
        assert!(max_difference(&net1, &fresh) > 1e-3);
    }

    #[test]
    fn stage2_accumulation_trains_classifier_and_lws_as_one_batch() {
        let las = LabelAwareSmoothing::new(
            &[40, 20, 10, 5],
            0.3,
            0.0,
            crate::config::LasShape::Concave,
            None,
            Device::Cpu,
        )
        .unwrap();
        let method = LabelAwareSmoothingOnLws { las, alpha: None };
        let stage2 = |net: &Network| {
            net.freeze_backbone();
            Sgd::new(
                vec![
                    net.part_parameters(Part::Classifier),
                    net.part_parameters(Part::Lws),
                ],
                0.1,
                0.9,
                5e-4,
            )
        };
        let (net1, _, x, y) = setup();
        settle_batchnorm(&net1, &x);
        let (net4, _) = twin(&net1);
        let (mut sgd1, mut sgd4) = (stage2(&net1), stage2(&net4));
        for seed in 0..3 {
            let a = train_step(
                &net1,
                &mut sgd1,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(1),
            );
            let b = train_step(
                &net4,
                &mut sgd4,
                None,
                &method,
                batch(&x, &y, seed),
                frozen_bn(4),
            );
            assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);
        }
        let d = max_difference(&net1, &net4);
        assert!(d < 1e-5, "weights differ by {d}");
        let lws = &net1.vs.variables()["lws_model.learned_norm"];
        assert!(
            (lws - 1.0).abs().max().double_value(&[]) > 1e-4,
            "LWS did not learn"
        );
    }

    #[test]
    fn loss_scaling_in_fp32_gives_the_unscaled_step() {
        // The scaler multiplies by 2^16 and divides again: exact in binary floating point.
        let method = MixupCrossEntropy { alpha: Some(1.0) };
        let (net1, mut sgd1, x, y) = setup();
        let (net2, mut sgd2) = twin(&net1);
        let mut scaler = GradScaler::new(Device::Cpu);
        for seed in [1, 2] {
            let a = train_step(&net1, &mut sgd1, None, &method, batch(&x, &y, seed), TRAIN);
            let b = train_step(
                &net2,
                &mut sgd2,
                Some(&mut scaler),
                &method,
                batch(&x, &y, seed),
                TRAIN,
            );
            assert_eq!(a, b);
        }
        assert_eq!(max_difference(&net1, &net2), 0.0);
    }
}
