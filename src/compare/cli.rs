//! `mislas compare`: the chosen methods on one stage-1 checkpoint (and the trained
//! classifier-stage checkpoints made from it), fitted on the validation split, scored on
//! unseen images, written as a table, arrays and figures.
use super::bootstrap::{DEFAULT_DRAWS, MIN_BOOTSTRAP_IMAGES};
use super::cache::{self, Cached, Source, Watch};
use super::estimators::Group;
use super::methods::{run_methods, Base, BaseMethods, MethodSpec, Scoring, View};
use super::posthoc;
use super::report::Comparison;
use super::shift::{ShiftedSet, TestPrior, DEFAULT_PRIORS};
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
    /// More stage-1 checkpoints (backbones trained with other stage-1 losses, e.g.
    /// `("bs", …)` for Balanced Softmax), each a base like `ce`, fitted and scored on the same
    /// validation and scored splits with the same resamples (`--base NAME=PATH`).
    pub bases: Vec<(String, PathBuf)>,
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
            bases: Vec::new(),
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
    let methods = check_options(opts, log)?;
    let labels = base_labels(opts);
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
    let (bases, names, describe, scored_indices) =
        load_bases(opts, &methods, &validation, &out, log)?;
    opts.watch.check()?;
    check_scored_size(
        bases
            .first()
            .map_or(0, |b| b.scored.labels.size()[0] as usize),
    )?;
    let scoring = Scoring {
        groups: groups.clone(),
        train_class_counts: counts.clone(),
        draws: opts.draws,
        seed: opts.seed,
    };
    let per_base = methods_per_base(&bases, &names, &methods, &labels);
    let mut rows = run_methods(&per_base, &scoring, log)?;
    // The table keeps the order the methods were asked in.
    rows.sort_by_key(|r| methods.iter().position(|m| m.canonical() == r.spec));
    let used = |list: &[(String, PathBuf)]| -> Vec<(String, String)> {
        list.iter()
            .filter(|(n, _)| names.contains(n))
            .map(|(n, p)| (n.clone(), p.display().to_string()))
            .collect()
    };
    let comparison = Comparison {
        protocol: opts.protocol,
        checkpoint: cfg.resume.clone(),
        trained: used(&opts.trained),
        bases: used(&opts.bases)
            .into_iter()
            .map(|(n, p)| (n.clone(), labels[&n].clone(), p))
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
    let lists = match bases.first() {
        Some(b) => sade_sets(opts, &scored_indices, &b.scored, log)?,
        None => Vec::new(),
    };
    write_outputs(&comparison, &per_base, &scoring, opts, &lists, &out, log)?;
    Ok((comparison, out))
}

/// Each base with its methods and table label (`names[i]` is `bases[i]`'s name).
fn methods_per_base<'a>(
    bases: &'a [Base],
    names: &[String],
    methods: &'a [MethodSpec],
    labels: &std::collections::HashMap<String, String>,
) -> Vec<BaseMethods<'a>> {
    bases
        .iter()
        .zip(names)
        .map(|(base, name)| {
            let specs = methods
                .iter()
                .filter(|m| m.base == *name)
                .map(|m| (m, labels[name].clone()))
                .collect();
            (base, specs)
        })
        .collect()
}

/// The checks made before anything runs (see the README): a stage-1 checkpoint, enough
/// draws, distinct base names, every method's base given, checkpoints of the right stage and
/// data. Returns the methods asked ([`asked_methods`]).
fn check_options(opts: &CompareOptions, log: &mut dyn FnMut(&str)) -> Result<Vec<MethodSpec>> {
    let cfg = &opts.cfg;
    if cfg.resume.is_empty() {
        bail!("compare needs the stage-1 checkpoint: --checkpoint PATH");
    }
    let methods = asked_methods(opts);
    check_draws(opts.draws, log)?;
    check_names(opts)?;
    check_bases(&methods, opts)?;
    check_checkpoints(cfg, &opts.trained)?;
    check_stage1_bases(cfg, &opts.bases)?;
    Ok(methods)
}

/// The methods asked (or [`default_methods`]), each once, in the order asked.
fn asked_methods(opts: &CompareOptions) -> Vec<MethodSpec> {
    let mut methods = if opts.methods.is_empty() {
        let mut m = default_methods(&[]);
        for (name, _) in &opts.bases {
            m.push(MethodSpec::parse(name).expect("a base name parses"));
            m.push(MethodSpec::parse(&format!("{name}+ts")).expect("a base name parses"));
        }
        m.extend(default_methods(&opts.trained).into_iter().skip(8));
        m
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
    lists: &[ShiftedSet],
    out: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<()> {
    comparison.write(out)?;
    let mut figures = super::plots::write_all(comparison, &out.join("figures"))?;
    let shifted =
        super::test_priors::score_with_lists(per_base, scoring, &opts.test_priors, lists, log)?;
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

/// The shifted sets of SADE's list files found under `data_path` for the asked priors
/// ([`super::sade_lists`]), as positions into the scored split; `log` says which were found
/// (and how many of their images lie in the validation split and are left out), and which
/// priors are drawn. Nothing for a data set without SADE lists.
///
/// # Errors
/// A list file that cannot be used (see [`super::sade_lists::read_set`]), or the test list
/// cannot be read or does not match the cached outputs.
fn sade_sets(
    opts: &CompareOptions,
    scored: &[usize],
    view: &View,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<ShiftedSet>> {
    use super::sade_lists::{find, read_set, TestImages};
    let cfg = &opts.cfg;
    let root = Path::new(&cfg.data_path);
    let found: Vec<(TestPrior, PathBuf)> = opts
        .test_priors
        .iter()
        .filter_map(|&p| find(root, cfg.dataset, p).map(|f| (p, f)))
        .collect();
    if found.is_empty() {
        say_drawn(opts, &found, log);
        return Ok(Vec::new());
    }
    let test_file = crate::data::list_file::list_paths(cfg)?.1;
    let test = crate::data::list_file::read_list(&test_file, cfg.num_classes)?;
    let n = view.labels.size()[0] as usize;
    if scored.iter().any(|&i| i >= test.paths.len()) || scored.len() != n {
        bail!(
            "the test list {} ({} images) does not match the cached test outputs",
            test_file.display(),
            test.paths.len()
        );
    }
    let scored_labels = Vec::<i64>::try_from(&view.labels)?;
    let images = TestImages {
        test: &test,
        test_file: &test_file,
        scored,
        scored_labels: &scored_labels,
        num_classes: cfg.num_classes,
    };
    let mut sets = Vec::new();
    for (prior, file) in &found {
        let (set, left_out) = read_set(file, *prior, &images)?;
        log(&format!(
            "=> test prior {}: SADE's list file {} ({} images{})",
            prior.name(),
            file.display(),
            set.indices.len(),
            if left_out > 0 {
                format!("; {left_out} more are in the validation split, fitted on, and left out")
            } else {
                String::new()
            }
        ));
        sets.push(set);
    }
    say_drawn(opts, &found, log);
    Ok(sets)
}

/// Says which asked priors have no SADE list file (and so are drawn), for a data set that has
/// SADE lists.
fn say_drawn(opts: &CompareOptions, found: &[(TestPrior, PathBuf)], log: &mut dyn FnMut(&str)) {
    if super::sade_lists::file_name(opts.cfg.dataset, TestPrior::Uniform).is_none() {
        return;
    }
    let drawn: Vec<String> = opts
        .test_priors
        .iter()
        .filter(|p| !found.iter().any(|(f, _)| f == *p))
        .map(|p| p.name())
        .collect();
    if !drawn.is_empty() {
        log(&format!(
            "=> no SADE list file under {} for {}: drawn from the scored split",
            opts.cfg.data_path,
            drawn.join(", ")
        ));
    }
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

/// Every method's base is `ce`, a `--base` or a `--trained` name.
fn check_bases(methods: &[MethodSpec], opts: &CompareOptions) -> Result<()> {
    let known = |b: &str| b == "ce" || opts.trained.iter().chain(&opts.bases).any(|(n, _)| n == b);
    for m in methods {
        if !known(&m.base) {
            bail!(
                "method '{}' needs the checkpoint of '{}': add --trained {}=PATH (a classifier \
                 stage) or --base {}=PATH (another stage-1 backbone)",
                m.base,
                m.base,
                m.base,
                m.base
            );
        }
    }
    Ok(())
}

/// Base names are unique, not `ce` (the `--checkpoint`), and usable in a method
/// (`NAME[+STEP…]`: no `+`, `,` or `=`).
fn check_names(opts: &CompareOptions) -> Result<()> {
    let mut seen = std::collections::HashSet::from(["ce".to_owned()]);
    let flagged = opts
        .bases
        .iter()
        .map(|b| ("--base", b))
        .chain(opts.trained.iter().map(|t| ("--trained", t)));
    for (flag, (name, path)) in flagged {
        if name.is_empty() || name.contains(['+', ',', '=', ' ']) {
            bail!(
                "{flag} '{name}={}': a base name is a word without '+', ',', '=' or spaces \
                 (methods are NAME+STEP…)",
                path.display()
            );
        }
        if !seen.insert(name.clone()) {
            bail!(
                "{flag} {name}={}: the name '{name}' is taken{}; give each base its own name",
                path.display(),
                if name == "ce" {
                    " by --checkpoint"
                } else {
                    " by another --base or --trained"
                }
            );
        }
    }
    Ok(())
}

/// Each `--base` checkpoint exists and, where its run folder says, is a stage-1 checkpoint
/// trained on the same data set, imbalance factor and classes as the `--checkpoint` (its loss
/// and backbone may differ: that is what it is for).
fn check_stage1_bases(cfg: &Config, bases: &[(String, PathBuf)]) -> Result<()> {
    for (name, path) in bases {
        if !path.is_file() {
            bail!("--base {name}={}: no checkpoint there", path.display());
        }
        let Some(c) = run_config(path) else { continue };
        if c.stage() != Stage::Stage1 {
            bail!(
                "--base {name}={}: a stage-2 checkpoint; a --base is another stage-1 backbone \
                 (give a classifier stage as --trained {name}=…)",
                path.display()
            );
        }
        if (c.dataset, c.imb_factor, c.num_classes)
            != (cfg.dataset, cfg.imb_factor, cfg.num_classes)
        {
            bail!(
                "--base {name}={}: trained on {}, not on the --checkpoint's {}; bases are \
                 compared on the same test images, so they must share the training data",
                path.display(),
                data_words(&c),
                data_words(cfg)
            );
        }
    }
    Ok(())
}

/// The data a run trained on, in words: `cifar10, IF 0.01, 10 classes`.
fn data_words(c: &Config) -> String {
    let imb = c
        .imb_factor
        .map_or("natural imbalance".into(), |f| format!("IF {f}"));
    format!("{}, {imb}, {} classes", c.dataset, c.num_classes)
}

/// The scored split has at least [`MIN_BOOTSTRAP_IMAGES`] images.
///
/// # Errors
/// Fewer: the message gives the count and the minimum.
pub fn check_scored_size(n: usize) -> Result<()> {
    if n < MIN_BOOTSTRAP_IMAGES {
        bail!(
            "the scored split has {n} images: too few for bootstrap intervals (at least \
             {MIN_BOOTSTRAP_IMAGES}); use a larger test set, or --reference-protocol to score \
             the whole test set"
        );
    }
    Ok(())
}

/// The table name of every base of `opts`: `ce` and each `--base` by the catalogue label of
/// the stage-1 loss its run folder's `config.yaml` names (`CE (stage 1)`, `Balanced
/// Softmax`, `LDAM`, …; a name given twice gets ` (NAME)`); a `--trained` base by the
/// catalogue label of the method its run folder's `config.yaml` trains (`MiSLAS`, whatever its
/// name: `mislas-bs`), else of its name, followed, when the comparison has more than one stage-1
/// backbone, by ` on ` and the label of the backbone its run started from (its `resume`).
pub fn base_labels(opts: &CompareOptions) -> std::collections::HashMap<String, String> {
    use crate::engine::recipe::catalogue;
    let stage1: Vec<(String, PathBuf)> =
        std::iter::once(("ce".to_owned(), PathBuf::from(&opts.cfg.resume)))
            .chain(opts.bases.iter().cloned())
            .collect();
    let loss_label =
        |path: &Path| run_config(path).map(|c| catalogue::of_stage1(&c).label.to_owned());
    let mut labels = std::collections::HashMap::new();
    let raw: Vec<(String, String)> = stage1
        .iter()
        .map(|(n, p)| {
            let fallback = if n == "ce" {
                catalogue::of_stage1(&opts.cfg).label.to_owned()
            } else {
                n.clone()
            };
            (n.clone(), loss_label(p).unwrap_or(fallback))
        })
        .collect();
    for (name, label) in &raw {
        let twice = raw.iter().filter(|(_, l)| l == label).count() > 1;
        let label = if twice {
            format!("{label} ({name})")
        } else {
            label.clone()
        };
        labels.insert(name.clone(), label);
    }
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    };
    for (name, path) in &opts.trained {
        // The method its run trained (`mislas-bs` is MiSLAS), else the name's catalogue row.
        let trained_by = run_config(path).and_then(|c| catalogue::Method::of_config(&c));
        let mut label = trained_by.map_or_else(|| base_label(name), |m| m.label.to_owned());
        if !opts.bases.is_empty() {
            let from = run_config(path).map(|c| PathBuf::from(c.resume));
            let backbone = from.and_then(|f| stage1.iter().find(|(_, p)| same(&f, p)));
            if let Some((b, _)) = backbone {
                label = format!("{label} on {}", labels[b]);
            }
        }
        labels.insert(name.clone(), label);
    }
    labels
}

/// The bases' outputs, their names, the (validation, scored) descriptions and the test-set
/// index of each scored image.
type LoadedBases = (Vec<Base>, Vec<String>, (String, String), Vec<usize>);

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
    let mut scored_indices = Vec::new();
    let all_bases = std::iter::once(("ce".to_owned(), PathBuf::from(&cfg.resume)))
        .chain(opts.bases.iter().cloned())
        .chain(opts.trained.iter().cloned())
        .filter(|(n, _)| methods.iter().any(|m| m.base == *n));
    for (name, path) in all_bases {
        let c = checkpoint_config(cfg, &path);
        let dir = cache::cache_dir_for(&path, out);
        let test = cache::load_or_compute(&c, &Source::Test, &dir, log, &opts.watch)?;
        let (val, scored, d, indices) = views(&c, &test, validation, opts, &dir, log)?;
        if names.is_empty() {
            // The same split for every base; named with the stage-1 checkpoint's record.
            describe = d;
            scored_indices = indices;
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
    Ok((bases, names, describe, scored_indices))
}

/// The configuration that runs `checkpoint`: the comparison's, with the network of the
/// checkpoint's own run (`backbone`, `classifier`: LDAM's normed classifier, `loss`) where
/// its run folder has a `config.yaml`.
fn checkpoint_config(cfg: &Config, checkpoint: &Path) -> Config {
    let mut c = cfg.clone();
    if let Some(own) = run_config(checkpoint) {
        c.backbone = own.backbone;
        c.classifier = own.classifier;
        c.loss = own.loss;
    }
    c.resume = checkpoint.display().to_string();
    c
}

/// A checkpoint's validation and scored views, their descriptions, and the test-set index of
/// each scored image.
type Views = (View, View, (String, String), Vec<usize>);

/// The validation and scored views of a checkpoint's test outputs, and their descriptions;
/// the stratified halves' indices are written next to the cache (`split_<seed>.json`).
fn views(
    cfg: &Config,
    test: &Cached,
    validation: &Validation,
    opts: &CompareOptions,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<Views> {
    let protocol = opts.protocol;
    let n = test.labels.len();
    let all: Vec<usize> = (0..n).collect();
    let whole = || View::select(&test.features, &test.logits, &test.labels, &all);
    if protocol == Protocol::Reference {
        let d = format!("the whole test set ({n} images; reference protocol)");
        return Ok((whole(), whole(), (d.clone(), d), all));
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
                all,
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
                b,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A run folder `dir/name` with the Fashion-MNIST-LT preset `preset` as its
    /// `config.yaml`, `resume` set to `resume` and `extra` appended; returns its checkpoint.
    fn run(dir: &Path, name: &str, preset: &str, resume: &str, extra: &str) -> PathBuf {
        let text = std::fs::read_to_string(format!(
            "{}/presets/fashion_mnist/fashion_mnist_imb001_{preset}.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
        .replace("resume: ''", &format!("resume: '{resume}'"));
        let run = dir.join(name);
        std::fs::create_dir_all(run.join("ckps")).unwrap();
        std::fs::write(run.join("config.yaml"), format!("{text}{extra}")).unwrap();
        let ck = run.join("ckps/current.safetensors");
        std::fs::write(&ck, b"placeholder").unwrap();
        ck
    }

    /// Rows are labelled from the catalogue: each stage-1 base by its loss, a trained base by
    /// its method and, with more than one backbone, the backbone it started from; two bases
    /// of the same loss are told apart by their names.
    #[test]
    fn bases_are_labelled_by_their_loss_and_backbone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ce = run(dir, "ce", "stage1_mixup", "", "");
        let bs = run(dir, "bs", "stage1_mixup", "", "loss: balanced_softmax\n");
        let on_bs = run(
            dir,
            "mislas_bs",
            "stage2_mislas",
            &bs.display().to_string(),
            "",
        );
        let on_ce = run(dir, "crt_ce", "stage2_crt", &ce.display().to_string(), "");
        let loaded = Config::from_file(&dir.join("ce/config.yaml")).unwrap();
        let mut opts = CompareOptions::new(loaded.config);
        opts.cfg.resume = ce.display().to_string();
        opts.trained = vec![("mislas".into(), on_bs.clone()), ("crt".into(), on_ce)];
        let alone = base_labels(&opts);
        assert_eq!(alone["ce"], "CE (stage 1)");
        assert_eq!(alone["mislas"], "MiSLAS", "one backbone: no 'on …'");
        opts.bases = vec![("bs".into(), bs.clone())];
        let l = base_labels(&opts);
        assert_eq!(
            (&*l["ce"], &*l["bs"], &*l["mislas"], &*l["crt"]),
            (
                "CE (stage 1)",
                "Balanced Softmax",
                "MiSLAS on Balanced Softmax",
                "cRT on CE (stage 1)"
            )
        );
        // A trained base is labelled by what its run trains, whatever it is called.
        opts.trained.push(("mislas-bs".into(), on_bs));
        assert_eq!(
            base_labels(&opts)["mislas-bs"],
            "MiSLAS on Balanced Softmax"
        );
        opts.trained.pop();
        let ce2 = run(dir, "ce2", "stage1_mixup", "", "");
        opts.bases.push(("ce2".into(), ce2));
        let l = base_labels(&opts);
        assert_eq!(
            (&*l["ce"], &*l["ce2"]),
            ("CE (stage 1) (ce)", "CE (stage 1) (ce2)")
        );
        assert!(check_stage1_bases(&opts.cfg, &opts.bases).is_ok());
    }

    #[test]
    fn a_scored_split_too_small_for_the_bootstrap_is_refused() {
        assert!(check_scored_size(20).is_ok());
        let e = check_scored_size(19).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "the scored split has 19 images: too few for bootstrap intervals (at least 20)"
            ),
            "{e}"
        );
    }

    /// SADE's list files of ImageNet-LT under `data_path` (written here in the list-file
    /// format, against a written test list) replace the drawn sets of their priors; the log
    /// says which were found and which priors are drawn; a file naming an image outside the
    /// test list stops the comparison with the file and line.
    #[test]
    fn sades_list_files_are_found_and_said() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let preset = format!(
            "{}/presets/imagenet/imagenet_resnet50_stage1_mixup.yaml",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut cfg = Config::from_file(Path::new(&preset)).unwrap().config;
        cfg.data_path = root.display().to_string();
        // 30 test images of 3 classes (ids as written: 0, 1, 2), the model's K = 3.
        cfg.num_classes = 3;
        let test: String = (0..30)
            .map(|i| format!("test/{}/{i}.JPEG {}\n", i % 3, i % 3))
            .collect();
        std::fs::write(root.join("ImageNet_LT_test.txt"), test).unwrap();
        let forward: String = (0..30)
            .filter(|i| i % 3 == 0 || i % 9 == 1 || *i == 2)
            .map(|i| format!("test/{}/{i}.JPEG {}\n", i % 3, i % 3))
            .collect();
        std::fs::create_dir_all(root.join("ImageNet_LT")).unwrap();
        let file = root.join("ImageNet_LT/ImageNet_LT_forward50.txt");
        std::fs::write(&file, forward).unwrap();
        let mut opts = CompareOptions::new(cfg);
        opts.test_priors = TestPrior::parse_list("forward50,uniform").unwrap();
        let scored: Vec<usize> = (0..30).collect();
        let labels = Tensor::from_slice(&(0..30).map(|i| i % 3).collect::<Vec<i64>>());
        let view = View {
            features: Tensor::zeros([30, 2], (tch::Kind::Float, tch::Device::Cpu)),
            logits: Tensor::zeros([30, 3], (tch::Kind::Float, tch::Device::Cpu)),
            labels,
        };
        let mut lines = Vec::new();
        let sets = sade_sets(&opts, &scored, &view, &mut |l| lines.push(l.to_owned())).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].prior, TestPrior::Forward(50));
        // Class 0: 10 images; class 1: 1, 10, 19, 28; class 2: image 2.
        assert_eq!(sets[0].class_counts, vec![10, 4, 1]);
        assert_eq!(sets[0].source.as_deref(), Some(file.to_str().unwrap()));
        assert_eq!(
            lines,
            vec![
                format!(
                    "=> test prior forward50: SADE's list file {} (15 images)",
                    file.display()
                ),
                format!(
                    "=> no SADE list file under {} for uniform: drawn from the scored split",
                    root.display()
                ),
            ]
        );
        std::fs::write(&file, "test/0/0.JPEG 0\ntest/0/99.JPEG 0\n").unwrap();
        let e = sade_sets(&opts, &scored, &view, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "ImageNet_LT_forward50.txt:2: the image 'test/0/99.JPEG' is not in the test list"
            ),
            "{e}"
        );
    }
}
