//! Throughput figures (`mislas bench`, `cargo bench`): stage-1 images/s of the full pipeline
//! (loader threads + augmentation + mixup + SGD step) against a bare tch loop on pre-made
//! tensors (same model, same batch), loader images/s alone, and the process's peak memory.
use crate::config::Config;
use crate::data::loader::{epoch_loader, LoaderOptions};
use crate::data::{self, sampler};
use crate::engine::stage::{check_config, train_step, Method};
use crate::engine::{peak_memory_bytes, resolve_device, stream_seed};
use crate::method::sgd::Sgd;
use crate::model::{Network, Part};
use anyhow::Result;
use std::time::Instant;
use tch::{Kind, Tensor};

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

/// Measures stage-1 throughput of `cfg` over `batches` timed batches (after 3 warm-up batches)
/// and prints the figures.
///
/// # Errors
/// An unusable configuration or missing data.
pub fn run(cfg: &Config, batches: usize) -> Result<BenchFigures> {
    check_config(cfg)?;
    let device = resolve_device(&cfg.device)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    tch::manual_seed(cfg.seed as i64);
    let data = data::load(cfg)?;
    let net = Network::new(
        &cfg.backbone,
        data.train.channels as i64,
        cfg.num_classes as i64,
        device,
    )?;
    let mut params = net.part_parameters(Part::Backbone);
    params.extend(net.part_parameters(Part::Classifier));
    let mut sgd = Sgd::new(vec![params], cfg.lr, cfg.momentum, cfg.weight_decay);
    let method = Method::Mixup {
        alpha: if cfg.mixup { cfg.alpha } else { None },
    };
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
        n += b.len;
    }
    let loader = n as f64 / t.elapsed().as_secs_f64();

    // Full pipeline.
    let mut seen = 0usize;
    let mut t0 = Instant::now();
    for batch in epoch_loader(
        data.train.clone(),
        order_for(1),
        &data.norm,
        &opts,
        cfg.seed,
        1,
    ) {
        let x = batch.images.to_device_(device, Kind::Float, true, false);
        let y = batch.labels.to_device_(device, Kind::Int64, true, false);
        let seed = stream_seed(cfg.seed, 1, batch.index, 1);
        train_step(&net, &mut sgd, &method, &x, &y, seed, true);
        if batch.index + 1 == warm {
            sync();
            t0 = Instant::now();
        } else if batch.index >= warm {
            seen += batch.len;
        }
    }
    sync();
    let pipeline = seen as f64 / t0.elapsed().as_secs_f64();

    // Bare loop: the same step on tensors made once, already on the device.
    let shape = [
        bs as i64,
        data.train.channels as i64,
        data.train.height as i64,
        data.train.width as i64,
    ];
    let x = Tensor::randn(shape, (Kind::Float, device));
    let y = Tensor::randint(cfg.num_classes as i64, [bs as i64], (Kind::Int64, device));
    let mut t0 = Instant::now();
    for i in 0..total {
        if i == warm {
            sync();
            t0 = Instant::now();
        }
        train_step(
            &net,
            &mut sgd,
            &method,
            &x,
            &y,
            stream_seed(cfg.seed, 2, i, 1),
            true,
        );
    }
    sync();
    let bare = (batches * bs) as f64 / t0.elapsed().as_secs_f64();
    let figures = BenchFigures {
        pipeline,
        bare,
        loader,
        peak_memory_bytes: peak_memory_bytes(),
    };
    println!(
        "bench: {} {} batch {} on {} ({} loader threads, {} timed batches)",
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
