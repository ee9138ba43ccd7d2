//! "Re-run with one change": the configuration a run in `saved/` was started with, made into
//! the configuration of a new run — the same keys, a new `name`, and nothing that would make the
//! new run continue the old one (its `run_dir`, or a `resume` of a checkpoint in its own folder).
//! The front ends open it in a form for the one change; the old folder stays as it is.
use crate::config::Config;
use std::path::Path;

/// The suffix of a re-run's name: `<name>_rerun`, then `<name>_rerun2`, `<name>_rerun3`, ….
pub const RERUN_SUFFIX: &str = "_rerun";

/// The name of a re-run of a configuration named `name`: `<name>_rerun`; a re-run of a re-run
/// counts on (`x_rerun` → `x_rerun2` → `x_rerun3`) rather than growing `_rerun_rerun`.
pub fn rerun_name(name: &str) -> String {
    if let Some(i) = name.rfind(RERUN_SUFFIX) {
        let (base, tail) = (&name[..i], &name[i + RERUN_SUFFIX.len()..]);
        let n = match tail {
            "" => Some(1),
            t if t.bytes().all(|b| b.is_ascii_digit()) => t.parse::<u64>().ok(),
            _ => None,
        };
        if let Some(n) = n {
            return format!("{base}{RERUN_SUFFIX}{}", n + 1);
        }
    }
    format!("{name}{RERUN_SUFFIX}")
}

/// The configuration of a new run from `config`, the `config.yaml` of the run in `dir`: every
/// key as it was, but `name` (see [`rerun_name`]), an empty `run_dir` (a fixed folder would be
/// continued, see [`crate::run_dir::RunDir::create_at`]), and an empty `resume` when it names a
/// file in `dir` (the run's own checkpoint: resuming is `R`'s work). A `resume` outside `dir`
/// is the run's starting point — stage 2's stage-1 checkpoint, or the weights stage 1 started
/// from — and is kept, so the new run starts where the old one did.
pub fn rerun_config(config: &Config, dir: &Path) -> Config {
    let mut c = config.clone();
    c.name = rerun_name(&config.name);
    c.run_dir.clear();
    if !c.resume.is_empty() && in_folder(Path::new(&c.resume), dir) {
        c.resume.clear();
    }
    c
}

/// Whether `file` lies inside the folder `dir` (compared resolved when both exist, else as
/// written).
fn in_folder(file: &Path, dir: &Path) -> bool {
    match (file.canonicalize(), dir.canonicalize()) {
        (Ok(f), Ok(d)) => f.starts_with(d),
        _ => file.starts_with(dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rerun_name_counts_on_instead_of_growing() {
        assert_eq!(rerun_name("fm_s1"), "fm_s1_rerun");
        assert_eq!(rerun_name("fm_s1_rerun"), "fm_s1_rerun2");
        assert_eq!(rerun_name("fm_s1_rerun2"), "fm_s1_rerun3");
        assert_eq!(rerun_name("fm_s1_rerun9"), "fm_s1_rerun10");
        // Not a count: a name that merely contains the word.
        assert_eq!(rerun_name("x_rerun_lr0.1"), "x_rerun_lr0.1_rerun");
        assert_eq!(rerun_name(""), "_rerun");
    }

    #[test]
    fn a_rerun_keeps_its_starting_point_and_drops_its_own_folder() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("saved/fm_s2_202612070101");
        let other = d
            .path()
            .join("saved/fm_s1_202612060101/ckps/model_best.safetensors");
        for f in [&run.join("ckps/current.safetensors"), &other] {
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, "").unwrap();
        }
        let base = Config {
            name: "fm_s2".into(),
            lr: 0.05,
            seed: 3,
            run_dir: run.display().to_string(),
            resume: other.display().to_string(),
            ..Config::default()
        };
        let c = rerun_config(&base, &run);
        assert_eq!(c.name, "fm_s2_rerun");
        assert_eq!(c.run_dir, "", "a fixed folder would continue the old run");
        assert_eq!(
            c.resume, base.resume,
            "stage 2 starts from the same stage-1 checkpoint"
        );
        assert_eq!((c.lr, c.seed), (0.05, 3), "every other key as it was");
        // Its own checkpoint (a run continued in its folder) is not a starting point.
        let own = Config {
            resume: run.join("ckps/current.safetensors").display().to_string(),
            ..base.clone()
        };
        assert_eq!(rerun_config(&own, &run).resume, "");
        // Written relative to a folder that does not exist: compared as written.
        let rel = Config {
            resume: "saved/gone/ckps/current.safetensors".into(),
            ..base
        };
        assert_eq!(rerun_config(&rel, Path::new("saved/gone")).resume, "");
    }
}
