//! Throughput figures (`mislas bench`, `cargo bench`): stage-1 images/s of the full pipeline
//! (loader threads + augmentation + mixup + SGD step) against a bare tch loop on pre-made
//! tensors (same model, same batch), loader images/s alone, and the process's peak memory.
use crate::config::Config;
use crate::data::loader::{epoch_loader, LoaderOptions};
use crate::data::sampler;
use crate::engine::recipe::mixup::MixupRecipe;
use crate::engine::recipe::StageRecipe;
use crate::engine::setup::{self, Purpose};
use crate::engine::step::{train_step, StepOptions, TrainBatch, MIXUP_STREAM};
use crate::engine::{peak_memory_bytes, stream_seed};
use crate::method::grad_scaler::GradScaler;
use crate::method::sgd::Sgd;

use anyhow::Result;
use std::time::Instant;
use tch::{Kind, Tensor};

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
    for bad in skipped {
        if cfg.on_bad_image == crate::config::BadImagePolicy::Fail {
            anyhow::bail!("unusable image {bad}; set on_bad_image: skip to leave such images out");
        }
        eprintln!("bench: unusable image {bad}: skipped");
    }
    Ok(())
}

/// Measures stage-1 throughput of `cfg` over `batches` timed batches (after 3 warm-up batches),
/// the median of 3 alternating rounds for the pipeline and the bare loop, and prints the
/// figures.
///
/// # Errors
/// An unusable configuration or missing data.
pub fn run(cfg: &Config, batches: usize) -> Result<BenchFigures> {
    let setup::Prepared {
        device,
        data,
        mut net,
        ..
    } = setup::prepare(cfg, Purpose::Bench)?;
    if cfg.channels_last {
        net.to_channels_last();
    }
    let recipe = MixupRecipe::new(cfg);
    let step_opts = StepOptions::of(cfg, recipe.backbone_train());
    let params: Vec<_> = recipe
        .parameter_groups(&net)
        .into_iter()
        .flatten()
        .collect();
    let method = recipe.objective();
    let bs = cfg.batch_size;
    let warm = 3;
    let total = warm + batches;
    let opts = LoaderOptions {
        batch_size: bs,
        workers: cfg.workers,
        prefetch: 4,
        augment: true,
        pin_memory: device.is_cuda(),
        first_batch: 0,
    };
    let order_for = |epoch: usize| {
        let mut o = Vec::with_capacity(total * bs);
        let mut e = epoch;
        while o.len() < total * bs {
            o.extend(sampler::instance_balanced_order(
                data.train.len(),
                cfg.seed,
                e,
            ));
            e += 1;
        }
        o.truncate(total * bs);
        o
    };
    let sync = || {
        if let tch::Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };

    // Loader alone.
    let t = Instant::now();
    let mut n = 0usize;
    for b in epoch_loader(
        data.train.clone(),
        order_for(0),
        &data.norm,
        &opts,
        cfg.seed,
        0,
    ) {
        check_skipped(cfg, &b.skipped)?;
        n += b.len;
    }
    let loader = n as f64 / t.elapsed().as_secs_f64();

    // The full pipeline against the bare loop, in alternating rounds that each start from the
    // same weights and a fresh optimizer, so that a change of the machine's load or of the
    // weights affects both alike; the medians of the rounds are reported. The bare loop trains
    // on the pipeline's own batches, made beforehand and already on the device.
    let snapshot: Vec<(Tensor, Tensor)> = net
        .vs
        .variables()
        .into_values()
        .map(|v| {
            let saved = v.copy();
            (v, saved)
        })
        .collect();
    let restore = || {
        tch::no_grad(|| {
            for (v, saved) in &snapshot {
                v.shallow_clone().copy_(saved);
            }
        })
    };
    let new_sgd = || {
        let p: Vec<(String, Tensor)> = params
            .iter()
            .map(|(k, t)| (k.clone(), t.shallow_clone()))
            .collect();
        Sgd::new(vec![p], cfg.lr, cfg.momentum, cfg.weight_decay)
    };
    let premade: Vec<(Tensor, Tensor)> = epoch_loader(
        data.train.clone(),
        order_for(2),
        &data.norm,
        &opts,
        cfg.seed,
        2,
    )
    .map(|b| (b.images.to_device(device), b.labels.to_device(device)))
    .collect();
    let (mut pipeline_runs, mut bare_runs) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        restore();
        let mut sgd = new_sgd();
        let mut scaler = cfg.amp.then(|| GradScaler::new(device));
        let mut seen = 0usize;
        let mut t0 = Instant::now();
        for batch in epoch_loader(
            data.train.clone(),
            order_for(2),
            &data.norm,
            &opts,
            cfg.seed,
            2,
        ) {
            let x = batch.images.to_device_(device, Kind::Float, true, false);
            let y = batch.labels.to_device_(device, Kind::Int64, true, false);
            let seed = stream_seed(cfg.seed, round, batch.index, MIXUP_STREAM);
            train_step(
                &net,
                &mut sgd,
                scaler.as_mut(),
                method,
                TrainBatch {
                    images: &x,
                    labels: &y,
                    mixup_seed: seed,
                },
                step_opts,
            );
            if batch.index + 1 == warm {
                sync();
                t0 = Instant::now();
            } else if batch.index >= warm {
                seen += batch.len;
            }
        }
        sync();
        pipeline_runs.push(seen as f64 / t0.elapsed().as_secs_f64());

        restore();
        let mut sgd = new_sgd();
        let mut scaler = cfg.amp.then(|| GradScaler::new(device));
        let mut seen = 0usize;
        let mut t0 = Instant::now();
        for (i, (x, y)) in premade.iter().enumerate() {
            train_step(
                &net,
                &mut sgd,
                scaler.as_mut(),
                method,
                TrainBatch {
                    images: x,
                    labels: y,
                    mixup_seed: stream_seed(cfg.seed, round, i, MIXUP_STREAM),
                },
                step_opts,
            );
            if i + 1 == warm {
                sync();
                t0 = Instant::now();
            } else if i >= warm {
                seen += x.size()[0] as usize;
            }
        }
        sync();
        bare_runs.push(seen as f64 / t0.elapsed().as_secs_f64());
    }
    restore();
    let (pipeline, bare) = (median(pipeline_runs), median(bare_runs));
    let figures = BenchFigures {
        pipeline,
        bare,
        loader,
        peak_memory_bytes: peak_memory_bytes(),
    };
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
        bs,
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
    Ok(figures)
}
