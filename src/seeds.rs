//! Runs that differ only in `seed`: grouped, with the mean and standard deviation of their
//! figures, so that a reader sees how large a difference must be to matter. Also the two
//! helpers of the runs screen that read configurations: a `key=value` filter and the keys in
//! which two runs differ.
use crate::config::Config;
use crate::events::EpochReport;
use crate::run_dir::RunSummary;

/// Keys that do not make two runs different experiments: the seed (what a group varies), the
/// name (a sweep names each run by its values) and `resume` (each stage 2 resumes its own
/// stage 1).
pub const NOT_COMPARED: [&str; 3] = ["seed", "name", "resume"];

/// Mean and sample standard deviation of `n` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation, `sqrt(Σ(x − mean)² / (n − 1))` (NumPy's `std(ddof=1)`); 0
    /// for one value.
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl MeanStd {
    /// Of `xs`; `None` when empty.
    pub fn of(xs: &[f64]) -> Option<MeanStd> {
        let n = xs.len();
        if n == 0 {
            return None;
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let std = match n {
            1 => 0.0,
            _ => (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt(),
        };
        Some(MeanStd { mean, std, n })
    }
}

impl std::fmt::Display for MeanStd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(2);
        write!(f, "{:.p$} ± {:.p$}", self.mean, self.std)
    }
}

/// The figures of a group, each as mean ± std over its runs: at the best epoch (highest top-1)
/// and at the last epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedGroup {
    /// The first run's name without its `_seed<k>` part.
    pub label: String,
    /// Seeds of the runs, in the order of `dirs`.
    pub seeds: Vec<u64>,
    /// The runs' folders.
    pub dirs: Vec<std::path::PathBuf>,
    /// Top-1 % at each run's best epoch.
    pub best_top1: Option<MeanStd>,
    /// ECE % at each run's best epoch.
    pub best_ece: Option<MeanStd>,
    /// NLL (nats) at each run's best epoch.
    pub best_nll: Option<MeanStd>,
    /// Top-1 % at each run's last epoch.
    pub last_top1: Option<MeanStd>,
    /// ECE % at each run's last epoch.
    pub last_ece: Option<MeanStd>,
    /// NLL at each run's last epoch.
    pub last_nll: Option<MeanStd>,
}

/// The epoch of highest top-1 (the first of equals, as the trainer's `is_best`).
pub fn best_epoch(epochs: &[EpochReport]) -> Option<&EpochReport> {
    epochs
        .iter()
        .fold(None, |best: Option<&EpochReport>, e| match best {
            Some(b) if b.eval.top1 >= e.eval.top1 => Some(b),
            _ => Some(e),
        })
}

/// The configuration as a comparable value, without [`NOT_COMPARED`] keys.
fn experiment_key(c: &Config) -> serde_yaml::Value {
    let mut v = serde_yaml::to_value(c).unwrap_or(serde_yaml::Value::Null);
    if let serde_yaml::Value::Mapping(m) = &mut v {
        for k in NOT_COMPARED {
            m.remove(k);
        }
    }
    v
}

/// Groups `runs` (with a readable configuration) whose configurations differ only in
/// [`NOT_COMPARED`] keys, in the order of their first run; runs without an evaluated epoch
/// count in `seeds` but not in the figures.
pub fn group_by_seed(runs: &[RunSummary]) -> Vec<SeedGroup> {
    let mut keys: Vec<serde_yaml::Value> = Vec::new();
    let mut members: Vec<Vec<&RunSummary>> = Vec::new();
    for r in runs {
        let Some(c) = &r.config else { continue };
        let key = experiment_key(c);
        match keys.iter().position(|k| *k == key) {
            Some(i) => members[i].push(r),
            None => {
                keys.push(key);
                members.push(vec![r]);
            }
        }
    }
    members.into_iter().map(|rs| group(&rs)).collect()
}

fn group(rs: &[&RunSummary]) -> SeedGroup {
    let seeds = rs
        .iter()
        .map(|r| r.config.as_ref().map_or(0, |c| c.seed))
        .collect();
    let best: Vec<&EpochReport> = rs.iter().filter_map(|r| best_epoch(&r.epochs)).collect();
    let last: Vec<&EpochReport> = rs.iter().filter_map(|r| r.epochs.last()).collect();
    let stat = |es: &[&EpochReport], f: fn(&EpochReport) -> f64| {
        MeanStd::of(&es.iter().map(|e| f(e)).collect::<Vec<_>>())
    };
    let name = rs[0]
        .config
        .as_ref()
        .map_or(rs[0].name.clone(), |c| c.name.clone());
    SeedGroup {
        label: strip_seed(&name),
        seeds,
        dirs: rs.iter().map(|r| r.dir.clone()).collect(),
        best_top1: stat(&best, |e| e.eval.top1),
        best_ece: stat(&best, |e| e.eval.ece),
        best_nll: stat(&best, |e| e.eval.nll),
        last_top1: stat(&last, |e| e.eval.top1),
        last_ece: stat(&last, |e| e.eval.ece),
        last_nll: stat(&last, |e| e.eval.nll),
    }
}

/// `name_seed3_lr0.1` → `name_lr0.1` (a sweep's name part for the seed).
fn strip_seed(name: &str) -> String {
    let parts: Vec<&str> = name.split('_').collect();
    parts
        .iter()
        .filter(|p| {
            !(p.starts_with("seed") && p.len() > 4 && p[4..].chars().all(|c| c.is_ascii_digit()))
        })
        .copied()
        .collect::<Vec<_>>()
        .join("_")
}

/// Whether `c` satisfies `filter`: `key=value` terms separated by spaces, all of which must
/// hold (values compared as the configuration writes them, so `lr=0.1` matches `lr 0.1`).
///
/// # Errors
/// A term is not `key=value`, or names no key (in words, with the term).
pub fn matches(c: &Config, filter: &str) -> Result<bool, String> {
    for term in filter.split_whitespace() {
        let Some((k, v)) = term.split_once('=') else {
            return Err(format!("'{term}': a filter term is key=value"));
        };
        let Some(have) = c.get(k) else {
            return Err(format!("'{k}' is not a configuration key"));
        };
        let mut probe = c.clone();
        let want = match probe.set(k, v) {
            Ok(()) => probe.get(k),
            Err(_) => Some(v.to_owned()),
        };
        if Some(have) != want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The keys whose values differ between `a` and `b`: `(key, a's value, b's value)`.
pub fn differing_keys(a: &Config, b: &Config) -> Vec<(String, String, String)> {
    b.changed_from(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EvalReport;

    fn epoch(e: usize, top1: f64, ece: f64, nll: f64) -> EpochReport {
        EpochReport {
            stage: crate::config::Stage::Stage1,
            epoch: e,
            num_epochs: 3,
            lr: vec![0.1],
            train_loss: 1.0,
            train_top1: 50.0,
            eval: EvalReport {
                samples: 100,
                top1,
                top5: 100.0,
                per_class: Vec::new(),
                head: top1,
                medium: top1,
                tail: top1,
                many_shot: None,
                medium_shot: None,
                few_shot: None,
                ece,
                mce: ece,
                nll,
                bins: Vec::new(),
            },
            best_top1: top1,
            best_ece: ece,
            is_best: false,
            train_seconds: 1.0,
            eval_seconds: 1.0,
            images_per_sec: 1.0,
        }
    }

    fn run(name: &str, seed: u64, lr: f64, epochs: Vec<EpochReport>) -> RunSummary {
        RunSummary {
            dir: format!("saved/{name}").into(),
            name: name.into(),
            stage: None,
            epochs,
            config: Some(Config {
                name: name.into(),
                seed,
                lr,
                ..Config::default()
            }),
            best_checkpoint: None,
        }
    }

    #[test]
    fn mean_and_sample_std_by_hand() {
        // 70, 72, 77: mean 73; deviations -3, -1, 4; Σ² = 26; /2 = 13; sqrt = 3.6055512754639896
        // (numpy.std([70, 72, 77], ddof=1)).
        let m = MeanStd::of(&[70.0, 72.0, 77.0]).unwrap();
        assert_eq!(m.mean, 73.0);
        assert!((m.std - 13f64.sqrt()).abs() < 1e-12);
        assert_eq!(m.n, 3);
        assert_eq!(format!("{m}"), "73.00 ± 3.61");
        assert_eq!(MeanStd::of(&[5.0]).unwrap().std, 0.0);
        assert!(MeanStd::of(&[]).is_none());
    }

    #[test]
    fn runs_differing_only_in_seed_form_one_group() {
        let runs = vec![
            run(
                "a_seed0",
                0,
                0.1,
                vec![epoch(0, 60.0, 5.0, 1.0), epoch(1, 70.0, 4.0, 0.9)],
            ),
            run(
                "a_seed1",
                1,
                0.1,
                vec![epoch(0, 66.0, 3.0, 0.8), epoch(1, 64.0, 6.0, 1.1)],
            ),
            run(
                "a_seed2",
                2,
                0.1,
                vec![epoch(0, 50.0, 9.0, 1.5), epoch(1, 77.0, 2.0, 0.7)],
            ),
            run("b", 0, 0.2, vec![epoch(0, 10.0, 1.0, 2.0)]),
        ];
        let groups = group_by_seed(&runs);
        assert_eq!(groups.len(), 2);
        let g = &groups[0];
        assert_eq!(g.label, "a");
        assert_eq!(g.seeds, [0, 1, 2]);
        // Best epochs: 70 (ECE 4, NLL 0.9), 66 (3, 0.8), 77 (2, 0.7).
        let best = g.best_top1.unwrap();
        assert!((best.mean - 71.0).abs() < 1e-12);
        // Deviations -1, -5, 6: Σ² = 62, /2 = 31.
        assert!((best.std - 31f64.sqrt()).abs() < 1e-12);
        assert!((g.best_ece.unwrap().mean - 3.0).abs() < 1e-12);
        assert!((g.best_ece.unwrap().std - 1.0).abs() < 1e-12);
        assert!((g.best_nll.unwrap().mean - 0.8).abs() < 1e-12);
        // Last epochs: 70, 64, 77 → mean 70.333…, ECE 4, 6, 2 → 4 ± 2.
        let last = g.last_top1.unwrap();
        assert!((last.mean - 211.0 / 3.0).abs() < 1e-12);
        assert!((g.last_ece.unwrap().mean - 4.0).abs() < 1e-12);
        assert!((g.last_ece.unwrap().std - 2.0).abs() < 1e-12);
        assert!((g.last_nll.unwrap().mean - 0.9).abs() < 1e-12);
        assert_eq!(groups[1].seeds, [0]);
        assert_eq!(groups[1].best_top1.unwrap().std, 0.0);
    }

    #[test]
    fn filter_and_differences() {
        let a = Config {
            lr: 0.1,
            seed: 1,
            ..Config::default()
        };
        let b = Config {
            lr: 0.2,
            seed: 1,
            ..Config::default()
        };
        assert_eq!(matches(&a, "lr=0.1"), Ok(true));
        assert_eq!(matches(&a, "lr=0.10 seed=1"), Ok(true));
        assert_eq!(matches(&b, "lr=0.1"), Ok(false));
        assert!(matches(&a, "lr").unwrap_err().contains("key=value"));
        assert!(matches(&a, "nope=1")
            .unwrap_err()
            .contains("not a configuration key"));
        let d = differing_keys(&a, &b);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].0, "lr");
    }
}
