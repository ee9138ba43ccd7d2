//! Throughput figures (`mislas bench`, `cargo bench`): stage-1 images/s of the full pipeline
//! (loader threads + augmentation + mixup + SGD step) against a bare tch loop on pre-made
//! tensors (same model, same batch), loader images/s alone, and the process's peak memory.
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
