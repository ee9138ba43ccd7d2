//! `mislas`: no arguments opens the terminal UI; subcommands run the same engine headless.
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use mislas::config::{machine_cuda_devices, Config, LoadedConfig};
use mislas::engine::{self, Job};
use mislas::headless::{self, Outcome};
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
        YAML files (presets/); KEY VALUE pairs after the options override keys."
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
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        opts: Vec<String>,
    },
    /// Evaluate a checkpoint (`resume PATH`) on the test set.
    Eval {
        /// YAML configuration (data set, backbone, classes).
        #[arg(long)]
        cfg: PathBuf,
        /// KEY VALUE overrides; `resume PATH` names the checkpoint (mislas or reference .pth.tar).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        opts: Vec<String>,
    },
    /// Stage 1, then stage 2 on stage 1's best checkpoint (default: Fashion-MNIST-LT, IF 0.01).
    Pipeline {
        /// Stage-1 configuration.
        #[arg(long, default_value = DEFAULT_STAGE1)]
        stage1: PathBuf,
        /// Stage-2 configuration.
        #[arg(long, default_value = DEFAULT_STAGE2)]
        stage2: PathBuf,
        /// KEY VALUE overrides for both stages; `stage1.KEY VALUE` / `stage2.KEY VALUE` for one.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        opts: Vec<String>,
    },
    /// Print the resolved configuration, or the error.
    Config {
        /// YAML configuration.
        #[arg(long)]
        cfg: PathBuf,
        /// KEY VALUE overrides.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        opts: Vec<String>,
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
        /// KEY VALUE overrides.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        opts: Vec<String>,
    },
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

fn run(cli: Cli) -> Result<i32> {
    let Some(command) = cli.command else {
        let root = std::env::current_dir().context("cannot read the current folder")?;
        mislas::tui::run_tui(&root)?;
        return Ok(0);
    };
    match command {
        Command::Config { cfg, opts } => {
            let loaded = load(&cfg, &opts)?;
            let mut issues = loaded.config.validate();
            issues.extend(loaded.config.check_machine(machine_cuda_devices()));
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
            let (mut both, mut only1, mut only2) = (Vec::new(), Vec::new(), Vec::new());
            if opts.len() % 2 != 0 {
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
            let c1 = load(&stage1, &[both.clone(), only1].concat())?;
            let c2 = load(&stage2, &[both, only2].concat())?;
            report_ignored(&c1);
            // Fail before stage 1 runs for hours when stage 2's configuration is unusable.
            let mut probe = c2.config.clone();
            probe.resume.clear();
            let mut issues = probe.validate();
            issues.extend(probe.check_machine(machine_cuda_devices()));
            if let Some(i) = issues.first() {
                bail!("{}: {}: {}", stage2.display(), i.key, i.message);
            }
            Ok(follow(
                Job::Pipeline {
                    stage1: c1.config,
                    stage2: c2.config,
                },
                cli.saved,
            ))
        }
        Command::Eval { cfg, opts } => {
            let loaded = load(&cfg, &opts)?;
            mislas::engine::evaluate::evaluate_checkpoint(&loaded.config)?;
            Ok(0)
        }
        Command::Bench { cfg, batches, opts } => {
            let loaded = load(&cfg, &opts)?;
            mislas::bench::run(&loaded.config, batches)?;
            Ok(0)
        }
    }
}

fn load(path: &Path, opts: &[String]) -> Result<LoadedConfig> {
    let mut loaded = Config::from_file(path)?;
    loaded.config.apply_overrides(opts)?;
    Ok(loaded)
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
    let stages = match &job {
        Job::Single(_) => 1,
        Job::Pipeline { .. } => 2,
    };
    let mut handle = engine::spawn(job, saved);
    // Every run can be attached to: its events go to its run folder on the way to stdout.
    handle.events = mislas::live::publish(handle.events.clone(), handle.controls.clone(), stages);
    match headless::follow(handle) {
        Outcome::Failed(msg) => {
            eprintln!("error: {msg}");
            1
        }
        other => other.exit_code(),
    }
}
