//! Every method of a comparison scored on shifted test priors ([`super::shift`]): top-1 over
//! images, many/medium/few as means of per-class accuracy (SADE's figures), ECE, adaptive ECE,
//! NLL, Brier, over-confidence error and TACE, with paired bootstrap intervals of top-1 and
//! ECE; for prior-aware methods, the L1 error of the prior they moved to. Fitting stays on the
//! validation split; each shifted set is a subset of the scored split.
use super::bootstrap::{paired_bootstrap, Compact, Interval, MIN_BOOTSTRAP_IMAGES};
use super::estimators::{
    accuracy_per_class, adaptive_ece, overconfidence_error, tace, Group, Outputs, TACE_THRESHOLD,
};
use super::figure_intervals::{
    paired_calibration_intervals, CalibrationCompact, CalibrationIntervals,
};
use super::methods::{fit_methods, Base, BaseMethods, FittedMethod, Scoring};
use super::shift::{subsample, ShiftedSet, TestPrior};
use crate::metrics::{calibration, NUM_BINS};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;
use tch::Tensor;

/// Fewer images than this in a shifted set: its intervals are flagged as unreliable.
pub const FEW_IMAGES: usize = 100;

/// One method's figures on one shifted set. Percent except NLL (nats) and Brier ([0, 2]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorFigures {
    /// Images of the set.
    pub samples: usize,
    /// Top-1 over the images (micro).
    pub top1: f64,
    /// 95 % bootstrap interval of top-1.
    pub top1_ci: Interval,
    /// Mean per-class accuracy of the many-shot classes (training count > 100); `None` when
    /// the group is empty.
    pub many: Option<f64>,
    /// Same, medium-shot (20–100).
    pub medium: Option<f64>,
    /// Same, few-shot (< 20).
    pub few: Option<f64>,
    /// ECE, 15 equal-width bins.
    pub ece: f64,
    /// 95 % bootstrap interval of ECE.
    pub ece_ci: Interval,
    /// Adaptive ECE, 15 equal-mass bins.
    pub adaptive_ece: f64,
    /// Mean −ln p_y.
    pub nll: f64,
    /// Mean Brier score.
    pub brier: f64,
    /// Over-confidence error ([`overconfidence_error`]).
    pub oe: f64,
    /// TACE, threshold 0.01, 15 bins ([`tace`]).
    pub tace: f64,
    /// L1 distance of the prior a prior-aware step moved to from the set's true prior.
    pub prior_l1: Option<f64>,
    /// That prior `[K]`.
    pub prior: Option<Vec<f64>>,
    /// 95 % bootstrap intervals of adaptive ECE, NLL, Brier, OE and TACE, on the resamples of
    /// the top-1 and ECE intervals ([`super::figure_intervals`]); [0, 0] in files written
    /// before they were.
    #[serde(default)]
    pub intervals: CalibrationIntervals,
}

/// One method on one set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriorRow {
    /// The table's name.
    pub name: String,
    /// The method as written.
    pub spec: String,
    /// Its figures.
    pub figures: PriorFigures,
}

/// Every method on one shifted set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TestSetResult {
    /// The set (its indices into the scored split and their SHA-256).
    pub set: ShiftedSet,
    /// One per method, in the comparison's order.
    pub rows: Vec<PriorRow>,
}

/// The comparison under shifted test priors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TestPriorComparison {
    /// Seed of the subsets and of the bootstrap.
    pub seed: u64,
    /// Bootstrap draws.
    pub draws: usize,
    /// The scored sets, in the order asked.
    pub sets: Vec<TestSetResult>,
    /// Sets not drawn, with the reason.
    pub skipped: Vec<String>,
}

/// Scores every method of `bases` on each prior of `priors` (subsets of the scored split drawn
/// with `s.seed`); `log` hears one line per set.
///
/// # Errors
/// A class with no scored image, or NCM without class means.
pub fn score(
    bases: &[BaseMethods<'_>],
    s: &Scoring,
    priors: &[TestPrior],
    log: &mut dyn FnMut(&str),
) -> Result<TestPriorComparison> {
    score_with_lists(bases, s, priors, &[], log)
}

/// [`score`], with the sets of `lists` (read from SADE's list files, [`super::sade_lists`])
/// used for their priors instead of drawn ones.
///
/// # Errors
/// As [`score`].
pub fn score_with_lists(
    bases: &[BaseMethods<'_>],
    s: &Scoring,
    priors: &[TestPrior],
    lists: &[ShiftedSet],
    log: &mut dyn FnMut(&str),
) -> Result<TestPriorComparison> {
    let mut result = TestPriorComparison {
        seed: s.seed,
        draws: s.draws,
        ..Default::default()
    };
    let Some((first, _)) = bases.first() else {
        return Ok(result);
    };
    if priors.is_empty() {
        return Ok(result);
    }
    let fitted = fit_methods(bases, s)?;
    let labels = Vec::<i64>::try_from(&first.scored.labels)?;
    for &prior in priors {
        let listed = lists.iter().find(|l| l.prior == prior).cloned();
        let drawn = match listed {
            Some(l) => Some(l),
            None => subsample(&labels, &s.train_class_counts, prior, s.seed)?,
        };
        let too_small = |set: &ShiftedSet| set.indices.len() < MIN_BOOTSTRAP_IMAGES;
        let set = match drawn {
            Some(set) if !too_small(&set) => set,
            other => {
                let why = skip_reason(prior, other.as_ref(), &labels, s);
                log(&format!("=> warning: {why}"));
                result.skipped.push(why);
                continue;
            }
        };
        let n = set.indices.len();
        let out_rows = score_set(&fitted, &labels, &set, s)?;
        log(&format!(
            "=> test prior {}: {n} images{}, indices sha256 {}…{}",
            set.name,
            set.source
                .as_ref()
                .map_or(String::new(), |f| format!(" from SADE's list file {f}")),
            &set.sha256[..12],
            if n < FEW_IMAGES {
                " (warning: too few images for stable bootstrap intervals)"
            } else {
                ""
            }
        ));
        result.sets.push(TestSetResult {
            set,
            rows: out_rows,
        });
    }
    Ok(result)
}

/// Every fitted method on one set, with paired intervals of top-1 and ECE.
fn score_set(
    fitted: &[(&Base, FittedMethod)],
    labels: &[i64],
    set: &ShiftedSet,
    s: &Scoring,
) -> Result<Vec<PriorRow>> {
    let log_train = super::posthoc::log_prior(&s.train_class_counts);
    let all = [s.groups[0].clone()];
    let rows = Tensor::from_slice(&set.indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
    let sub: Vec<i64> = set.indices.iter().map(|&i| labels[i]).collect();
    let truth = set.true_prior();
    let mut out_rows = Vec::new();
    let mut compacts = Vec::new();
    let mut calibration_compacts = Vec::new();
    for (base, m) in fitted {
        let (z, moved) = m.logits_on(base, &rows, &truth, &log_train)?;
        let out = Outputs::from_logits(&z, sub.clone())?;
        compacts.push(Compact::of(&out, &all));
        calibration_compacts.push(CalibrationCompact::of(&out));
        out_rows.push(PriorRow {
            name: m.name.clone(),
            spec: m.spec.clone(),
            figures: figures_of(&out, &s.groups, moved, &truth),
        });
    }
    let intervals = paired_bootstrap(&compacts, 1, s.draws, s.seed)?;
    let more = paired_calibration_intervals(
        &calibration_compacts,
        s.draws,
        s.seed,
        super::bootstrap::DEFAULT_INTERVAL,
    )?;
    for ((r, iv), more) in out_rows.iter_mut().zip(intervals).zip(more) {
        r.figures.top1_ci = iv[0].top1;
        r.figures.ece_ci = iv[0].ece;
        r.figures.intervals = more;
    }
    Ok(out_rows)
}

/// Why a prior's set is skipped: ρ leaves the rarest class no image (no set), or the set is
/// too small for the bootstrap.
fn skip_reason(prior: TestPrior, set: Option<&ShiftedSet>, labels: &[i64], s: &Scoring) -> String {
    match set {
        None => format!(
            "{}: the rarest class would get 0 of the {} scored images per class (ρ too large for \
             this scored set); skipped",
            prior.name(),
            class_minimum(labels, s.train_class_counts.len())
        ),
        Some(set) => format!(
            "{}: {} images, too few for bootstrap intervals (at least {MIN_BOOTSTRAP_IMAGES}); \
             skipped",
            set.name,
            set.indices.len()
        ),
    }
}

fn class_minimum(labels: &[i64], k: usize) -> usize {
    let mut n = vec![0usize; k];
    for &y in labels {
        n[y as usize] += 1;
    }
    n.into_iter().min().unwrap_or(0)
}

/// The figures of one method's outputs on one set (intervals left at 0).
fn figures_of(
    out: &Outputs,
    groups: &[Group],
    moved: Option<Vec<f64>>,
    truth: &[f64],
) -> PriorFigures {
    let conf = &out.confidence;
    let ok: Vec<bool> = (0..out.len()).map(|i| out.correct(i)).collect();
    let (ece, _, _) = calibration(conf, &ok, NUM_BINS);
    let n = out.len().max(1) as f64;
    let per_class = accuracy_per_class(out);
    let shot = |name: &str| {
        let g = groups.iter().find(|g| g.name == name)?;
        let cls: Vec<f64> = (0..out.num_classes)
            .filter(|&c| g.classes[c])
            .map(|c| per_class[c])
            .collect();
        (!cls.is_empty()).then(|| cls.iter().sum::<f64>() / cls.len() as f64)
    };
    let zero = Interval { lo: 0.0, hi: 0.0 };
    PriorFigures {
        samples: out.len(),
        top1: 100.0 * ok.iter().filter(|&&b| b).count() as f64 / n,
        top1_ci: zero,
        many: shot("many"),
        medium: shot("medium"),
        few: shot("few"),
        ece: 100.0 * ece,
        ece_ci: zero,
        adaptive_ece: 100.0 * adaptive_ece(conf, &ok, NUM_BINS),
        nll: out.nll.iter().sum::<f64>() / n,
        brier: out.brier_per_sample().iter().sum::<f64>() / n,
        oe: 100.0 * overconfidence_error(conf, &ok),
        tace: 100.0 * tace(out, TACE_THRESHOLD, NUM_BINS),
        prior_l1: moved.as_ref().map(|q| super::prior::l1(q, truth)),
        prior: moved,
        intervals: CalibrationIntervals::default(),
    }
}

fn ci(v: f64, i: Interval) -> String {
    ci_digits(v, i, 2)
}

fn ci_digits(v: f64, i: Interval, digits: usize) -> String {
    format!("{v:.digits$} [{:.digits$}, {:.digits$}]", i.lo, i.hi)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The columns of `test_priors.csv`.
const CSV_HEADER: [&str; 31] = [
    "test_prior",
    "method",
    "spec",
    "samples",
    "top1",
    "top1_lo",
    "top1_hi",
    "many",
    "medium",
    "few",
    "ece",
    "ece_lo",
    "ece_hi",
    "adaptive_ece",
    "adaptive_ece_lo",
    "adaptive_ece_hi",
    "nll",
    "nll_lo",
    "nll_hi",
    "brier",
    "brier_lo",
    "brier_hi",
    "oe",
    "oe_lo",
    "oe_hi",
    "tace",
    "tace_lo",
    "tace_hi",
    "prior_l1",
    "indices_sha256",
    "list_file",
];

impl TestPriorComparison {
    /// One Markdown table per set: every method's figures.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "Shifted test priors (SADE's protocol): subsets of the scored images; fitting stays on \
             the validation split. Top-1 over images; many/medium/few: mean per-class accuracy. \
             95 % intervals (every figure but many/medium/few): basic bootstrap of the set's \
             images, ",
        );
        let _ = writeln!(s, "{} draws, seed {}.", self.draws, self.seed);
        for why in &self.skipped {
            let _ = writeln!(s, "\nSkipped: {why}.");
        }
        for t in &self.sets {
            let _ = writeln!(
                s,
                "\n### {} ({} images, {}, indices sha256 {})\n",
                t.set.name,
                t.set.indices.len(),
                t.set
                    .source
                    .as_ref()
                    .map_or("drawn".to_owned(), |f| format!("SADE's list file {f}")),
                t.set.sha256
            );
            let _ = writeln!(
                s,
                "| Method | Top-1 % [95 % CI] | many | med. | few | ECE % [95 % CI] | AECE % [95 % CI] | \
                 NLL [95 % CI] | Brier [95 % CI] | OE % [95 % CI] | TACE % [95 % CI] | prior L1 |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|");
            for r in &t.rows {
                let f = &r.figures;
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    ci(f.top1, f.top1_ci),
                    opt(f.many, 2),
                    opt(f.medium, 2),
                    opt(f.few, 2),
                    ci(f.ece, f.ece_ci),
                    ci(f.adaptive_ece, f.intervals.adaptive_ece),
                    ci_digits(f.nll, f.intervals.nll, 4),
                    ci_digits(f.brier, f.intervals.brier, 4),
                    ci(f.oe, f.intervals.oe),
                    ci_digits(f.tace, f.intervals.tace, 3),
                    opt(f.prior_l1, 4)
                );
            }
        }
        s
    }

    /// A compact terminal table: per set and method, top-1 and ECE with intervals, OE, TACE.
    pub fn text_table(&self) -> String {
        let mut s = String::new();
        for t in &self.sets {
            let _ = writeln!(
                s,
                "test prior {} ({} images)",
                t.set.name,
                t.set.indices.len()
            );
            for r in &t.rows {
                let f = &r.figures;
                let _ = writeln!(
                    s,
                    "  {:<28} top-1 {:>22} ECE {:>22} OE {:>6.2} TACE {:>6.3} prior L1 {}",
                    r.name,
                    ci(f.top1, f.top1_ci),
                    ci(f.ece, f.ece_ci),
                    f.oe,
                    f.tace,
                    opt(f.prior_l1, 4)
                );
            }
        }
        s
    }

    /// Writes `test_priors.csv` (one line per set and method), `test_priors.md` and
    /// `test_priors.json` (everything, the subsets' indices included) into `dir`. Nothing when
    /// no set was asked.
    ///
    /// # Errors
    /// A file cannot be written (its path and the reason).
    pub fn write(&self, dir: &Path) -> Result<()> {
        if self.sets.is_empty() && self.skipped.is_empty() {
            return Ok(());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.write_csv(&dir.join("test_priors.csv"))?;
        let md = dir.join("test_priors.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("cannot write {}", md.display()))?;
        let json = dir.join("test_priors.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        Ok(())
    }

    /// `test_priors.csv`: one line per set and method.
    fn write_csv(&self, csv_path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_path(csv_path)
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        w.write_record(CSV_HEADER)?;
        let num = |v: f64| format!("{v:.6}");
        let on = |v: Option<f64>| v.map_or(String::new(), num);
        for t in &self.sets {
            for r in &t.rows {
                let f = &r.figures;
                w.write_record([
                    t.set.name.clone(),
                    r.name.clone(),
                    r.spec.clone(),
                    f.samples.to_string(),
                    num(f.top1),
                    num(f.top1_ci.lo),
                    num(f.top1_ci.hi),
                    on(f.many),
                    on(f.medium),
                    on(f.few),
                    num(f.ece),
                    num(f.ece_ci.lo),
                    num(f.ece_ci.hi),
                    num(f.adaptive_ece),
                    num(f.intervals.adaptive_ece.lo),
                    num(f.intervals.adaptive_ece.hi),
                    num(f.nll),
                    num(f.intervals.nll.lo),
                    num(f.intervals.nll.hi),
                    num(f.brier),
                    num(f.intervals.brier.lo),
                    num(f.intervals.brier.hi),
                    num(f.oe),
                    num(f.intervals.oe.lo),
                    num(f.intervals.oe.hi),
                    num(f.tace),
                    num(f.intervals.tace.lo),
                    num(f.intervals.tace.hi),
                    on(f.prior_l1),
                    t.set.sha256.clone(),
                    t.set.source.clone().unwrap_or_default(),
                ])?;
            }
        }
        w.flush()
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::methods::{run_methods, Base, MethodSpec, View};
    use tch::{Device, Kind};

    /// K = 5 classes, `per_class` images each, features near a class direction, the logits
    /// of a random-ish linear classifier biased toward class 0 (a long-tailed model).
    fn view(per_class: i64, seed: i64) -> (View, Tensor) {
        tch::manual_seed(seed);
        let (k, f) = (5i64, 8i64);
        let opts = (Kind::Float, Device::Cpu);
        let labels = Tensor::arange(k, (Kind::Int64, Device::Cpu)).repeat([per_class]);
        let dirs = Tensor::randn([k, f], opts);
        let features =
            dirs.index_select(0, &labels) * 1.2 + Tensor::randn([k * per_class, f], opts);
        let weight = &dirs + Tensor::randn([k, f], opts) * 0.3;
        let bias = Tensor::from_slice(&[1.5f32, 0.8, 0.2, -0.5, -1.0]);
        let logits = features.mm(&weight.tr()) * 1.8 + bias;
        (
            View {
                features,
                logits,
                labels,
            },
            weight,
        )
    }

    fn setup() -> (Base, Scoring) {
        let (val, weight) = view(60, 1);
        let (scored, _) = view(80, 2);
        let counts = vec![900, 300, 90, 30, 9];
        let groups = Group::standard(&counts, [0, 2], [2, 4], [4, 5]);
        let base = Base {
            val,
            scored,
            weight,
            class_means: None,
        };
        let s = Scoring {
            groups,
            train_class_counts: counts,
            draws: 50,
            seed: 4,
        };
        (base, s)
    }

    const SPECS: [&str; 7] = [
        "ce",
        "ce+ts",
        "ce+la",
        "ce+em",
        "ce+ts+bbse",
        "ce+la-q+ts",
        "ce+em+vs",
    ];

    #[test]
    fn uniform_at_full_size_equals_the_scored_split() {
        let (base, s) = setup();
        let specs: Vec<MethodSpec> = SPECS
            .iter()
            .map(|w| MethodSpec::parse(w).unwrap())
            .collect();
        let per_base = vec![(&base, specs.iter().map(|m| (m, "CE".to_owned())).collect())];
        let main = run_methods(&per_base, &s, &mut |_| {}).unwrap();
        let shifted = score(&per_base, &s, &[TestPrior::Uniform], &mut |_| {}).unwrap();
        let set = &shifted.sets[0];
        assert_eq!(set.set.indices, (0..400).collect::<Vec<_>>());
        for (m, r) in main.iter().zip(&set.rows) {
            let (a, b) = (&m.figures[0], &r.figures);
            assert_eq!(m.spec, r.spec);
            assert_eq!(
                (a.samples, a.top1, a.ece, a.adaptive_ece, a.nll, a.brier),
                (b.samples, b.top1, b.ece, b.adaptive_ece, b.nll, b.brier),
                "{}",
                m.spec
            );
            assert_eq!(
                (m.intervals[0].top1, m.intervals[0].ece),
                (b.top1_ci, b.ece_ci)
            );
            // On a balanced set the mean per-class accuracy of a group is its micro top-1.
            let many = s.groups.iter().position(|g| g.name == "many").unwrap();
            assert!((b.many.unwrap() - m.figures[many].top1).abs() < 1e-9);
        }
        // The estimated priors of EM and BBSE are reported with their L1 error.
        for r in &set.rows[3..5] {
            let q = r.figures.prior.as_ref().unwrap();
            assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{q:?}");
            let l1 = crate::compare::prior::l1(q, &[0.2; 5]);
            assert!((r.figures.prior_l1.unwrap() - l1).abs() < 1e-12);
        }
        assert!(set.rows[0].figures.prior_l1.is_none());
        let known = &set.rows[5].figures;
        assert!(known.prior_l1.unwrap().abs() < 1e-12);
    }

    #[test]
    fn shifted_sets_are_scored_and_em_tracks_the_prior() {
        let (base, s) = setup();
        let specs: Vec<MethodSpec> = SPECS
            .iter()
            .map(|w| MethodSpec::parse(w).unwrap())
            .collect();
        let per_base = vec![(&base, specs.iter().map(|m| (m, "CE".to_owned())).collect())];
        let priors = TestPrior::parse_list("forward50,backward50").unwrap();
        let shifted = score(&per_base, &s, &priors, &mut |_| {}).unwrap();
        assert_eq!(shifted.sets.len(), 2);
        let f50 = &shifted.sets[0];
        // 80 per class: ⌊80·50^(−r/4)⌋ = 80, 30, 11, 4, 1.
        assert_eq!(f50.set.class_counts, vec![80, 30, 11, 4, 1]);
        assert_eq!(f50.rows[0].figures.samples, 126);
        for t in &shifted.sets {
            let em = t.rows[3].figures.prior_l1.unwrap();
            let source = crate::compare::prior::l1(&[0.2; 5], &t.set.true_prior());
            assert!(
                em < source,
                "{}: EM L1 {em} vs uniform {source}",
                t.set.name
            );
            for r in &t.rows {
                let f = &r.figures;
                assert!(
                    f.top1_ci.lo <= f.top1 && f.top1 <= f.top1_ci.hi,
                    "{} {f:?}",
                    r.spec
                );
                assert!((0.0..=100.0).contains(&f.oe) && f.oe <= f.ece + 1e-9);
                assert!((0.0..=100.0).contains(&f.tace));
                // The new intervals are drawn: a mean lies inside its basic interval.
                let iv = &f.intervals;
                for (v, i, what) in [(f.nll, iv.nll, "NLL"), (f.brier, iv.brier, "Brier")] {
                    assert!(i.lo < v && v < i.hi, "{} {what} {v} {i:?}", r.spec);
                }
                assert!(iv.tace.hi > iv.tace.lo && iv.adaptive_ece.hi > iv.adaptive_ece.lo);
            }
        }
        let md = shifted.markdown();
        assert!(
            md.contains("### forward50 (126 images, drawn, indices")
                && md.contains("CE + TS + BBSE")
        );
        let mut lines = Vec::new();
        let too_far = score(&per_base, &s, &[], &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(too_far.sets.is_empty() && lines.is_empty());
    }

    /// Bad input of issue 21: a ρ that leaves the rarest class no image, and a set too small
    /// for the bootstrap, are each said (log and `skipped`, and the Markdown) and skipped.
    #[test]
    fn empty_classes_and_tiny_sets_are_said_and_skipped() {
        let (mut base, s) = setup();
        // 3 scored images per class: forward50 gives the rarest class ⌊3/50⌋ = 0; forward2
        // gives 3, 2, 2, 1, 1 = 9 images (< 20); uniform 15 (< 20).
        base.scored = view(3, 2).0;
        let specs = [MethodSpec::parse("ce+ts").unwrap()];
        let per_base = vec![(&base, specs.iter().map(|m| (m, "CE".to_owned())).collect())];
        let priors = TestPrior::parse_list("forward50,forward2,uniform").unwrap();
        let mut lines = Vec::new();
        let r = score(&per_base, &s, &priors, &mut |l| lines.push(l.to_owned())).unwrap();
        assert!(r.sets.is_empty());
        assert_eq!(
            r.skipped,
            vec![
                "forward50: the rarest class would get 0 of the 3 scored images per class (ρ too \
                 large for this scored set); skipped"
                    .to_owned(),
                "forward2: 9 images, too few for bootstrap intervals (at least 20); skipped"
                    .to_owned(),
                "uniform: 15 images, too few for bootstrap intervals (at least 20); skipped"
                    .to_owned(),
            ]
        );
        assert_eq!(lines.len(), 3);
        assert!(
            lines.iter().all(|l| l.starts_with("=> warning: ")),
            "{lines:?}"
        );
        assert!(r.markdown().contains("\nSkipped: forward2: 9 images"));
    }
}
