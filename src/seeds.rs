//! Runs that differ only in `seed`: grouped, with the mean and sample standard deviation of
//! their figures over seeds, so that a reader sees how large a difference must be to matter.
//! Also the two helpers of the runs screen that read configurations: a `key=value` filter and
//! the keys in which two runs differ.
//!
//! A group is one run per seed: a seed run twice (a repeat, a resumed copy) enters the figures
//! once, and a run that did not finish (stopped, failed, still training: fewer evaluated epochs
//! than its stage has) does not enter them at all. Both stay in the group's list of runs
//! ([`SeedGroup::members`]), so that nothing is hidden. Used by the runs screen (`g`) and
//! usable by any front end: it reads only [`RunSummary`]s.
use crate::config::Config;
use crate::events::EpochReport;
use crate::run_dir::RunSummary;
use std::path::PathBuf;

/// Keys that do not make two runs different experiments: the seed (what a group varies), the
/// name (a sweep names each run by its values) and `resume` (each stage 2 resumes its own
/// stage 1).
pub const NOT_COMPARED: [&str; 3] = ["seed", "name", "resume"];

/// Mean and sample standard deviation of `n` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanStd {
    /// Arithmetic mean.
    pub mean: f64,
    /// Sample standard deviation, `sqrt(Σ(x − mean)² / (n − 1))` (NumPy's `std(ddof=1)`);
    /// `None` for one value, where it is undefined (not 0: one seed says nothing of the spread).
    pub std: Option<f64>,
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
        let std = (n > 1)
            .then(|| (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Some(MeanStd { mean, std, n })
    }

    /// `mean±std` with `p` decimals, `mean±—` when the std is undefined (one value).
    pub fn compact(&self, p: usize) -> String {
        match self.std {
            Some(s) => format!("{:.p$}±{s:.p$}", self.mean),
            None => format!("{:.p$}±—", self.mean),
        }
    }
}

impl std::fmt::Display for MeanStd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = f.precision().unwrap_or(2);
        match self.std {
            Some(s) => write!(f, "{:.p$} ± {s:.p$}", self.mean),
            None => write!(f, "{:.p$} ± —", self.mean),
        }
    }
}

/// What a run of a group is to its figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The run of its seed that enters the figures.
    Used,
    /// Finished, but its seed is already counted by an earlier-finished run.
    Duplicate,
    /// Not finished (fewer evaluated epochs than its stage has): no figure of it counts.
    Unfinished,
}

impl Role {
    /// A word for the group's list of runs.
    pub fn label(self) -> &'static str {
        match self {
            Role::Used => "used",
            Role::Duplicate => "duplicate seed",
            Role::Unfinished => "not finished",
        }
    }
}

/// One run of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The run's folder.
    pub dir: PathBuf,
    /// Its folder name.
    pub name: String,
    /// Its configuration's seed.
    pub seed: u64,
    /// Whether (and why not) it enters the figures.
    pub role: Role,
    /// Top-1 % at its best epoch (highest top-1), when it has an evaluated epoch.
    pub best_top1: Option<f64>,
    /// Top-1 % at its last evaluated epoch.
    pub last_top1: Option<f64>,
    /// ECE % at its last evaluated epoch.
    pub last_ece: Option<f64>,
}

/// A configuration's runs over seeds, with the figures of its [`Role::Used`] runs (one per
/// seed), each as mean ± sample std: at the best epoch (highest top-1) and at the last.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedGroup {
    /// The configuration's name without its `_seed<k>` part (a sweep's); the distinct ones
    /// joined by ` / ` when its runs were named differently.
    pub label: String,
    /// The seeds that enter the figures, ascending: one run each.
    pub seeds: Vec<u64>,
    /// Every run of the configuration, in the order given (newest first on the runs screen).
    pub members: Vec<Member>,
    /// Top-1 % at each used run's best epoch.
    pub best_top1: Option<MeanStd>,
    /// ECE % at each used run's best epoch.
    pub best_ece: Option<MeanStd>,
    /// NLL (nats) at each used run's best epoch.
    pub best_nll: Option<MeanStd>,
    /// Top-1 % at each used run's last epoch.
    pub last_top1: Option<MeanStd>,
    /// ECE % at each used run's last epoch.
    pub last_ece: Option<MeanStd>,
    /// NLL at each used run's last epoch.
    pub last_nll: Option<MeanStd>,
}

impl SeedGroup {
    /// Runs of the group with `role`.
    pub fn count(&self, role: Role) -> usize {
        self.members.iter().filter(|m| m.role == role).count()
    }
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

/// Whether `r` finished: its last evaluated epoch is the last of its stage (the epochs of the
/// last record, else of its configuration), as the runs screen's "✓ done" has it.
pub fn finished(r: &RunSummary) -> bool {
    let total = r
        .epochs
        .last()
        .map(|e| e.num_epochs)
        .or(r.config.as_ref().map(|c| c.num_epochs));
    let done = r.epochs.last().map_or(0, |e| e.epoch + 1);
    total.is_some_and(|t| t > 0 && done >= t)
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

/// Groups `runs` (those with a readable configuration) whose configurations differ only in
/// [`NOT_COMPARED`] keys, in the order of their first run.
///
/// `runs` come newest first, as [`crate::run_dir::list_runs`] gives them (by the time their
/// `metrics.jsonl` last changed). Of the finished runs of one seed, the one that finished
/// first — the last of them in `runs` — is used; the others are [`Role::Duplicate`]s. The first
/// is the run the seed was planned for (a sweep's), and choosing it before seeing the figures
/// means a seed run again cannot replace its figure by a better one.
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

/// The roles of `rs` (newest first): per seed, the earliest-finished run is used.
fn roles(rs: &[&RunSummary]) -> Vec<Role> {
    let seed = |r: &RunSummary| r.config.as_ref().map_or(0, |c| c.seed);
    let mut out = vec![Role::Unfinished; rs.len()];
    let mut counted: Vec<u64> = Vec::new();
    for i in (0..rs.len()).rev() {
        if !finished(rs[i]) {
            continue;
        }
        let s = seed(rs[i]);
        out[i] = match counted.contains(&s) {
            true => Role::Duplicate,
            false => {
                counted.push(s);
                Role::Used
            }
        };
    }
    out
}

fn group(rs: &[&RunSummary]) -> SeedGroup {
    let roles = roles(rs);
    let members: Vec<Member> = rs
        .iter()
        .zip(&roles)
        .map(|(r, &role)| Member {
            dir: r.dir.clone(),
            name: r.name.clone(),
            seed: r.config.as_ref().map_or(0, |c| c.seed),
            role,
            best_top1: best_epoch(&r.epochs).map(|e| e.eval.top1),
            last_top1: r.epochs.last().map(|e| e.eval.top1),
            last_ece: r.epochs.last().map(|e| e.eval.ece),
        })
        .collect();
    let used: Vec<&RunSummary> = rs
        .iter()
        .zip(&roles)
        .filter(|(_, &role)| role == Role::Used)
        .map(|(r, _)| *r)
        .collect();
    let best: Vec<&EpochReport> = used.iter().filter_map(|r| best_epoch(&r.epochs)).collect();
    let last: Vec<&EpochReport> = used.iter().filter_map(|r| r.epochs.last()).collect();
    let stat = |es: &[&EpochReport], f: fn(&EpochReport) -> f64| {
        MeanStd::of(&es.iter().map(|e| f(e)).collect::<Vec<_>>())
    };
    let mut seeds: Vec<u64> = members
        .iter()
        .filter(|m| m.role == Role::Used)
        .map(|m| m.seed)
        .collect();
    seeds.sort_unstable();
    SeedGroup {
        label: label(rs),
        seeds,
        members,
        best_top1: stat(&best, |e| e.eval.top1),
        best_ece: stat(&best, |e| e.eval.ece),
        best_nll: stat(&best, |e| e.eval.nll),
        last_top1: stat(&last, |e| e.eval.top1),
        last_ece: stat(&last, |e| e.eval.ece),
        last_nll: stat(&last, |e| e.eval.nll),
    }
}

/// The configurations' names without their seed part, distinct, oldest run's first.
fn label(rs: &[&RunSummary]) -> String {
    let mut names: Vec<String> = Vec::new();
    for r in rs.iter().rev() {
        let n = strip_seed(r.config.as_ref().map_or(&r.name, |c| &c.name));
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names.join(" / ")
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
            num_epochs: 2,
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
        assert_eq!(m.n, 3);
        assert!((m.std.unwrap() - 13f64.sqrt()).abs() < 1e-12);
        assert_eq!(format!("{m}"), "73.00 ± 3.61");
        assert_eq!(m.compact(1), "73.0±3.6");
        // One value: the sample std is undefined (NumPy gives nan with ddof=1), not 0.
        let one = MeanStd::of(&[5.0]).unwrap();
        assert_eq!(one.std, None);
        assert_eq!(format!("{one}"), "5.00 ± —");
        assert_eq!(one.compact(2), "5.00±—");
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
            run(
                "b",
                0,
                0.2,
                vec![epoch(0, 10.0, 1.0, 2.0), epoch(1, 12.0, 1.0, 2.0)],
            ),
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
        assert!((best.std.unwrap() - 31f64.sqrt()).abs() < 1e-12);
        assert!((g.best_ece.unwrap().mean - 3.0).abs() < 1e-12);
        assert!((g.best_ece.unwrap().std.unwrap() - 1.0).abs() < 1e-12);
        assert!((g.best_nll.unwrap().mean - 0.8).abs() < 1e-12);
        // Last epochs: 70, 64, 77 → mean 70.333…, ECE 4, 6, 2 → 4 ± 2.
        let last = g.last_top1.unwrap();
        assert!((last.mean - 211.0 / 3.0).abs() < 1e-12);
        assert!((g.last_ece.unwrap().mean - 4.0).abs() < 1e-12);
        assert!((g.last_ece.unwrap().std.unwrap() - 2.0).abs() < 1e-12);
        assert!((g.last_nll.unwrap().mean - 0.9).abs() < 1e-12);
        assert_eq!(groups[1].seeds, [0]);
        assert_eq!(groups[1].best_top1.unwrap().std, None);
    }

    /// NumPy's mean and `std(ddof=1)` of `xs`, computed by the venv's Python.
    fn numpy_mean_std(xs: &[f64]) -> (f64, f64) {
        const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
        let list: Vec<String> = xs.iter().map(|x| format!("{x:?}")).collect();
        let script = format!(
            "import numpy as np; x = np.array([{}]); print(repr(float(x.mean())), repr(float(x.std(ddof=1))))",
            list.join(", ")
        );
        let out = std::process::Command::new(PYTHON)
            .args(["-c", &script])
            .output()
            .expect("the venv's Python runs (scripts/setup.sh links it)");
        assert!(out.status.success(), "numpy failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let v: Vec<f64> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        (v[0], v[1])
    }

    /// The field's case (issue 18): a `--grid seed 0,1` sweep (32.96 %, 18.19 %), the same
    /// configuration run again with seed 0 (32.97 %), and a stopped run without figures. One
    /// run per seed, finished runs only: n 2, 25.58 ± 10.44 — not n 4, 28.04 ± 8.53.
    #[test]
    fn a_group_is_one_finished_run_per_seed() {
        let done = |top1| vec![epoch(0, 10.0, 9.0, 3.0), epoch(1, top1, 2.0, 1.0)];
        // Newest first, as `list_runs` gives them.
        let runs = vec![
            run("a_seed2", 2, 0.1, Vec::new()),
            run("a", 0, 0.1, done(32.97)),
            run("a_seed1", 1, 0.1, done(18.19)),
            run("a_seed0", 0, 0.1, done(32.96)),
        ];
        let groups = group_by_seed(&runs);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.label, "a");
        assert_eq!(g.seeds, [0, 1]);
        let roles: Vec<Role> = g.members.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [Role::Unfinished, Role::Duplicate, Role::Used, Role::Used]
        );
        assert_eq!(g.count(Role::Duplicate), 1);
        let (mean, std) = numpy_mean_std(&[32.96, 18.19]);
        let top1 = g.last_top1.unwrap();
        assert_eq!(top1.n, 2);
        assert!((top1.mean - mean).abs() < 1e-12, "{top1:?} vs {mean}");
        assert!((top1.std.unwrap() - std).abs() < 1e-12, "{top1:?} vs {std}");
        assert_eq!(top1.compact(2), "25.58±10.44");
        assert_eq!(g.best_top1, g.last_top1);
        // The ECE and NLL come from the same two runs (2 each: std 0, defined).
        assert_eq!(g.last_ece.unwrap().n, 2);
        assert_eq!(g.last_ece.unwrap().std, Some(0.0));
        // A group of only unfinished runs has no figure, and no seed.
        let g = &group_by_seed(&runs[..1])[0];
        assert!(g.seeds.is_empty() && g.last_top1.is_none());
        // Names of one configuration that differ beyond the seed are all in the label.
        let mut other = runs[1].clone();
        other.config.as_mut().unwrap().name = "b".into();
        assert_eq!(group_by_seed(&[other, runs[3].clone()])[0].label, "a / b");
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
