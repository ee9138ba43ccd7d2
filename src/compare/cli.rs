//! `mislas compare`: the chosen methods on one stage-1 checkpoint (and the trained
//! classifier-stage checkpoints made from it), fitted on the validation split, scored on
//! unseen images, written as a table, arrays and figures.
use super::bootstrap::DEFAULT_DRAWS;
use super::cache::{self, Cached, Source, Watch};
use super::estimators::Group;
use super::methods::{run_methods, Base, BaseMethods, MethodSpec, Scoring, View};
use super::posthoc;
use super::report::Comparison;
use super::shift::{TestPrior, DEFAULT_PRIORS};
use super::split::{self, Protocol, Validation};
use crate::config::{Config, Stage};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// What `mislas compare` was asked.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// The stage-1 configuration (data set, backbone, class ranges); `resume` is the stage-1
    /// checkpoint.
    pub cfg: Config,
    /// Trained classifier-stage checkpoints of the same backbone: `(base name, file)`, e.g.
    /// `("crt", …/model_best.safetensors)`.
    pub trained: Vec<(String, PathBuf)>,
    /// Methods; empty: [`default_methods`].
    pub methods: Vec<MethodSpec>,
    /// Output folder; `None`: `<run>/compare/<YYYYMMDD-HHMMSS>` of the stage-1 checkpoint's
    /// run, else `saved/compare/<YYYYMMDD-HHMMSS>`.
    pub out: Option<PathBuf>,
    /// Bootstrap draws.
    pub draws: usize,
    /// Seed of the bootstrap and of the stratified halves.
    pub seed: u64,
    /// Fit/score protocol.
    pub protocol: Protocol,
    /// Progress of the backbone passes, and a way to stop the comparison.
    pub watch: Watch,
    /// Shifted test priors every method is also scored on ([`super::test_priors`]); empty:
    /// none.
    pub test_priors: Vec<TestPrior>,
}

impl CompareOptions {
    /// Options with the defaults: every method, 1,000 draws, seed 0, held-out protocol.
    pub fn new(cfg: Config) -> Self {
        CompareOptions {
            cfg,
            trained: Vec::new(),
            methods: Vec::new(),
            out: None,
            draws: DEFAULT_DRAWS,
            seed: 0,
            protocol: Protocol::Holdout,
            watch: Watch::default(),
            test_priors: TestPrior::parse_list(DEFAULT_PRIORS).expect("default test priors"),
        }
    }
}

/// Every post-hoc method on the stage-1 checkpoint (`ce`), alone and with temperature
/// scaling, and each trained base alone and with temperature scaling.
pub fn default_methods(trained: &[(String, PathBuf)]) -> Vec<MethodSpec> {
    let mut words: Vec<String> = [
        "ce",
        "ce+ts",
        "ce+tau-norm",
        "ce+tau-norm+ts",
        "ce+ncm",
        "ce+ncm+ts",
        "ce+la",
        "ce+la+ts",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (name, _) in trained {
        words.push(name.clone());
        words.push(format!("{name}+ts"));
    }
    words
        .iter()
        .map(|w| MethodSpec::parse(w).expect("default methods parse"))
        .collect()
}

/// The table name of a base: its method catalogue row's label (`CE (stage 1)`, `cRT`, `LWS`,
/// `MiSLAS`, …), or the name as given.
pub fn base_label(name: &str) -> String {
    crate::engine::recipe::catalogue::label(name)
}

/// Runs the comparison: caches, fits, scores, writes `results.csv`, `results.md`,
/// `comparison.json` and the figures into the output folder; `log` gets progress lines.
/// Returns the comparison and the output folder.
///
/// # Errors
/// A method names a base with no checkpoint, a checkpoint or data set that cannot be used,
/// or an output that cannot be written.
pub fn run(opts: &CompareOptions, log: &mut dyn FnMut(&str)) -> Result<(Comparison, PathBuf)> {
    keep_freed_memory();
    let cfg = &opts.cfg;
    if cfg.resume.is_empty() {
        bail!("compare needs the stage-1 checkpoint: --checkpoint PATH");
    }
    let methods = asked_methods(opts);
    check_draws(opts.draws, log)?;
    check_bases(&methods, &opts.trained)?;
    check_checkpoints(cfg, &opts.trained)?;
    let ckpt = PathBuf::from(&cfg.resume);
    let cache_dir = cache::cache_dir_for(&ckpt, Path::new("saved"));
    let out = output_folder(opts, &cache_dir);
    let counts = crate::data::load(cfg)
        .with_context(|| format!("data of '{}'", cfg.name))?
        .class_counts;
    let groups = Group::standard(
        &counts,
        cfg.head_class_idx,
        cfg.med_class_idx,
        cfg.tail_class_idx,
    );
    let validation = split::validation_for(cfg.dataset, opts.seed);
    let (bases, names, describe) = load_bases(opts, &methods, &validation, &out, log)?;
    opts.watch.check()?;
    let scoring = Scoring {
        groups: groups.clone(),
        train_class_counts: counts.clone(),
        draws: opts.draws,
        seed: opts.seed,
    };
    let per_base: Vec<BaseMethods<'_>> = bases
        .iter()
        .zip(&names)
        .map(|(base, name)| {
            let specs = methods
                .iter()
                .filter(|m| m.base == *name)
                .map(|m| (m, base_label(name)))
                .collect();
            (base, specs)
        })
        .collect();
    let mut rows = run_methods(&per_base, &scoring, log)?;
    // The table keeps the order the methods were asked in.
    rows.sort_by_key(|r| methods.iter().position(|m| m.canonical() == r.spec));
    let comparison = Comparison {
        protocol: opts.protocol,
        checkpoint: cfg.resume.clone(),
        trained: opts
            .trained
            .iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, p)| (n.clone(), p.display().to_string()))
            .collect(),
        validation: describe.0,
        scored: describe.1,
        groups,
        train_class_counts: counts,
        draws: opts.draws,
        seed: opts.seed,
        interval: super::bootstrap::DEFAULT_INTERVAL,
        rows,
    };
    write_outputs(&comparison, &per_base, &scoring, opts, &out, log)?;
    Ok((comparison, out))
}

/// The methods asked (or [`default_methods`]), each once, in the order asked.
fn asked_methods(opts: &CompareOptions) -> Vec<MethodSpec> {
    let mut methods = if opts.methods.is_empty() {
        default_methods(&opts.trained)
    } else {
        opts.methods.clone()
    };
    let mut seen = std::collections::HashSet::new();
    methods.retain(|m| seen.insert(m.canonical()));
    methods
}

/// The comparison's output folder: `--out`, else a new folder per comparison (so that an
/// earlier one, its table and figures, is never overwritten or mixed with this one's) beside
/// the checkpoint's cache.
fn output_folder(opts: &CompareOptions, cache_dir: &Path) -> PathBuf {
    opts.out.clone().unwrap_or_else(|| {
        let stamp = chrono::Local::now().format("%Y%m%d-%H%M%S").to_string();
        cache_dir
            .parent()
            .map_or_else(|| PathBuf::from("saved/compare"), |p| p.join("compare"))
            .join(stamp)
    })
}

/// Writes the comparison's tables and figures, then scores and writes the shifted test priors
/// (`test_priors.*` and their figure), and says what was written.
fn write_outputs(
    comparison: &Comparison,
    per_base: &[BaseMethods<'_>],
    scoring: &Scoring,
    opts: &CompareOptions,
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    comparison.write(out)?;
    let mut figures = super::plots::write_all(comparison, &out.join("figures"))?;
    let shifted = super::test_priors::score(per_base, scoring, &opts.test_priors, log)?;
    shifted.write(out)?;
    for line in shifted.text_table().lines() {
        log(line);
    }
    figures.extend(super::plots_prior::write_all(
        &shifted,
        &out.join("figures"),
    )?);
    log(&format!(
        "=> wrote results.csv, results.md, comparison.json{} and {} figures to {}",
        if shifted.sets.is_empty() {
            ""
        } else {
            ", test_priors.csv/.md/.json"
        },
        figures.len(),
        out.display()
    ));
    Ok(())
}

/// At least 2 bootstrap draws (a percentile interval of one draw is a point); fewer than 200
/// are allowed with a warning.
fn check_draws(draws: usize, log: &mut dyn FnMut(&str)) -> Result<()> {
    if draws < 2 {
        bail!("--draws {draws}: a 95 % interval needs at least 2 bootstrap draws (1000 is the default)");
    }
    if draws < 200 {
        log(&format!(
            "=> warning: {draws} bootstrap draws give unstable 95 % intervals (1000 is the default)"
        ));
    }
    Ok(())
}

/// The checkpoints exist, and where their run folder's `config.yaml` says what they are, the
/// stage-1 one is a stage-1 checkpoint and each trained one a stage-2 checkpoint of the same
/// data set, imbalance factor, classes and backbone.
fn check_checkpoints(cfg: &Config, trained: &[(String, PathBuf)]) -> Result<()> {
    let stage1 = PathBuf::from(&cfg.resume);
    for path in std::iter::once(&stage1).chain(trained.iter().map(|(_, p)| p)) {
        if !path.is_file() {
            bail!("no checkpoint at {}", path.display());
        }
    }
    if run_config(&stage1).is_some_and(|c| c.stage() != Stage::Stage1) {
        bail!(
            "{} is a stage-2 checkpoint: give it as --trained NAME={} and the stage-1 checkpoint \
             it started from as --checkpoint",
            stage1.display(),
            stage1.display()
        );
    }
    for (name, path) in trained {
        let Some(c) = run_config(path) else { continue };
        if c.stage() != Stage::Stage2 {
            bail!(
                "--trained {name}={}: a stage-1 checkpoint; a trained base is a classifier \
                 stage (stage 2: crt, lws, mislas) started from the stage-1 checkpoint",
                path.display()
            );
        }
        let same = (c.dataset, c.imb_factor, c.num_classes, &c.backbone)
            == (cfg.dataset, cfg.imb_factor, cfg.num_classes, &cfg.backbone);
        if !same {
            let what = |c: &Config| {
                let imb = c
                    .imb_factor
                    .map_or("natural imbalance".into(), |f| format!("IF {f}"));
                format!(
                    "{}, {imb}, {} classes, {}",
                    c.dataset, c.num_classes, c.backbone
                )
            };
            bail!(
                "--trained {name}={}: trained on {}, not on the stage-1 run's {}",
                path.display(),
                what(&c),
                what(cfg)
            );
        }
    }
    Ok(())
}

/// The configuration of the run a checkpoint `<run>/ckps/<file>` belongs to, if that run
/// folder has a readable `config.yaml` (a reference `.pth.tar` has none).
pub fn run_config(checkpoint: &Path) -> Option<Config> {
    let file = checkpoint.parent()?.parent()?.join("config.yaml");
    file.is_file()
        .then(|| Config::from_file(&file).ok())
        .flatten()
        .map(|l| l.config)
}

/// Every method's base is `ce` or a `--trained` name.
fn check_bases(methods: &[MethodSpec], trained: &[(String, PathBuf)]) -> Result<()> {
    for m in methods {
        if m.base != "ce" && !trained.iter().any(|(n, _)| *n == m.base) {
            bail!(
                "method '{}' needs the checkpoint of '{}': add --trained {}=PATH",
                m.base,
                m.base,
                m.base
            );
        }
    }
    Ok(())
}

/// The bases' outputs, their names, and the (validation, scored) descriptions.
type LoadedBases = (Vec<Base>, Vec<String>, (String, String));

/// The outputs of every base some method uses (the stage-1 checkpoint as `ce`, then the
/// trained ones), from the cache or one pass of the network each: their views, names and the
/// description of the validation and scored splits.
fn load_bases(
    opts: &CompareOptions,
    methods: &[MethodSpec],
    validation: &Validation,
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<LoadedBases> {
    let cfg = &opts.cfg;
    let need_ncm = methods
        .iter()
        .any(|m| m.steps.contains(&super::methods::Step::Ncm));
    let mut bases = Vec::new();
    let mut names = Vec::new();
    let mut describe = (String::new(), String::new());
    let all_bases = std::iter::once(("ce".to_owned(), PathBuf::from(&cfg.resume)))
        .chain(opts.trained.iter().cloned())
        .filter(|(n, _)| methods.iter().any(|m| m.base == *n));
    for (name, path) in all_bases {
        let mut c = cfg.clone();
        c.resume = path.display().to_string();
        let dir = cache::cache_dir_for(&path, out);
        let test = cache::load_or_compute(&c, &Source::Test, &dir, log, &opts.watch)?;
        let (val, scored, d) = views(&c, &test, validation, opts, &dir, log)?;
        if names.is_empty() {
            // The same split for every base; named with the stage-1 checkpoint's record.
            describe = d;
        }
        let class_means = if need_ncm {
            let train = cache::load_or_compute(&c, &Source::Train, &dir, log, &opts.watch)?;
            let labels = Tensor::from_slice(&train.labels);
            Some(posthoc::class_means(
                &train.features,
                &labels,
                cfg.num_classes as i64,
            ))
        } else {
            None
        };
        bases.push(Base {
            val,
            scored,
            weight: test.weight.shallow_clone(),
            class_means,
        });
        names.push(name);
    }
    Ok((bases, names, describe))
}

/// The validation and scored views of a checkpoint's test outputs, and their descriptions;
/// the stratified halves' indices are written next to the cache (`split_<seed>.json`).
fn views(
    cfg: &Config,
    test: &Cached,
    validation: &Validation,
    opts: &CompareOptions,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<(View, View, (String, String))> {
    let protocol = opts.protocol;
    let n = test.labels.len();
    let all: Vec<usize> = (0..n).collect();
    let whole = || View::select(&test.features, &test.logits, &test.labels, &all);
    if protocol == Protocol::Reference {
        let d = format!("the whole test set ({n} images; reference protocol)");
        return Ok((whole(), whole(), (d.clone(), d)));
    }
    match validation {
        Validation::List(file) => {
            let source = Source::List(file.clone());
            let val = cache::load_or_compute(cfg, &source, dir, log, &opts.watch)?;
            let vi: Vec<usize> = (0..val.labels.len()).collect();
            Ok((
                View::select(&val.features, &val.logits, &val.labels, &vi),
                whole(),
                (
                    format!("{file} ({} images)", val.labels.len()),
                    format!("the whole test set ({n} images)"),
                ),
            ))
        }
        Validation::TestHalf { seed } => {
            let (a, b) = split::stratified_halves(&test.labels, cfg.num_classes, *seed);
            let record = serde_json::json!({
                "validation": {"sha256": split::indices_digest(&a), "indices": a},
                "scored": {"sha256": split::indices_digest(&b), "indices": b},
                "seed": seed,
            });
            let file = dir.join(format!("split_seed{seed}.json"));
            std::fs::create_dir_all(dir).ok();
            std::fs::write(&file, record.to_string())
                .with_context(|| format!("cannot write {}", file.display()))?;
            Ok((
                View::select(&test.features, &test.logits, &test.labels, &a),
                View::select(&test.features, &test.logits, &test.labels, &b),
                (
                    format!(
                        "test half A: {} images, class-stratified, seed {seed}, indices sha256 {}… \
                         ({})",
                        a.len(),
                        &split::indices_digest(&a)[..12],
                        file.display()
                    ),
                    format!(
                        "test half B: the other {} images, indices sha256 {}…",
                        b.len(),
                        &split::indices_digest(&b)[..12]
                    ),
                ),
            ))
        }
    }
}

/// Makes glibc's `malloc` keep freed memory for reuse instead of returning it to the kernel:
/// no `mmap` for large blocks (`M_MMAP_MAX` 0) and no trimming below 2 GiB of free heap
/// (`M_TRIM_THRESHOLD`). The post-hoc methods allocate and free many `[N, K]` float tensors
/// (80 MB each at ImageNet-LT's size); with the defaults each is a fresh `mmap` whose pages the
/// kernel zeroes on first touch, which on `examples/compare_bench` cost more system time than
/// the arithmetic. Process-wide; the memory stays with the process until it exits.
pub fn keep_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `mallopt` only changes glibc's allocator parameters; it takes the arena lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
