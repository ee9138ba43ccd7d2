//! Throughput figures (`mislas bench`, `cargo bench`): stage-1 images/s of the full pipeline
//! (loader threads + augmentation + mixup + SGD step) against a bare tch loop on pre-made
//! tensors (same model, same batch), loader images/s alone, the process's peak memory, and
//! what one in-epoch checkpoint costs ([`checkpoint_cost`]).
use crate::config::Config;
use crate::data::loader::{epoch_loader, EpochLoader, LoaderOptions};
use crate::data::{sampler, LongTailData};
use crate::engine::recipe::mixup::MixupRecipe;
use crate::engine::recipe::StageRecipe;
use crate::engine::setup::{self, Purpose};
use crate::engine::step::{train_step, StepOptions, TrainBatch, MIXUP_STREAM};
use crate::engine::{peak_memory_bytes, stream_seed};
use crate::method::grad_scaler::GradScaler;
use crate::method::sgd::Sgd;
use crate::model::Network;

use anyhow::Result;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Alternating rounds of pipeline and bare-loop measurement.
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measured figures, images per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchFigures {
    /// Full stage-1 pipeline.
    pub pipeline: f64,
    /// Bare training loop on pre-made tensors.
    pub bare: f64,
    /// Loader alone (no training).
    pub loader: f64,
    /// Peak resident memory of the process, bytes.
    pub peak_memory_bytes: u64,
}

/// Unusable images of a batch: an error with `on_bad_image: fail`, as in training; otherwise
/// reported on stderr.
fn check_skipped(cfg: &Config, skipped: &[crate::data::files::BadImage]) -> Result<()> {
    if let Some(bad) = cfg.on_bad_image.refused(skipped) {
        anyhow::bail!(
            "unusable image {bad}; {}",
            crate::config::BadImagePolicy::SKIP_HINT
        );
    }
    for bad in skipped {
        eprintln!("bench: unusable image {bad}: skipped");
    }
    Ok(())
}

/// Measures stage-1 throughput of `cfg` over `batches` timed batches (after 3 warm-up batches),
/// the median of 3 alternating rounds for the pipeline and the bare loop, and prints the
/// figures.
///
/// The full pipeline and the bare loop run in alternating rounds that each start from the same
/// weights and a fresh optimizer, so that a change of the machine's load or of the weights
/// affects both alike. The bare loop trains on the pipeline's own batches, made beforehand and
/// already on the device.
///
/// # Errors
/// An unusable configuration or missing data.
pub fn run(cfg: &Config, batches: usize) -> Result<BenchFigures> {
    let bench = Bench::new(cfg, batches)?;
    let loader = bench.loader_alone()?;
    let snapshot = bench.snapshot();
    let premade: Vec<(Tensor, Tensor)> = bench
        .loader(2)
        .map(|b| {
            (
                b.images.to_device(bench.device),
                b.labels.to_device(bench.device),
            )
        })
        .collect();
    let (mut pipeline_runs, mut bare_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        bench.restore(&snapshot);
        pipeline_runs.push(bench.time(
            round,
            bench.loader(2).map(|b| {
                let x = b.images.to_device_(bench.device, Kind::Float, true, false);
                let y = b.labels.to_device_(bench.device, Kind::Int64, true, false);
                (x, y)
            }),
        ));
        bench.restore(&snapshot);
        let made = premade
            .iter()
            .map(|(x, y)| (x.shallow_clone(), y.shallow_clone()));
        bare_runs.push(bench.time(round, made));
    }
    bench.restore(&snapshot);
    let figures = BenchFigures {
        pipeline: median(pipeline_runs),
        bare: median(bare_runs),
        loader,
        peak_memory_bytes: peak_memory_bytes(),
    };
    print_figures(cfg, bench.device, batches, &figures);
    Ok(figures)
}

/// A prepared stage-1 set-up and the batches it is timed on.
struct Bench<'a> {
    cfg: &'a Config,
    device: Device,
    data: LongTailData,
    net: Network,
    recipe: MixupRecipe,
    /// Warm-up plus timed batches per measurement.
    total: usize,
}

/// Untimed batches before each measurement.
const WARM_UP: usize = 3;

impl<'a> Bench<'a> {
    fn new(cfg: &'a Config, batches: usize) -> Result<Self> {
        let setup::Prepared {
            device,
            data,
            mut net,
            ..
        } = setup::prepare(cfg, Purpose::Bench)?;
        if cfg.channels_last {
            net.to_channels_last();
        }
        Ok(Bench {
            recipe: MixupRecipe::new(cfg, &data.class_counts)?,
            cfg,
            device,
            data,
            net,
            total: WARM_UP + batches,
        })
    }

    /// The batches of a measurement: instance-balanced orders from `epoch` on, as training
    /// draws them, cut to [`Bench::total`] batches.
    fn loader(&self, epoch: usize) -> EpochLoader {
        let (cfg, n) = (self.cfg, self.total * self.cfg.batch_size);
        let mut order = Vec::with_capacity(n);
        let mut e = epoch;
        while order.len() < n {
            order.extend(sampler::instance_balanced_order(
                self.data.train.len(),
                cfg.seed,
                e,
            ));
            e += 1;
        }
        order.truncate(n);
        let opts = LoaderOptions::training(cfg.batch_size, cfg.workers, self.device.is_cuda());
        epoch_loader(
            self.data.train.clone(),
            order,
            &self.data.norm,
            &opts,
            cfg.seed,
            epoch,
        )
    }

    /// Images per second of the loader alone (no training).
    fn loader_alone(&self) -> Result<f64> {
        let t = Instant::now();
        let mut n = 0usize;
        for b in self.loader(0) {
            check_skipped(self.cfg, &b.skipped)?;
            n += b.len;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    }

    /// Trains on `batches` with a fresh optimizer (and loss scaler) as training does; returns
    /// images per second over the batches after the warm-up.
    fn time(&self, round: usize, batches: impl Iterator<Item = (Tensor, Tensor)>) -> f64 {
        let params = self
            .recipe
            .parameter_groups(&self.net)
            .into_iter()
            .flatten()
            .collect();
        let cfg = self.cfg;
        let mut sgd = Sgd::new(vec![params], cfg.lr, cfg.momentum, cfg.weight_decay);
        let mut scaler = cfg.amp.then(|| GradScaler::new(self.device));
        let opts = StepOptions::of(cfg, self.recipe.backbone_train());
        let (mut seen, mut t0) = (0usize, Instant::now());
        for (i, (x, y)) in batches.enumerate() {
            let batch = TrainBatch {
                images: &x,
                labels: &y,
                mixup_seed: stream_seed(cfg.seed, round, i, MIXUP_STREAM),
            };
            let objective = self.recipe.objective();
            train_step(&self.net, &mut sgd, scaler.as_mut(), objective, batch, opts);
            if i + 1 == WARM_UP {
                self.sync();
                t0 = Instant::now();
            } else if i >= WARM_UP {
                seen += x.size()[0] as usize;
            }
        }
        self.sync();
        seen as f64 / t0.elapsed().as_secs_f64()
    }

    fn snapshot(&self) -> Vec<(Tensor, Tensor)> {
        self.net
            .vs
            .variables()
            .into_values()
            .map(|v| {
                let saved = v.copy();
                (v, saved)
            })
            .collect()
    }

    fn restore(&self, snapshot: &[(Tensor, Tensor)]) {
        tch::no_grad(|| {
            for (v, saved) in snapshot {
                v.shallow_clone().copy_(saved);
            }
        })
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }
}

fn print_figures(cfg: &Config, device: Device, batches: usize, figures: &BenchFigures) {
    let precision = if cfg.amp { "amp fp16" } else { "fp32" };
    let layout = if cfg.channels_last {
        ", channels-last"
    } else {
        ""
    };
    let accum = if cfg.accum_steps > 1 {
        format!(", {} micro-batches", cfg.accum_steps)
    } else {
        String::new()
    };
    println!(
        "bench: {} {} batch {} on {} ({} loader threads, {} timed batches; {precision}{layout}{accum})",
        cfg.dataset.display_name(),
        cfg.backbone,
        cfg.batch_size,
        crate::engine::device_info(device).name,
        cfg.workers,
        batches
    );
    println!("  stage-1 pipeline   {:>9.1} images/s", figures.pipeline);
    println!("  bare tch loop      {:>9.1} images/s", figures.bare);
    println!(
        "  pipeline / bare    {:>9.1} %",
        100.0 * figures.pipeline / figures.bare
    );
    println!("  loader alone       {:>9.1} images/s", figures.loader);
    println!(
        "  peak memory        {:>9.1} MB",
        figures.peak_memory_bytes as f64 / 1e6
    );
}

/// What one in-epoch checkpoint costs: the median wall time of `ckps/current.safetensors`'s
/// atomic write (temporary file, fsync, rename; [`crate::checkpoint::save`]) and its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckpointCost {
    /// Median write time over the timed writes, milliseconds.
    pub median_ms: f64,
    /// Slowest timed write, milliseconds.
    pub max_ms: f64,
    /// The file's size, bytes.
    pub bytes: u64,
    /// Timed writes.
    pub writes: usize,
}

impl CheckpointCost {
    /// The share of training time the checkpoints take at one per `every_minutes`, %:
    /// median write time / interval.
    pub fn share_of(&self, every_minutes: f64) -> f64 {
        100.0 * self.median_ms / (every_minutes * 60_000.0)
    }
}

/// Times `writes` (≥ 1) checkpoint writes of `cfg`'s network on its device, with an SGD
/// momentum buffer per trainable tensor as the optimizer state (what stage 1 saves), into a
/// temporary folder inside `dir` (where the runs' checkpoints go, so the same disk), removed
/// afterwards. Needs no data: the network's input channels come from the data-set table.
///
/// # Errors
/// An unusable configuration (device, backbone), or a folder or file that cannot be written;
/// the message names it.
pub fn checkpoint_cost(
    cfg: &Config,
    dir: &std::path::Path,
    writes: usize,
) -> Result<CheckpointCost> {
    use crate::checkpoint::{save, RunPosition};
    use anyhow::Context;
    let device = setup::stage_device(cfg)?;
    let channels = cfg.dataset.spec().normalization.mean.len() as i64;
    let net = setup::network_for(cfg, channels, device)?;
    let momentum: Vec<(String, Tensor)> = net
        .vs
        .trainable_variables()
        .iter()
        .enumerate()
        .map(|(i, t)| (format!("momentum.{i}"), t.zeros_like()))
        .collect();
    let folder = dir.join(format!(".bench-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let path = folder.join("current.safetensors");
    let pos = RunPosition {
        stage: crate::config::Stage::Stage1,
        epoch: 0,
        batch: 1,
        best_top1: 0.0,
        best_ece: 0.0,
        seed: cfg.seed,
        batch_size: cfg.batch_size,
        epoch_loss_sum: 0.0,
        epoch_correct: 0.0,
        epoch_seen: 0.0,
    };
    let mut times = Vec::new();
    let result = (0..writes.max(1) + 1).try_for_each(|i| {
        let t = Instant::now();
        save(&path, &net, &momentum, &pos)?;
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok::<_, anyhow::Error>(())
    });
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_dir_all(&folder);
    result?;
    let max_ms = times.iter().copied().fold(0.0, f64::max);
    Ok(CheckpointCost {
        median_ms: median(times.clone()),
        max_ms,
        bytes,
        writes: times.len(),
    })
}

/// Prints [`checkpoint_cost`]'s figures and their share at the configured `checkpoint_every`.
pub fn print_checkpoint_cost(cfg: &Config, cost: &CheckpointCost) {
    println!(
        "  checkpoint write   {:>9.1} ms median, {:.1} ms slowest of {} ({:.1} MB, {}); at \
         checkpoint_every {} min: {:.3} % of training time, and a kill -9 loses at most {} min",
        cost.median_ms,
        cost.max_ms,
        cost.writes,
        cost.bytes as f64 / 1e6,
        cfg.backbone,
        cfg.checkpoint_every,
        cost.share_of(cfg.checkpoint_every),
        cfg.checkpoint_every
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_cost_is_the_size_of_weights_and_momentum_and_leaves_nothing_behind() {
        let cfg = Config {
            device: "cpu".into(),
            num_classes: 10,
            ..Config::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let cost = checkpoint_cost(&cfg, dir.path(), 2).unwrap();
        assert_eq!(cost.writes, 2);
        assert!(cost.median_ms > 0.0 && cost.max_ms >= cost.median_ms);
        // ResNet-32 on 3 channels with 10 classes: every variable once (f32) and a momentum
        // buffer per trainable one, plus the safetensors header.
        let net = setup::network_for(&cfg, 3, Device::Cpu).unwrap();
        let numel = |ts: Vec<Tensor>| ts.iter().map(|t| t.numel() as u64).sum::<u64>();
        let all = numel(net.vs.variables().into_values().collect());
        let trainable = numel(net.vs.trainable_variables());
        let payload = 4 * (all + trainable);
        assert!(
            cost.bytes > payload && cost.bytes < payload + 64 * 1024,
            "{} bytes for a payload of {payload}",
            cost.bytes
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no leftovers"
        );
        let share = cost.share_of(10.0);
        assert!((share - 100.0 * cost.median_ms / 600_000.0).abs() < 1e-12);
    }
}
