//! The backbone evaluated once per checkpoint and image source: features, logits, labels and
//! the classifier (weight, bias, LWS scales) in one safetensors file, so that every post-hoc
//! method and figure runs without the backbone.
//!
//! The file is `<dir>/<sha256 of the checkpoint, 16 hex>_<source>.safetensors` with a JSON
//! sidecar naming the checkpoint, its full SHA-256 and the source; a cache whose sidecar's
//! digest differs from the checkpoint's (the file was overwritten) is recomputed. `<dir>` is
//! `<run>/cache/` when the checkpoint lies in a run folder's `ckps/`, else the output folder's
//! `cache/`.
use crate::config::Config;
use crate::data::loader::{epoch_loader, LoaderOptions};
use crate::engine::setup::{self, Purpose};
use crate::model::Part;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// The error text of a comparison stopped through its [`Watch`].
pub const CANCELLED: &str = "comparison cancelled";

/// How far a backbone pass over one image source is.
#[derive(Debug, Clone, PartialEq)]
pub struct PassProgress {
    /// The source, in words (`test set`, `training set`, a list file).
    pub source: String,
    /// Images passed through the backbone so far.
    pub done: usize,
    /// Images of the source.
    pub total: usize,
    /// Seconds since the pass began (the model's set-up and the first batch included).
    pub elapsed_s: f64,
}

impl PassProgress {
    /// Images per second so far; `None` before any time has passed.
    pub fn rate(&self) -> Option<f64> {
        (self.elapsed_s > 0.0 && self.done > 0).then(|| self.done as f64 / self.elapsed_s)
    }

    /// Seconds left at the rate so far; `None` without a rate.
    pub fn eta_s(&self) -> Option<f64> {
        self.rate()
            .map(|r| self.total.saturating_sub(self.done) as f64 / r)
    }

    /// One line: `backbone on the test set: 1200/10000 images (12 %) · 480 img/s · ETA 0:18`.
    pub fn line(&self) -> String {
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * self.done as f64 / self.total as f64
        };
        let rate = self
            .rate()
            .map_or_else(|| "– img/s".to_owned(), |r| format!("{r:.0} img/s"));
        let eta = self.eta_s().map_or_else(
            || "–".to_owned(),
            |s| {
                let s = s.round() as u64;
                format!("{}:{:02}", s / 60, s % 60)
            },
        );
        format!(
            "backbone on the {}: {}/{} images ({pct:.0} %) · {rate} · ETA {eta}",
            self.source, self.done, self.total
        )
    }
}

/// A callback of [`Watch`].
pub type ProgressFn = std::sync::Arc<dyn Fn(&PassProgress) + Send + Sync>;

/// A caller's hold on a comparison's backbone passes: a callback after each batch, and a
/// flag that stops the comparison at the next batch (or before its methods run) with
/// [`CANCELLED`]. Clones share the flag.
#[derive(Clone, Default)]
pub struct Watch {
    cancel: std::sync::Arc<std::sync::atomic::AtomicBool>,
    progress: Option<ProgressFn>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("cancelled", &self.is_cancelled())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl Watch {
    /// The same flag, with `progress` called after each batch.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Asks the comparison to stop.
    pub fn cancel(&self) {
        self.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a stop was asked.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The flag itself (for a signal handler that sets it).
    pub fn flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.cancel.clone()
    }

    /// Errs with [`CANCELLED`] when a stop was asked.
    ///
    /// # Errors
    /// A stop was asked.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            bail!(CANCELLED);
        }
        Ok(())
    }

    fn report(&self, p: &PassProgress) {
        if let Some(f) = &self.progress {
            f(p);
        }
    }
}

/// Which images: the configuration's test set, or a validation list file under `data_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The test set (`test_list` of the list-file sets).
    Test,
    /// The long-tailed training set, without augmentation (NCM's class means).
    Train,
    /// A list file under `data_path` (e.g. `ImageNet_LT_val.txt`).
    List(String),
}

impl Source {
    /// In words: `test set`, `training set`, or the list file.
    pub fn words(&self) -> String {
        match self {
            Source::Test => "test set".into(),
            Source::Train => "training set".into(),
            Source::List(f) => f.clone(),
        }
    }

    /// A file-name-safe short name: `test`, or the list's stem.
    pub fn tag(&self) -> String {
        match self {
            Source::Test => "test".into(),
            Source::Train => "train".into(),
            Source::List(f) => Path::new(f)
                .file_stem()
                .map_or_else(|| "list".into(), |s| s.to_string_lossy().into_owned()),
        }
    }
}

/// A checkpoint's outputs on one image source, on the CPU in float32.
#[derive(Debug)]
pub struct Cached {
    /// `[N, F]` backbone features (after global pooling; after Places-LT's block).
    pub features: Tensor,
    /// `[N, K]` logits as evaluation computes them: LWS-scaled classifier outputs.
    pub logits: Tensor,
    /// `[N]` labels.
    pub labels: Vec<i64>,
    /// `[K, F]` classifier weight.
    pub weight: Tensor,
    /// `[K]` classifier bias.
    pub bias: Tensor,
    /// `[K]` LWS scales (ones for a stage-1 checkpoint).
    pub lws: Tensor,
}

/// The sidecar of a cache file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheMeta {
    /// The checkpoint, as given.
    pub checkpoint: String,
    /// SHA-256 of the checkpoint file, hex.
    pub sha256: String,
    /// `test` or the list file.
    pub source: String,
    /// N.
    pub samples: usize,
}

/// SHA-256 of a file, hex.
///
/// # Errors
/// The file cannot be read (its path and the operating system's reason).
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read the checkpoint {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// The cache folder of `checkpoint`: its run's `cache/` when it lies in `<run>/ckps/` next to
/// the run's `config.yaml`, else `<fallback>/cache`.
pub fn cache_dir_for(checkpoint: &Path, fallback: &Path) -> PathBuf {
    let run = checkpoint.parent().and_then(Path::parent);
    match run {
        Some(r) if r.join("config.yaml").is_file() => r.join("cache"),
        _ => fallback.join("cache"),
    }
}

/// The checkpoint `cfg.resume`'s outputs on `source`, from `dir`'s cache when its digest
/// matches, else computed (the backbone in eval mode, `eval_batch_size` images per pass) and
/// written there. `log` gets one line saying which; `watch` follows the pass batch by batch
/// and may stop it (nothing is written then).
///
/// # Errors
/// No `resume`, an unusable checkpoint or data (see [`setup::prepare`]), a bad image, a
/// cache that cannot be written, or a stop asked through `watch` ([`CANCELLED`]).
pub fn load_or_compute(
    cfg: &Config,
    source: &Source,
    dir: &Path,
    log: &mut dyn FnMut(&str),
    watch: &Watch,
) -> Result<Cached> {
    let ckpt = Path::new(&cfg.resume);
    if cfg.resume.is_empty() {
        bail!("compare needs a checkpoint: add `resume PATH`");
    }
    let sha = sha256_file(ckpt)?;
    let file = dir.join(format!("{}_{}.safetensors", &sha[..16], source.tag()));
    let meta_file = file.with_extension("json");
    if let Ok(text) = std::fs::read_to_string(&meta_file) {
        match serde_json::from_str::<CacheMeta>(&text) {
            Ok(m) if m.sha256 == sha && file.is_file() => {
                if let Ok(c) = read(&file) {
                    log(&format!(
                        "=> cached outputs {} ({} images of {})",
                        file.display(),
                        m.samples,
                        m.source
                    ));
                    return Ok(c);
                }
            }
            _ => log(&format!("=> {} is stale: recomputing", meta_file.display())),
        }
    }
    let started = std::time::Instant::now();
    let cached = compute(cfg, source, watch)?;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the cache folder {}", dir.display()))?;
    write(&cached, &file)?;
    let meta = CacheMeta {
        checkpoint: cfg.resume.clone(),
        sha256: sha,
        source: match source {
            Source::Test => "test set".into(),
            Source::Train => "long-tailed training set (no augmentation)".into(),
            Source::List(f) => f.clone(),
        },
        samples: cached.labels.len(),
    };
    std::fs::write(&meta_file, serde_json::to_string_pretty(&meta)?)
        .with_context(|| format!("cannot write {}", meta_file.display()))?;
    log(&format!(
        "=> evaluated the backbone on {} images in {:.1}s: {}",
        cached.labels.len(),
        started.elapsed().as_secs_f64(),
        file.display()
    ));
    Ok(cached)
}

/// The loader of a backbone pass: evaluation batches, no augmentation, in order.
fn pass_options(cfg: &Config, device: Device) -> LoaderOptions {
    LoaderOptions::evaluation(
        cfg.effective_eval_batch_size(),
        cfg.workers,
        device.is_cuda(),
    )
}

fn compute(cfg: &Config, source: &Source, watch: &Watch) -> Result<Cached> {
    let started = std::time::Instant::now();
    let mut c = cfg.clone();
    if let Source::List(f) = source {
        c.test_list = Some(f.clone());
    }
    let mut p = setup::prepare(&c, Purpose::Eval)?;
    if let Some(ck) = &p.checkpoint {
        let parts = setup::evaluated_parts(&p.net, ck);
        p.restore(&parts, None)?;
    }
    let net = &p.net;
    let set = match source {
        Source::Train => p.data.train.clone(),
        _ => p.data.test.clone(),
    };
    let opts = pass_options(cfg, p.device);
    let order: Vec<usize> = (0..set.len()).collect();
    let (mut feats, mut logits, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut progress = PassProgress {
        source: source.words(),
        done: 0,
        total: set.len(),
        elapsed_s: 0.0,
    };
    tch::no_grad(|| -> Result<()> {
        for batch in epoch_loader(set.clone(), order, &p.data.norm, &opts, 0, 0) {
            watch.check()?;
            if let Some(bad) = batch.skipped.first() {
                bail!("unusable image {bad}: compare needs every image of the split");
            }
            let x = batch.images.to_device_(p.device, Kind::Float, true, false);
            let f = net.features(&x, false);
            logits.push(net.scale(&net.classify(&f)).to_device(Device::Cpu));
            feats.push(f.to_device(Device::Cpu));
            progress.done += batch.labels.size()[0] as usize;
            progress.elapsed_s = started.elapsed().as_secs_f64();
            labels.push(batch.labels.to_kind(Kind::Int64));
            watch.report(&progress);
        }
        Ok(())
    })?;
    let var = |part: Part, name: &str| -> Result<Tensor> {
        net.part_variables(part)
            .into_iter()
            .find(|(k, _)| k.ends_with(name))
            .map(|(_, t)| t.detach().to_device(Device::Cpu).to_kind(Kind::Float))
            .with_context(|| format!("the network has no {}{name}", part.prefix()))
    };
    let labels = Tensor::cat(&labels, 0);
    Ok(Cached {
        features: Tensor::cat(&feats, 0).to_kind(Kind::Float),
        logits: Tensor::cat(&logits, 0).to_kind(Kind::Float),
        labels: Vec::<i64>::try_from(&labels)?,
        weight: var(Part::Classifier, "weight")?,
        bias: var(Part::Classifier, "bias")?,
        lws: var(Part::Lws, "learned_norm")?.view([-1]),
    })
}

fn write(c: &Cached, file: &Path) -> Result<()> {
    let labels = Tensor::from_slice(&c.labels);
    let named = [
        ("features", &c.features),
        ("logits", &c.logits),
        ("labels", &labels),
        ("weight", &c.weight),
        ("bias", &c.bias),
        ("lws", &c.lws),
    ];
    crate::checkpoint::write_atomically(file, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(anyhow::Error::from)
    })
    .with_context(|| format!("cannot write the cache {}", file.display()))
}

/// Reads a cache file written by [`load_or_compute`].
///
/// # Errors
/// The file cannot be read or lacks one of its tensors.
pub fn read(file: &Path) -> Result<Cached> {
    let named = Tensor::read_safetensors(file)
        .with_context(|| format!("cannot read the cache {}", file.display()))?;
    let get = |n: &str| -> Result<Tensor> {
        named
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, t)| t.shallow_clone())
            .with_context(|| format!("cache {} has no '{n}' tensor", file.display()))
    };
    Ok(Cached {
        features: get("features")?,
        logits: get("logits")?,
        labels: Vec::<i64>::try_from(&get("labels")?)?,
        weight: get("weight")?,
        bias: get("bias")?,
        lws: get("lws")?,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn pass_progress_has_rate_and_eta_and_a_cancel_stops_at_the_next_check() {
        let p = PassProgress {
            source: "training set".into(),
            done: 300,
            total: 1500,
            elapsed_s: 4.0,
        };
        // 300 images in 4 s: 75 img/s; 1200 left: 16 s.
        assert_eq!(p.rate(), Some(75.0));
        assert_eq!(p.eta_s(), Some(16.0));
        assert_eq!(
            p.line(),
            "backbone on the training set: 300/1500 images (20 %) · 75 img/s · ETA 0:16"
        );
        let start = PassProgress { done: 0, ..p };
        assert_eq!((start.rate(), start.eta_s()), (None, None));
        assert!(start.line().ends_with("(0 %) · – img/s · ETA –"));

        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let w = Watch::default().with_progress(std::sync::Arc::new(move |p: &PassProgress| {
            s2.lock().unwrap().push(p.done)
        }));
        let other = w.clone();
        w.report(&start);
        assert!(w.check().is_ok());
        other.cancel();
        assert_eq!(w.check().unwrap_err().to_string(), CANCELLED);
        assert_eq!(*seen.lock().unwrap(), [0]);
    }
    use super::*;

    #[test]
    fn cache_round_trip_and_folders() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cached {
            features: Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]),
            logits: Tensor::from_slice(&[0.5f32, -0.5, 1.0, 2.0, 3.0, 4.0]).view([2, 3]),
            labels: vec![2, 0],
            weight: Tensor::ones([3, 2], (Kind::Float, Device::Cpu)),
            bias: Tensor::zeros([3], (Kind::Float, Device::Cpu)),
            lws: Tensor::ones([3], (Kind::Float, Device::Cpu)),
        };
        let file = dir.path().join("x_test.safetensors");
        write(&c, &file).unwrap();
        let r = read(&file).unwrap();
        assert_eq!(r.labels, [2, 0]);
        assert!(r.logits.equal(&c.logits) && r.features.equal(&c.features));
        // A checkpoint in <run>/ckps/ next to config.yaml caches in <run>/cache.
        let run = dir.path().join("run");
        std::fs::create_dir_all(run.join("ckps")).unwrap();
        std::fs::write(run.join("config.yaml"), "name: x\n").unwrap();
        let ck = run.join("ckps/model_best.safetensors");
        assert_eq!(cache_dir_for(&ck, Path::new("/out")), run.join("cache"));
        assert_eq!(
            cache_dir_for(Path::new("/tmp/a.pth.tar"), Path::new("/out")),
            PathBuf::from("/out/cache")
        );
        // printf 'abc' | sha256sum
        std::fs::write(&ck, "abc").unwrap();
        assert_eq!(
            sha256_file(&ck).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = sha256_file(Path::new("/nonexistent/ck")).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/ck"), "{e:#}");
        assert_eq!(
            Source::List("ImageNet_LT_val.txt".into()).tag(),
            "ImageNet_LT_val"
        );
    }
}
