//! `mislas`: no arguments opens the terminal UI; subcommands run the same engine headless.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mislas::config::{Config, LoadedConfig};
use mislas::distributed::machine::{check_machine, machine_cuda_devices};
use mislas::engine;
use mislas::headless::{self, Outcome};
use mislas::wire::Job;
use std::path::{Path, PathBuf};

/// Default stage-1 preset of `mislas pipeline` (Fashion-MNIST-LT, IF = 0.01).
const DEFAULT_STAGE1: &str = "presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml";
/// Default stage-2 preset of `mislas pipeline`.
const DEFAULT_STAGE2: &str = "presets/fashion_mnist/fashion_mnist_imb001_stage2_mislas.yaml";

#[derive(Parser, Debug)]
#[command(
    name = "mislas",
    version,
    about = "MiSLAS long-tailed recognition (Zhong et al., CVPR 2021) on libtorch",
    long_about = "MiSLAS long-tailed recognition (Zhong et al., CVPR 2021) on libtorch.\n\n\
        Without a subcommand, opens the terminal UI. Configurations are the reference's yacs \
        YAML files (presets/); KEY VALUE pairs, before, between or after the options, override \
        keys (a value that begins with '-' and is not a number goes after `--`)."
)]
struct Cli {
    /// Folder of run folders.
    #[arg(long, global = true, default_value = "saved")]
    saved: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the stage a configuration's `mode` names.
    Train {
        /// YAML configuration.
        #[arg(long)]
        cfg: PathBuf,
        /// KEY VALUE overrides (yacs style), e.g. `num_epochs 5 resume saved/…/ckps/current.safetensors`.
        #[arg(allow_negative_numbers = true, value_name = "KEY VALUE")]
        opts: Vec<String>,
    },
    /// Evaluate a checkpoint (`resume PATH`) on the test set.
    Eval {
        /// YAML configuration (data set, backbone, classes).
        #[arg(long)]
        cfg: PathBuf,
        /// KEY VALUE overrides; `resume PATH` names the checkpoint (mislas or reference .pth.tar).
        #[arg(allow_negative_numbers = true, value_name = "KEY VALUE")]
        opts: Vec<String>,
    },
    /// Classifier-stage methods and calibration fixes side by side on one stage-1 checkpoint:
    /// table with bootstrap intervals, CSV, Markdown, JSON and figures.
    Compare(CompareArgs),
    /// Stage 1, then stage 2 on stage 1's best checkpoint (default: Fashion-MNIST-LT, IF 0.01);
    /// several `--stage2` run one after another on the same checkpoint, each in its own folder.
    Pipeline {
        /// Stage-1 configuration.
        #[arg(long, default_value = DEFAULT_STAGE1)]
        stage1: PathBuf,
        /// Stage-2 configuration; repeat it (`--stage2 A --stage2 B`) for several classifier
        /// stages on one stage-1 run.
        #[arg(long, default_value = DEFAULT_STAGE2)]
        stage2: Vec<PathBuf>,
        /// KEY VALUE overrides for both stages; `stage1.KEY VALUE` / `stage2.KEY VALUE` for one.
        #[arg(allow_negative_numbers = true, value_name = "KEY VALUE")]
        opts: Vec<String>,
    },
    /// The method catalogue: every stage-1 loss and classifier stage mislas trains, with its
    /// label, kind, keys and source (the README's method table, `--markdown`).
    Methods {
        /// Print the table as Markdown.
        #[arg(long)]
        markdown: bool,
    },
    /// Print the resolved configuration, or the error.
    Config {
        /// YAML configuration.
        #[arg(long)]
        cfg: PathBuf,
        /// KEY VALUE overrides.
        #[arg(allow_negative_numbers = true, value_name = "KEY VALUE")]
        opts: Vec<String>,
    },
    /// One rank of a data-parallel run, started by mislas itself with its rank in the
    /// environment (not for direct use).
    #[command(name = "rank-worker", hide = true)]
    RankWorker {
        /// The job (YAML) every rank runs.
        #[arg(long)]
        job: PathBuf,
    },
    /// List the presets (release and yours) and say where they are looked for.
    Presets,
    /// The queue of runs (per-user, SQLite): add runs or sweeps, list, hold, reorder, run them.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// The run folders of `--saved` as CSV: one row per run, or with `--groups` one row per
    /// configuration with the mean ± sample standard deviation over its seeds.
    Runs {
        /// One row per configuration (runs differing only in seed, name, resume), as the runs
        /// screen's `g`.
        #[arg(long)]
        groups: bool,
        /// Write the CSV to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Throughput: stage-1 images/s of the full pipeline and of a bare loop, loader images/s,
    /// peak memory.
    Bench {
        /// YAML configuration.
        #[arg(long, default_value = DEFAULT_STAGE1)]
        cfg: PathBuf,
        /// Timed training batches per measurement.
        #[arg(long, default_value_t = 20)]
        batches: usize,
        /// Only time checkpoint writes (no data needed: e.g. a ResNet-50 preset without ImageNet).
        #[arg(long)]
        checkpoint_only: bool,
        /// KEY VALUE overrides.
        #[arg(allow_negative_numbers = true, value_name = "KEY VALUE")]
        opts: Vec<String>,
    },
}

#[derive(clap::Args, Debug)]
struct CompareArgs {
    /// Stage-1 configuration (data set, backbone, class ranges) [default: the `config.yaml` of
    /// the checkpoint's run folder, else the Fashion-MNIST-LT stage-1 preset].
    #[arg(long)]
    cfg: Option<PathBuf>,
    /// Stage-1 checkpoint (mislas .safetensors or the reference's .pth.tar).
    #[arg(long)]
    checkpoint: PathBuf,
    /// A trained classifier-stage checkpoint of the same backbone, NAME=PATH (repeatable):
    /// crt=…, lws=…, mislas=…, mislas-no-las=…, mislas-no-shift=….
    #[arg(long = "trained", value_name = "NAME=PATH")]
    trained: Vec<String>,
    /// Another stage-1 checkpoint of the same data, NAME=PATH (repeatable): a backbone trained
    /// with another stage-1 loss (e.g. bs=… for Balanced Softmax, ldam=…), a base like `ce`
    /// for the methods (bs, bs+ts, bs+la, …), labelled with its loss; trained bases started
    /// from it are labelled "… on <its loss>".
    #[arg(long = "base", value_name = "NAME=PATH")]
    base: Vec<String>,
    /// Methods, comma-separated, BASE[+STEP…] with BASE `ce` (the stage-1 checkpoint) or a
    /// --trained NAME and STEP tau-norm, ncm, la (logit adjustment), ts (temperature scaling),
    /// vs (vector scaling), la-q (logit adjustment toward the test set's known prior), em or
    /// bbse (the test prior estimated, then the posteriors corrected).
    /// Default: every post-hoc method on ce, alone and +ts, and each trained base, alone and +ts.
    #[arg(long, value_delimiter = ',')]
    methods: Vec<String>,
    /// Output folder [default: <run>/compare/<YYYYMMDD-HHMMSS> of the checkpoint's run].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Bootstrap draws.
    #[arg(long, default_value_t = mislas::compare::bootstrap::DEFAULT_DRAWS)]
    draws: usize,
    /// Seed of the bootstrap and of the validation half.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fit on the whole test set and score it too: the reference's protocol (optimistic).
    #[arg(long)]
    reference_protocol: bool,
    /// Shifted test priors every method is also scored on (SADE's protocol), comma-separated:
    /// forward50, forward25, forward10, forward5, forward2, uniform, backward2 … backward50;
    /// `all` for the eleven, `none` for none.
    #[arg(long, default_value = mislas::compare::shift::DEFAULT_PRIORS)]
    test_priors: String,
    /// KEY VALUE overrides of the configuration (e.g. `device cpu`).
    #[arg(allow_negative_numbers = true, value_name = "KEY VALUE")]
    opts: Vec<String>,
}

fn compare(args: CompareArgs) -> Result<i32> {
    use mislas::compare::{cli, methods::MethodSpec, split::Protocol};
    let run_config = args
        .checkpoint
        .parent()
        .and_then(Path::parent)
        .map(|run| run.join("config.yaml"))
        .filter(|f| f.is_file());
    let cfg = args
        .cfg
        .clone()
        .or(run_config)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STAGE1));
    let mut loaded = load(&cfg, &args.opts)?;
    report_ignored(&loaded);
    loaded.config.resume = args.checkpoint.display().to_string();
    let mut opts = cli::CompareOptions::new(loaded.config);
    for t in &args.trained {
        let Some((name, path)) = t.split_once('=') else {
            bail!(
                "--trained '{t}': expected NAME=PATH, e.g. crt=saved/…/ckps/model_best.safetensors"
            );
        };
        opts.trained.push((name.to_owned(), PathBuf::from(path)));
    }
    for b in &args.base {
        let Some((name, path)) = b.split_once('=') else {
            bail!("--base '{b}': expected NAME=PATH, e.g. bs=saved/…/ckps/current.safetensors");
        };
        opts.bases.push((name.to_owned(), PathBuf::from(path)));
    }
    opts.methods = args
        .methods
        .iter()
        .map(|m| MethodSpec::parse(m))
        .collect::<Result<_>>()?;
    opts.out = args.out;
    opts.draws = args.draws;
    opts.seed = args.seed;
    opts.test_priors = mislas::compare::shift::TestPrior::parse_list(&args.test_priors)?;
    if args.reference_protocol {
        opts.protocol = Protocol::Reference;
    }
    // Ctrl-C (or SIGTERM) stops the comparison at the next batch, nothing written; a second one
    // ends the process at once.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 130, opts.watch.flag())?;
        signal_hook::flag::register(signal, opts.watch.flag())?;
    }
    opts.watch = opts
        .watch
        .clone()
        .with_progress(mislas::compare::progress::stderr_progress());
    match cli::run(&opts, &mut |line| eprintln!("{line}")) {
        Ok((c, out)) => {
            print!("{}", c.text_table());
            println!("written to {}", out.display());
            Ok(0)
        }
        Err(_) if opts.watch.is_cancelled() => {
            eprintln!("compare: cancelled; no table or figure written (cached passes are kept)");
            Ok(130)
        }
        Err(e) => Err(e),
    }
}

#[derive(Subcommand, Debug)]
enum QueueAction {
    /// Queue a `train …` or `pipeline …` command line; with `--grid`, one run per grid point.
    Add {
        /// A sweep key and its comma-separated values, e.g. `--grid seed 0,1,2`; repeat for a
        /// grid (`--grid smooth_head 0.1,0.2 --grid seed 0,1`: four runs). A value may set
        /// other keys at its points: `--grid stage1.loss ce,ce+stage1.mixup=false`.
        #[arg(long, num_args = 2, value_names = ["KEY", "VALUES"])]
        grid: Vec<String>,
        /// Queue more than 100 runs without asking.
        #[arg(long)]
        yes: bool,
        /// `train --cfg FILE [KEY VALUE]…` or `pipeline [--stage1 …] [KEY VALUE]…`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// List the queue.
    Ls,
    /// Remove runs (not running ones).
    Rm {
        /// Ids (`queue ls`).
        ids: Vec<i64>,
    },
    /// Hold queued runs: the scheduler passes them by.
    Hold {
        /// Ids.
        ids: Vec<i64>,
    },
    /// Put held runs back in the queue.
    Release {
        /// Ids.
        ids: Vec<i64>,
    },
    /// Move a run to the front of the queue.
    First {
        /// Id.
        id: i64,
    },
    /// Rebuild the index of runs (in the queue's database) from the run folders in `--saved`.
    Index,
    /// Start the queued runs, one at a time on CPU, one per CUDA device otherwise; returns
    /// when the queue is empty. A second scheduler is refused.
    Run {
        /// Runs side by side on a CPU-only machine (they share its cores).
        #[arg(long, default_value_t = 1)]
        cpu_slots: usize,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
}

/// `queue run --slurm` and its sbatch options (defaults: the per-user `slurm.yaml`).
#[derive(clap::Args, Debug)]
struct SlurmArgs {
    /// Submit each queued run as an sbatch job instead of starting it here; follows the jobs
    /// until none pends or runs (`--detach`: returns once submitted).
    #[arg(long)]
    slurm: bool,
    /// Return once every run is submitted (with --slurm); `queue ls` asks Slurm.
    #[arg(long, requires = "slurm")]
    detach: bool,
    /// sbatch --partition.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// sbatch --account.
    #[arg(long, requires = "slurm")]
    account: Option<String>,
    /// sbatch --time (MINUTES, HH:MM:SS, D-HH:MM:SS).
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// GPUs per run on each node: 1 is one task with one GPU; more start one task per GPU
    /// with srun (--ntasks-per-node, --gpus-per-node).
    #[arg(long, requires = "slurm")]
    gpus: Option<u32>,
    /// Nodes per run (--nodes); more than 1 starts one task per GPU on each with srun (warns
    /// when the run folder is not on a shared file system).
    #[arg(long, requires = "slurm", value_parser = clap::value_parser!(u32).range(1..))]
    nodes: Option<u32>,
    /// Submit the queued runs (e.g. a sweep) as one job array with at most K tasks running
    /// at once (sbatch --array=0-N%K).
    #[arg(long, value_name = "K", requires = "slurm", value_parser = clap::value_parser!(u32).range(1..))]
    array_throttle: Option<u32>,
    /// sbatch --cpus-per-task.
    #[arg(long, requires = "slurm")]
    cpus: Option<u32>,
    /// sbatch --mem (e.g. 16G).
    #[arg(long, requires = "slurm")]
    mem: Option<String>,
    /// Seconds before the time limit at which Slurm sends USR1 (the run checkpoints and
    /// requeues itself) [default: 120].
    #[arg(long, requires = "slurm")]
    signal_seconds: Option<u64>,
    /// More sbatch options, as one word each (`--sbatch=--qos=high`); repeatable.
    #[arg(
        long = "sbatch",
        value_name = "OPTION",
        requires = "slurm",
        allow_hyphen_values = true
    )]
    extra: Vec<String>,
}

impl SlurmArgs {
    /// The sbatch options: `slurm.yaml`'s, overridden by the command line's.
    fn options(&self) -> Result<mislas::queue::slurm::SlurmOptions> {
        use mislas::queue::slurm::{config_path, SlurmOptions};
        let file = match config_path() {
            Some(p) => SlurmOptions::from_file(&p)?,
            None => SlurmOptions::default(),
        };
        Ok(file.overridden_by(SlurmOptions {
            partition: self.partition.clone(),
            account: self.account.clone(),
            time: self.time.clone(),
            gpus: self.gpus,
            nodes: self.nodes,
            cpus: self.cpus,
            mem: self.mem.clone(),
            signal_seconds: self.signal_seconds,
            array_throttle: self.array_throttle,
            extra: self.extra.clone(),
        }))
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// `mislas methods`: the catalogue, as a Markdown table or one block per method.
fn print_methods(markdown: bool) {
    use mislas::engine::recipe::catalogue::{markdown_table, METHODS};
    if markdown {
        print!("{}", markdown_table());
        return;
    }
    for m in METHODS {
        println!("{:<18} {} ({})", m.name, m.label, m.kind.words());
        println!("{:<18} {}", "", m.summary);
        if !m.uses.is_empty() {
            println!("{:<18} keys: {}", "", m.uses.join(", "));
        }
        println!("{:<18} source: {}", "", m.source);
    }
}

fn run(cli: Cli) -> Result<i32> {
    let Some(command) = cli.command else {
        let root = std::env::current_dir().context("cannot read the current folder")?;
        mislas::tui::run_tui(&root)?;
        return Ok(0);
    };
    match command {
        Command::Methods { markdown } => {
            print_methods(markdown);
            Ok(0)
        }
        Command::Config { cfg, opts } => {
            let loaded = load(&cfg, &opts)?;
            let mut issues = loaded.config.validate();
            issues.extend(check_machine(&loaded.config, machine_cuda_devices()));
            if !issues.is_empty() {
                let source = if opts.is_empty() {
                    cfg.display().to_string()
                } else {
                    format!("{} with the command line's overrides", cfg.display())
                };
                for i in &issues {
                    eprintln!("error: {source}: {}: {}", i.key, i.message);
                }
                return Ok(1);
            }
            report_ignored(&loaded);
            print!("{}", loaded.config.to_commented_yaml());
            Ok(0)
        }
        Command::Train { cfg, opts } => {
            let loaded = load(&cfg, &opts)?;
            report_ignored(&loaded);
            Ok(follow(Job::Single(loaded.config), cli.saved))
        }
        Command::Pipeline {
            stage1,
            stage2,
            opts,
        } => {
            let (c1, c2) = pipeline_configs(&stage1, &stage2, &opts)?;
            report_ignored(&c1);
            Ok(follow(
                Job::Pipeline {
                    stage1: c1.config,
                    stage2: c2,
                },
                cli.saved,
            ))
        }
        Command::Compare(args) => compare(args),
        Command::Presets => list_presets(),
        Command::Runs { groups, out } => export_runs(&cli.saved, groups, out.as_deref()),
        Command::Queue { action } => queue(action, &cli.saved),
        Command::Eval { cfg, opts } => {
            let loaded = load(&cfg, &opts)?;
            mislas::engine::evaluate::evaluate_checkpoint(&loaded.config)?;
            Ok(0)
        }
        Command::RankWorker { job } => {
            let text = std::fs::read_to_string(&job)
                .with_context(|| format!("cannot read the job file {}", job.display()))?;
            // Read once: removed now, so that it is not left in the temporary folder when rank
            // 0 dies before it could remove it.
            let _ = std::fs::remove_file(&job);
            let job: Job = serde_yaml::from_str(&text)
                .with_context(|| format!("{} is not a mislas job", job.display()))?;
            Ok(follow_rank(job, cli.saved, false))
        }
        Command::Bench {
            cfg,
            batches,
            checkpoint_only,
            opts,
        } => {
            let loaded = load(&cfg, &opts)?;
            if !checkpoint_only {
                mislas::bench::run(&loaded.config, batches)?;
            }
            let cost = mislas::bench::checkpoint_cost(&loaded.config, &cli.saved, 5)?;
            mislas::bench::print_checkpoint_cost(&loaded.config, &cost);
            Ok(0)
        }
    }
}

/// `mislas runs`: the run folders under `saved` (newest first) or their seed groups, as CSV
/// on standard output or into `out`.
fn export_runs(saved: &Path, groups: bool, out: Option<&Path>) -> Result<i32> {
    if !saved.is_dir() {
        bail!(
            "{}: no such folder of run folders (--saved)",
            saved.display()
        );
    }
    let runs = mislas::run_dir::list_runs(saved);
    let sink: Box<dyn std::io::Write> = match out {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    if groups {
        mislas::export::write_groups(&mislas::seeds::group_by_seed(&runs), sink)?;
    } else {
        mislas::export::write_runs(&runs, sink)?;
    }
    if let Some(p) = out {
        eprintln!(
            "{} run folders of {} written to {}",
            runs.len(),
            saved.display(),
            p.display()
        );
    }
    Ok(0)
}

/// The stages' configurations of `mislas pipeline`: `stage1.KEY VALUE` / `stage2.KEY VALUE`
/// override one stage (`stage2.` every stage 2), `KEY VALUE` all; the stage 2s are checked
/// before stage 1 runs for hours, and named apart ([`mislas::wire::name_stage2_runs`]).
fn pipeline_configs(
    stage1: &Path,
    stage2: &[PathBuf],
    opts: &[String],
) -> Result<(LoadedConfig, Vec<Config>)> {
    let (mut both, mut only1, mut only2) = (Vec::new(), Vec::new(), Vec::new());
    if !opts.len().is_multiple_of(2) {
        bail!(
            "overrides come as KEY VALUE pairs; '{}' has no value",
            opts[opts.len() - 1]
        );
    }
    for kv in opts.chunks(2) {
        let (key, value) = (&kv[0], kv[1].clone());
        if let Some(k) = key.strip_prefix("stage1.") {
            only1.extend([k.to_owned(), value]);
        } else if let Some(k) = key.strip_prefix("stage2.") {
            only2.extend([k.to_owned(), value]);
        } else {
            both.extend([key.clone(), value]);
        }
    }
    let c1 = load(stage1, &[both.clone(), only1].concat())?;
    // A sweep's every point is checked before any is queued: stage 1 too (`loss ldam` without
    // `classifier normed` is refused here, not an hour later).
    if let Some(i) = c1.config.validate().first() {
        bail!("{}: {}: {}", stage1.display(), i.key, i.message);
    }
    let mut c2 = Vec::new();
    for path in stage2 {
        let c = load(path, &[both.clone(), only2.clone()].concat())?.config;
        // Fail before stage 1 runs for hours when a stage-2 configuration is unusable.
        let mut probe = c.clone();
        probe.resume.clear();
        let mut issues = probe.validate();
        issues.extend(check_machine(&probe, machine_cuda_devices()));
        if let Some(i) = issues.first() {
            bail!("{}: {}: {}", path.display(), i.key, i.message);
        }
        c2.push(c);
    }
    mislas::wire::name_stage2_runs(&mut c2)?;
    Ok((c1, c2))
}

fn load(path: &Path, opts: &[String]) -> Result<LoadedConfig> {
    let path = &release_fallback(path);
    let mut loaded = Config::from_file(path)?;
    loaded.config.apply_overrides(opts)?;
    Ok(loaded)
}

/// `presets/…` that is not in the current folder (an installed `mislas` run outside the clone)
/// is the built-in release preset of that name ([`mislas::presets::release_preset`]).
fn release_fallback(path: &Path) -> PathBuf {
    match path.strip_prefix("presets") {
        Ok(rel) if !path.exists() => {
            let root = std::env::current_dir().unwrap_or_default();
            let installed = mislas::presets::release_preset(&root, &rel.display().to_string());
            if installed.is_file() {
                installed
            } else {
                path.to_path_buf()
            }
        }
        _ => path.to_path_buf(),
    }
}

/// `mislas presets`: where presets are looked for, then one line per preset.
fn list_presets() -> Result<i32> {
    use mislas::presets::{PresetOrigin, PresetPlaces};
    let root = std::env::current_dir().context("cannot read the current folder")?;
    let places = PresetPlaces::find(&root);
    println!("looks in {}", places.describe());
    for p in places.discover() {
        let origin = match p.origin {
            PresetOrigin::Project if places.installed => "built-in",
            PresetOrigin::Project => "project",
            PresetOrigin::User => "yours",
        };
        let state = match (&p.config, &p.data) {
            (Err(e), _) => format!("does not load: {e}"),
            (Ok(_), Some(d)) if d.is_found() => "data found".to_owned(),
            (Ok(_), _) => "data not found".to_owned(),
        };
        println!(
            "{:<9} {}  {}  ({state})",
            origin,
            p.name(),
            p.path.display()
        );
    }
    Ok(0)
}

fn report_ignored(loaded: &LoadedConfig) {
    if !loaded.ignored.is_empty() {
        eprintln!(
            "note: {}: ignored keys of distributed PyTorch: {}",
            loaded
                .path
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            loaded.ignored.join(", ")
        );
    }
}

fn follow(job: Job, saved: PathBuf) -> i32 {
    follow_rank(job, saved, true)
}

/// Runs `job` headless; with `attachable` (every run but the other ranks of a data-parallel
/// run, whose rank 0 speaks for them) its events also go to its run folder.
fn follow_rank(job: Job, saved: PathBuf, attachable: bool) -> i32 {
    let stages = match &job {
        Job::Single(_) => 1,
        Job::Pipeline { stage2, .. } => 1 + stage2.len(),
    };
    let name = match &job {
        Job::Single(c) => c.name.clone(),
        Job::Pipeline { stage1, .. } => stage1.name.clone(),
    };
    let mut handle = engine::spawn(job, saved);
    if attachable {
        // Every run can be attached to: its events go to its run folder on the way to stdout.
        handle.events =
            mislas::live::publish(handle.events.clone(), handle.controls.clone(), stages);
    }
    let outcome = headless::follow(handle);
    if attachable {
        announce_detached_end(&outcome, &name);
    }
    match outcome {
        Outcome::Failed(msg) => {
            eprintln!("error: {msg}");
            1
        }
        Outcome::Preempted if attachable => {
            requeue_slurm_job();
            Outcome::Preempted.exit_code()
        }
        other => other.exit_code(),
    }
}

/// A run launched from the UI (detached) runs the per-user `on_run_end` hook itself as it ends
/// ([`mislas::hooks::after_detached_run`]); a failing hook is a log line, nothing more.
fn announce_detached_end(outcome: &Outcome, name: &str) {
    use mislas::hooks::{after_detached_run, EndState};
    let (state, message) = match outcome {
        Outcome::Finished => (EndState::Finished, None),
        Outcome::Stopped | Outcome::Preempted => (EndState::Stopped, None),
        Outcome::Failed(m) => (EndState::Failed, Some(m.as_str())),
    };
    if let Some(line) = after_detached_run(state, message, name) {
        println!("{line}");
    }
}

/// A preempted run inside a Slurm job asks Slurm to requeue the job (`scontrol requeue`), so
/// that it starts again and resumes from the checkpoint it just saved. Outside Slurm the exit
/// status ([`headless::EXIT_REQUEUE`]) says it to whatever started the run.
fn requeue_slurm_job() {
    let Some(job) = std::env::var_os("SLURM_JOB_ID") else {
        eprintln!(
            "=> preempted: checkpoint saved; exit status {} asks to be started again",
            headless::EXIT_REQUEUE
        );
        return;
    };
    let job = job.to_string_lossy().into_owned();
    // Said before: Slurm ends this process (SIGTERM) as it requeues the job, often before
    // scontrol returns.
    eprintln!("=> preempted: requeueing Slurm job {job} (scontrol requeue; Slurm ends this process and starts the job again)");
    match std::process::Command::new("scontrol")
        .args(["requeue", &job])
        .output()
    {
        Ok(out) if out.status.success() => eprintln!("=> preempted: Slurm job {job} requeued"),
        Ok(out) => eprintln!(
            "=> preempted, but Slurm refused to requeue job {job}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            eprintln!("=> preempted, but scontrol could not be run to requeue job {job}: {e}")
        }
    }
}

/// `mislas queue …`.
fn queue(action: QueueAction, saved: &Path) -> Result<i32> {
    use mislas::queue::{self, Queue};
    let dir = queue::data_dir()?;
    let mut q = Queue::open(&dir)?;
    match action {
        QueueAction::Add { grid, yes, command } => queue_add(&q, &grid, yes, &command, saved),
        QueueAction::Ls => queue_ls(&q, &dir),
        QueueAction::Rm { ids } => each(&ids, |id| {
            if !q.remove_slurm(id)? {
                q.remove(id)?;
            }
            Ok(())
        }),
        QueueAction::Hold { ids } => each(&ids, |id| {
            if !q.hold_slurm(id)? {
                q.hold(id)?;
            }
            Ok(())
        }),
        QueueAction::Release { ids } => each(&ids, |id| {
            if !q.release_slurm(id)? {
                q.release(id)?;
            }
            Ok(())
        }),
        QueueAction::First { id } => each(&[id], |id| q.to_front(id)),
        QueueAction::Index => {
            let n = q.reindex(&std::env::current_dir()?.join(saved))?;
            println!("indexed {n} runs of {}", saved.display());
            Ok(0)
        }
        QueueAction::Run { slurm, .. } if slurm.slurm => {
            let exe = std::env::current_exe().context("cannot find the mislas executable")?;
            queue::slurm::run_on_slurm(&mut q, &exe, &slurm.options()?, slurm.detach)?;
            Ok(0)
        }
        QueueAction::Run { cpu_slots, .. } => {
            let devices: Vec<String> = match machine_cuda_devices() {
                0 => (0..cpu_slots.max(1))
                    .map(|i| match i {
                        0 => "cpu".to_owned(),
                        _ => format!("cpu/{}", i + 1),
                    })
                    .collect(),
                n => (0..n).map(|i| format!("cuda:{i}")).collect(),
            };
            let exe = std::env::current_exe().context("cannot find the mislas executable")?;
            queue::run_scheduler(&mut q, &devices, &exe)?;
            Ok(0)
        }
    }
}

/// `mislas queue ls`: every run with its state, device and folder; a run handed to Slurm also
/// gets its job's line (states asked of Slurm first).
fn queue_ls(q: &mislas::queue::Queue, dir: &Path) -> Result<i32> {
    match q.refresh_slurm() {
        Ok((_, notes)) => notes.iter().for_each(|n| eprintln!("{n}")),
        Err(e) => eprintln!("note: the Slurm states could not be refreshed: {e:#}"),
    }
    let jobs = q.list()?;
    let slurm = q.slurm_jobs()?;
    if jobs.is_empty() {
        println!(
            "the queue ({}) is empty: `mislas queue add train --cfg FILE …` adds a run",
            dir.display()
        );
        return Ok(0);
    }
    println!(
        "{:>4}  {:<8} {:<7} NAME  RUN FOLDER",
        "ID", "STATE", "DEVICE"
    );
    for j in jobs {
        let device = j.device.as_deref().unwrap_or("");
        let dir = j
            .run_dir
            .as_ref()
            .map_or(String::new(), |d| d.display().to_string());
        let restarts = match j.restarts {
            0 => String::new(),
            1 => " (1 restart)".to_owned(),
            n => format!(" ({n} restarts)"),
        };
        println!(
            "{:>4}  {:<8} {:<7} {}{restarts}  {}",
            j.id, j.state, device, j.name, dir
        );
        if let Some(s) = slurm.iter().find(|s| s.id == j.id) {
            println!("      {}", slurm_line(s));
        }
        // Why each attempt ended, when there was more than one or the last did not finish
        // the run.
        let finished = j.ends.last().is_some_and(|w| w.starts_with("finished"));
        if j.restarts > 0 || !finished {
            for (k, why) in j.ends.iter().enumerate() {
                println!("        attempt {}: {why}", k + 1);
            }
        }
    }
    Ok(0)
}

/// `queue ls`'s line of a run's Slurm job: its id, state, reason and exit code.
fn slurm_line(s: &mislas::queue::slurm::SlurmJob) -> String {
    let mut line = match s.job_id.as_str() {
        "" => format!("Slurm: {}", s.state),
        id => format!("Slurm job {id}: {}", s.state),
    };
    if let Some(r) = &s.reason {
        line.push_str(&format!(", {r}"));
    }
    if let Some(c) = &s.exit_code {
        line.push_str(&format!(", exit code {c}"));
    }
    line
}

/// `mislas queue add`: one run per point of the grid (one run without a grid), each checked
/// before any is queued.
fn queue_add(
    q: &mislas::queue::Queue,
    grid: &[String],
    yes: bool,
    command: &[String],
    saved: &Path,
) -> Result<i32> {
    use mislas::queue;
    if !matches!(
        command.first().map(String::as_str),
        Some("train" | "pipeline")
    ) {
        let hint = match grid
            .iter()
            .skip(1)
            .step_by(2)
            .find(|v| matches!(v.as_str(), "train" | "pipeline"))
        {
            Some(v) => format!(
                " (--grid took '{v}' as its values: it takes a key and comma-separated values, \
                 e.g. `--grid seed 0,1 train --cfg FILE`)"
            ),
            None => String::new(),
        };
        bail!(
            "a queued run is `train --cfg FILE …` or `pipeline …`, not `{}`{hint}",
            command.join(" ")
        );
    }
    let points = queue::expand_grid(&queue::parse_grid(grid)?)?;
    if points.len() > queue::MAX_SWEEP_WITHOUT_YES && !yes && !confirm(points.len())? {
        bail!("nothing queued");
    }
    let project = std::env::current_dir().context("cannot read the current folder")?;
    let saved = project.join(saved);
    let mut runs = Vec::new();
    for point in &points {
        let mut args = command.to_vec();
        args.extend(point.iter().flat_map(|(k, v)| [k.clone(), v.clone()]));
        let (name, naming) = queued_name(&args, point)?;
        args.extend(naming);
        runs.push((name, args));
    }
    for (name, args) in &runs {
        let id = q.add(name, args, &project, &saved)?;
        println!("queued {id}: {name}");
    }
    Ok(0)
}

fn each(ids: &[i64], mut f: impl FnMut(i64) -> Result<()>) -> Result<i32> {
    let mut code = 0;
    for &id in ids {
        if let Err(e) = f(id) {
            eprintln!("error: {e:#}");
            code = 1;
        }
    }
    Ok(code)
}

/// Asks on the terminal whether to queue `n` runs; without a terminal, refuses.
fn confirm(n: usize) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        bail!("the sweep has {n} runs; pass --yes to queue more than 100");
    }
    print!("the sweep has {n} runs; queue them all? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("y"))
}

/// Checks a queued command line as `mislas` would run it and names the run after its
/// configuration and the sweep point's values; returns the name and the `name` overrides that
/// give its run folders that name.
fn queued_name(args: &[String], point: &[(String, String)]) -> Result<(String, Vec<String>)> {
    let argv = std::iter::once("mislas".to_owned()).chain(args.iter().cloned());
    let cli = Cli::try_parse_from(argv).map_err(|e| {
        // clap's message begins with its own "error: ", which `main` adds too.
        let text = e.to_string();
        let text = text.trim_start_matches("error: ").trim_end();
        anyhow::anyhow!("the queued command `{}`: {text}", args.join(" "))
    })?;
    let named = |c: &Config| mislas::queue::point_name(&c.name, point);
    match cli.command {
        Some(Command::Train { cfg, opts }) => {
            let loaded = load(&cfg, &opts)?;
            let mut issues = loaded.config.validate();
            issues.extend(check_machine(&loaded.config, machine_cuda_devices()));
            if let Some(i) = issues.first() {
                bail!("{}: {}: {}", cfg.display(), i.key, i.message);
            }
            let name = named(&loaded.config);
            Ok((name.clone(), vec!["name".into(), name]))
        }
        Some(Command::Pipeline {
            stage1,
            stage2,
            opts,
        }) => {
            let (c1, c2) = pipeline_configs(&stage1, &stage2, &opts)?;
            let n1 = named(&c1.config);
            // Several stage 2s share the stage-1 run's name, and each gets its recipe's
            // (`…_seed0_mislas`, `…_seed0_crt`).
            let n2 = match c2.as_slice() {
                [one] => named(one),
                _ => n1.clone(),
            };
            Ok((
                n1.clone(),
                vec!["stage1.name".into(), n1, "stage2.name".into(), n2],
            ))
        }
        _ => bail!("a queued run is `train --cfg FILE …` or `pipeline …`"),
    }
}
