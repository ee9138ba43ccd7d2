//! Evaluation on the test set after every epoch (reference `validate`).
use super::setup::{self, Purpose};
use crate::config::{BadImagePolicy, Config};
use crate::data::files::BadImage;
use crate::data::loader::{epoch_loader, LoaderOptions};
use crate::data::{ImageSource, Normalization};
use crate::metrics::{EvalAccumulator, EvalReport};
use crate::model::Network;
use crate::wire::Flow;
use std::sync::Arc;

/// Class ranges and counts an evaluation reports against.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    /// Training count of each class (for the many/medium/few-shot split).
    pub train_class_counts: Vec<usize>,
    /// `head_class_idx`.
    pub head: [usize; 2],
    /// `med_class_idx`.
    pub med: [usize; 2],
    /// `tail_class_idx`.
    pub tail: [usize; 2],
}

impl EvalSpec {
    /// The ranges of `cfg` and the training counts of its long-tailed subset.
    pub fn of(cfg: &Config, train_class_counts: &[usize]) -> Self {
        EvalSpec {
            train_class_counts: train_class_counts.to_vec(),
            head: cfg.head_class_idx,
            med: cfg.med_class_idx,
            tail: cfg.tail_class_idx,
        }
    }
}

/// The per-sample results of evaluating some images of a set ([`evaluate_samples`]).
#[derive(Debug)]
pub struct Samples {
    /// Per-sample figures, in the order evaluated.
    pub acc: EvalAccumulator,
    /// Index in the set of each sample of `acc`.
    pub indices: Vec<usize>,
    /// Images left out (`on_bad_image: skip`).
    pub skipped: Vec<BadImage>,
}

/// How an evaluation ended.
#[derive(Debug)]
pub enum Evaluated {
    /// Every image was evaluated: the report and the images left out (`on_bad_image: skip`).
    Done(EvalReport, Vec<BadImage>),
    /// The progress callback asked to stop.
    Stopped,
}

/// Evaluates `net` in eval mode on every image of `set` (no augmentation): logits are
/// `scale(classify(features(x)))` — LWS is the identity until stage 2 learns it.
///
/// `batch_size` images per forward pass, `workers` loader threads. After each batch,
/// `progress(images_done, images_total)` is called; [`Flow::Stop`] ends the evaluation early
/// ([`Evaluated::Stopped`]).
///
/// # Errors
/// With `on_bad: fail`, the first image that cannot be read or decoded (its path and why).
#[allow(clippy::too_many_arguments)] // The evaluation's inputs, each of another kind.
pub fn evaluate(
    net: &Network,
    set: &Arc<ImageSource>,
    norm: &Normalization,
    batch_size: usize,
    workers: usize,
    spec: &EvalSpec,
    on_bad: BadImagePolicy,
    progress: &mut dyn FnMut(usize, usize) -> Flow,
) -> anyhow::Result<Evaluated> {
    let order: Vec<usize> = (0..set.len()).collect();
    let loader = LoaderOptions {
        batch_size,
        workers,
        ..eval_loader_options(net)
    };
    Ok(
        match evaluate_samples(net, set, order, norm, &loader, on_bad, progress)? {
            None => Evaluated::Stopped,
            Some(s) => Evaluated::Done(spec.report(&s.acc), s.skipped),
        },
    )
}

/// The loader settings of an evaluation (no augmentation; pinned memory on CUDA).
pub fn eval_loader_options(net: &Network) -> LoaderOptions {
    LoaderOptions::evaluation(1, 0, net.device().is_cuda())
}

impl EvalSpec {
    /// The report of the samples in `acc`.
    pub fn report(&self, acc: &EvalAccumulator) -> EvalReport {
        acc.finish(&self.train_class_counts, self.head, self.med, self.tail)
    }
}

/// Evaluates `net` in eval mode on the images of `set` at `order` (a data-parallel rank's
/// shard, or all of them), keeping the per-sample results; `None` when `progress` (called
/// after each batch with the images done and the order's length) asked to stop.
///
/// # Errors
/// With `on_bad: fail`, the first image that cannot be read or decoded (its path and why).
pub fn evaluate_samples(
    net: &Network,
    set: &Arc<ImageSource>,
    order: Vec<usize>,
    norm: &Normalization,
    opts: &LoaderOptions,
    on_bad: BadImagePolicy,
    progress: &mut dyn FnMut(usize, usize) -> Flow,
) -> anyhow::Result<Option<Samples>> {
    let device = net.device();
    let mut s = Samples {
        acc: EvalAccumulator::new(net.num_classes as usize),
        indices: Vec::new(),
        skipped: Vec::new(),
    };
    let total = order.len();
    let mut done = 0;
    let finished = tch::no_grad(|| -> anyhow::Result<bool> {
        for batch in epoch_loader(set.clone(), order, norm, opts, 0, 0) {
            if let Some(bad) = on_bad.refused(&batch.skipped) {
                anyhow::bail!("unusable test image {bad}; {}", BadImagePolicy::SKIP_HINT);
            }
            done += batch.len + batch.skipped.len();
            s.skipped.extend(batch.skipped);
            if batch.len > 0 {
                let x = batch
                    .images
                    .to_device_(device, tch::Kind::Float, true, false);
                let y = batch
                    .labels
                    .to_device_(device, tch::Kind::Int64, true, false);
                let logits = net.scale(&net.classify(&net.features(&x, false)));
                s.acc.add(&logits, &y);
                s.indices.extend(batch.indices);
            }
            if progress(done, total) == Flow::Stop {
                return Ok(false);
            }
        }
        Ok(true)
    })?;
    Ok(finished.then_some(s))
}

/// `mislas eval`: evaluates the checkpoint named by `resume` on the configuration's test set and
/// prints the reference's figures (`* Acc@1 …`, `* ECE …`) and the full report as JSON on stdout.
///
/// # Errors
/// No `resume`, an unusable checkpoint (mismatched tensors are listed), or missing data.
pub fn evaluate_checkpoint(cfg: &Config) -> anyhow::Result<EvalReport> {
    use anyhow::Context;
    let mut p = setup::prepare(cfg, Purpose::Eval)?;
    if let Some(ck) = &p.checkpoint {
        let parts = setup::evaluated_parts(&p.net, ck);
        p.restore(&parts, None)?;
    }
    let spec = EvalSpec::of(cfg, &p.data.class_counts);
    let started = std::time::Instant::now();
    let mut last = started;
    let mut progress = |done: usize, total: usize| {
        if last.elapsed().as_secs_f64() >= 2.0 || done == total {
            last = std::time::Instant::now();
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            eprintln!("=> evaluated {done}/{total} test images ({rate:.0} images/s)");
        }
        Flow::Continue
    };
    let evaluated = evaluate(
        &p.net,
        &p.data.test,
        &p.data.norm,
        cfg.effective_eval_batch_size(),
        cfg.workers,
        &spec,
        cfg.on_bad_image,
        &mut progress,
    )?;
    let Evaluated::Done(r, skipped) = evaluated else {
        anyhow::bail!("the evaluation was stopped");
    };
    for bad in &skipped {
        eprintln!("=> unusable test image {bad}: skipped");
    }
    for line in r.report_lines() {
        println!("{line}");
    }
    println!(
        "{}",
        serde_json::to_string(&r).context("cannot serialise the report")?
    );
    Ok(r)
}
