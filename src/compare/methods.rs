//! A method of the comparison: a base (the outputs of one checkpoint: stage 1, or a trained
//! classifier stage such as cRT, LWS or MiSLAS) followed by post-hoc steps, each fitted on the
//! validation split; and the scoring of it on the scored split.
use super::bootstrap::{paired_bootstrap, Compact, GroupIntervals};
use super::estimators::{
    accuracy_per_class, classwise_ece, figures, overconfidence_per_class, Figures, Group, Outputs,
};
use super::posthoc::{self, Fitted};
use super::prior;
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tch::Tensor;

/// A post-hoc step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Step {
    /// τ-norm of the classifier weights (replaces the logits; first step only).
    TauNorm,
    /// Nearest class mean, cosine (replaces the logits; first step only).
    Ncm,
    /// Post-hoc logit adjustment.
    LogitAdjustment,
    /// Temperature scaling.
    Temperature,
    /// Vector scaling: a scale and a shift per class (Guo et al. 2017, §4.2).
    Vector,
    /// Logit adjustment toward the test set's known prior q: `z − τ·ln π + τ·ln q`, τ fitted
    /// as for [`Step::LogitAdjustment`] ([`super::prior`]).
    LaTarget,
    /// EM / MLLS prior estimate on the test images, then the posterior correction.
    Em,
    /// BBSE prior estimate (confusion matrix of the validation split), then the posterior
    /// correction.
    Bbse,
}

impl Step {
    /// The name a method list uses: `tau-norm`, `ncm`, `la`, `ts`, `vs`.
    pub fn word(self) -> &'static str {
        match self {
            Step::TauNorm => "tau-norm",
            Step::Ncm => "ncm",
            Step::LogitAdjustment => "la",
            Step::Temperature => "ts",
            Step::Vector => "vs",
            Step::LaTarget => "la-q",
            Step::Em => "em",
            Step::Bbse => "bbse",
        }
    }

    /// The name in tables: `τ-norm`, `NCM`, `LA`, `TS`, `VS`.
    pub fn label(self) -> &'static str {
        match self {
            Step::TauNorm => "τ-norm",
            Step::Ncm => "NCM",
            Step::LogitAdjustment => "LA",
            Step::Temperature => "TS",
            Step::Vector => "VS",
            Step::LaTarget => "LA→q",
            Step::Em => "EM",
            Step::Bbse => "BBSE",
        }
    }

    /// Whether the step moves the posteriors to the test set's prior (known or estimated):
    /// on the validation split it moves toward that split's class frequencies, on a test set
    /// it depends on that set.
    pub fn is_prior_aware(self) -> bool {
        matches!(self, Step::LaTarget | Step::Em | Step::Bbse)
    }
}

/// A method: a base and its post-hoc steps, written `BASE[+STEP…]`, e.g. `ce`, `ce+tau-norm`,
/// `mislas+ts` (BASE `ce` is the stage-1 checkpoint; other bases name trained checkpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSpec {
    /// The base's name.
    pub base: String,
    /// The post-hoc steps, in order.
    pub steps: Vec<Step>,
}

impl MethodSpec {
    /// Parses `BASE[+STEP…]`.
    ///
    /// # Errors
    /// An unknown step, an empty base, or τ-norm/NCM after another step (they replace the
    /// logits, so whatever came before would be lost).
    pub fn parse(text: &str) -> Result<Self> {
        let mut parts = text.split('+').map(str::trim);
        let base = parts.next().unwrap_or_default().to_owned();
        if base.is_empty() {
            bail!("method '{text}': expected BASE[+STEP…], e.g. ce+ts");
        }
        let mut steps = Vec::new();
        for w in parts {
            let step = match w {
                "tau-norm" | "taunorm" | "τ-norm" => Step::TauNorm,
                "ncm" => Step::Ncm,
                "la" => Step::LogitAdjustment,
                "ts" => Step::Temperature,
                "vs" => Step::Vector,
                "la-q" => Step::LaTarget,
                "em" => Step::Em,
                "bbse" => Step::Bbse,
                other => bail!(
                    "method '{text}': unknown post-hoc step '{other}' (expected tau-norm, ncm, \
                     la, ts, vs, la-q, em or bbse)"
                ),
            };
            if step.is_prior_aware() && steps.iter().any(|s: &Step| s.is_prior_aware()) {
                bail!("method '{text}': at most one of la-q, em and bbse");
            }
            if matches!(step, Step::TauNorm | Step::Ncm) && !steps.is_empty() {
                bail!(
                    "method '{text}': {} replaces the logits, so it must come right after the \
                     base",
                    w
                );
            }
            if steps.contains(&step) {
                bail!("method '{text}': {w} twice");
            }
            steps.push(step);
        }
        Ok(MethodSpec { base, steps })
    }

    /// The method as written with the canonical step names: `ce+tau-norm+ts`.
    pub fn canonical(&self) -> String {
        std::iter::once(self.base.as_str())
            .chain(self.steps.iter().map(|st| st.word()))
            .collect::<Vec<_>>()
            .join("+")
    }

    /// The name in tables: `CE + τ-norm + TS`.
    pub fn label(&self, base_label: &str) -> String {
        std::iter::once(base_label)
            .chain(self.steps.iter().map(|s| s.label()))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}

/// One split's cached outputs: features `[N, F]`, logits `[N, K]`, labels `[N]` (int64), CPU.
#[derive(Debug)]
pub struct View {
    /// `[N, F]`.
    pub features: Tensor,
    /// `[N, K]`.
    pub logits: Tensor,
    /// `[N]` int64.
    pub labels: Tensor,
}

impl View {
    /// Rows `idx` of a cache's tensors.
    pub fn select(features: &Tensor, logits: &Tensor, labels: &[i64], idx: &[usize]) -> View {
        let i = Tensor::from_slice(&idx.iter().map(|&i| i as i64).collect::<Vec<_>>());
        View {
            features: features.index_select(0, &i),
            logits: logits.index_select(0, &i),
            labels: Tensor::from_slice(labels).index_select(0, &i),
        }
    }
}

/// A base's outputs on the validation and scored splits, its classifier weight `[K, F]` and
/// NCM's class means `[K, F]` (from the training features; `None` when not computed).
#[derive(Debug)]
pub struct Base {
    /// Validation split.
    pub val: View,
    /// Scored split.
    pub scored: View,
    /// Classifier weight `[K, F]`.
    pub weight: Tensor,
    /// NCM class means `[K, F]`.
    pub class_means: Option<Tensor>,
}

/// The figures of one method on the scored split.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MethodResult {
    /// The table's name, e.g. `CE + τ-norm`.
    pub name: String,
    /// The method as written (`ce+tau-norm`).
    pub spec: String,
    /// What each post-hoc step was fitted to.
    pub fitted: Vec<Fitted>,
    /// Figures of each group, in the order of the comparison's groups.
    pub figures: Vec<Figures>,
    /// 95 % bootstrap intervals of each group.
    pub intervals: Vec<GroupIntervals>,
    /// Accuracy of each class, %.
    pub per_class_accuracy: Vec<f64>,
    /// Mean confidence minus accuracy of each class, percentage points.
    pub per_class_overconfidence: Vec<f64>,
}

/// Everything scoring needs besides the method.
#[derive(Debug, Clone)]
pub struct Scoring {
    /// Groups the figures are reported for.
    pub groups: Vec<Group>,
    /// Training images per class (logit adjustment's prior).
    pub train_class_counts: Vec<usize>,
    /// Bootstrap draws.
    pub draws: usize,
    /// Bootstrap seed (the same for every method: paired intervals).
    pub seed: u64,
}

/// A method's logits after some of its steps: on the validation and scored splits, with what
/// each step was fitted to.
#[derive(Debug)]
struct Applied {
    val: Tensor,
    scored: Tensor,
    fitted: Vec<Fitted>,
}

impl Applied {
    fn base(base: &Base) -> Applied {
        Applied {
            val: base.val.logits.shallow_clone(),
            scored: base.scored.logits.shallow_clone(),
            fitted: Vec::new(),
        }
    }

    /// `step` fitted on the validation logits so far and applied to both splits.
    fn then(&self, step: Step, base: &Base, prior: &Tensor) -> Result<Applied> {
        let (val, scored, f) = match step {
            Step::TauNorm => {
                let f = posthoc::fit_tau_norm(
                    &base.val.features,
                    &base.val.labels,
                    &base.weight,
                    &posthoc::tau_norm_grid(),
                )?;
                let Fitted::TauNorm { tau, .. } = f else {
                    unreachable!()
                };
                let logits = |v: &View| posthoc::tau_norm_logits(&v.features, &base.weight, tau);
                (logits(&base.val), logits(&base.scored), f)
            }
            Step::Ncm => {
                let Some(means) = &base.class_means else {
                    bail!("NCM needs the training features' class means");
                };
                let logits = |v: &View| posthoc::ncm_logits(&v.features, means);
                (logits(&base.val), logits(&base.scored), Fitted::Ncm)
            }
            Step::LogitAdjustment => {
                let f = posthoc::fit_logit_adjustment(
                    &self.val,
                    &base.val.labels,
                    prior,
                    &posthoc::logit_adjustment_grid(),
                )?;
                let Fitted::LogitAdjustment { tau, .. } = f else {
                    unreachable!()
                };
                let adjust = |z: &Tensor| posthoc::adjust_logits(z, prior, tau);
                (adjust(&self.val), adjust(&self.scored), f)
            }
            Step::Temperature => {
                let f = posthoc::fit_temperature(&self.val, &base.val.labels);
                let Fitted::Temperature { t, .. } = f else {
                    unreachable!()
                };
                (&self.val / t, &self.scored / t, f)
            }
            Step::Vector => {
                let f = posthoc::fit_vector_scaling(&self.val, &base.val.labels)?;
                let Fitted::Vector { scale, shift, .. } = &f else {
                    unreachable!()
                };
                let (a, b) = (Tensor::from_slice(scale), Tensor::from_slice(shift));
                let apply = |z: &Tensor| posthoc::vector_scale(z, &a, &b);
                (apply(&self.val), apply(&self.scored), f)
            }
            Step::LaTarget | Step::Em | Step::Bbse => self.prior_step(step, base, prior)?,
        };
        let mut fitted = self.fitted.clone();
        fitted.push(f);
        Ok(Applied {
            val,
            scored,
            fitted,
        })
    }
}

impl Applied {
    /// A prior-aware step on the validation split (toward its own class frequencies,
    /// [`prior::Correction::on_validation`]) and on the whole scored split (toward its true
    /// prior for `la-q`, its estimate for EM/BBSE).
    fn prior_step(
        &self,
        step: Step,
        base: &Base,
        log_train: &Tensor,
    ) -> Result<(Tensor, Tensor, Fitted)> {
        let val_labels = Vec::<i64>::try_from(&base.val.labels)?;
        let scored_labels = Vec::<i64>::try_from(&base.scored.labels)?;
        let k = log_train.size()[0] as usize;
        let truth = prior::label_frequencies(&scored_labels, k);
        let la = match step {
            Step::LaTarget => Some(posthoc::fit_logit_adjustment(
                &self.val,
                &base.val.labels,
                log_train,
                &posthoc::logit_adjustment_grid(),
            )?),
            _ => None,
        };
        let tau = match &la {
            Some(Fitted::LogitAdjustment { tau, .. }) => *tau,
            _ => 1.0,
        };
        let correction = prior::Correction {
            estimator: estimator_of(step),
            val_logits: &self.val,
            val_labels: &val_labels,
            log_train,
            tau,
        };
        let (scored, q) = correction.apply(&self.scored, &truth)?;
        let val = correction.on_validation()?;
        let f = la.unwrap_or_else(|| Fitted::TestPrior {
            estimator: step.label().into(),
            l1_error: prior::l1(&q, &truth),
            prior: q,
        });
        Ok((val, scored, f))
    }
}

/// The estimator of a prior-aware step.
fn estimator_of(step: Step) -> prior::Estimator {
    match step {
        Step::Em => prior::Estimator::Em,
        Step::Bbse => prior::Estimator::Bbse,
        _ => prior::Estimator::Known,
    }
}

/// A method fitted on the validation split, ready to be scored on any subset of the scored
/// split whose class prior is known (a shifted test set, [`super::shift`]): the steps before
/// its prior-aware step (if any) act on each image alone, so their scored logits are kept;
/// the prior-aware step is redone on each subset; the steps after it act on each image alone
/// with the parameters fitted on the validation split.
#[derive(Debug)]
pub struct FittedMethod {
    /// The table's name, e.g. `CE + TS + EM`.
    pub name: String,
    /// The method as written.
    pub spec: String,
    /// Scored logits `[N, K]` before the prior-aware step (after every step without one).
    before: Tensor,
    /// Validation logits `[N_val, K]` before the prior-aware step.
    val_before: Tensor,
    /// The prior-aware step and its τ (`la-q`; 1 otherwise).
    prior_step: Option<(Step, f64)>,
    /// The steps after the prior-aware one.
    after: Vec<Fitted>,
}

impl FittedMethod {
    /// The method's logits on the scored images `rows` (`[M]` int64 positions into the scored
    /// split) whose true class prior is `truth` (`[K]`), and the prior its prior-aware step
    /// moved them to (`None` without one).
    ///
    /// # Errors
    /// A step after the prior-aware one that does not act on each image alone (parsing rules
    /// them out).
    pub fn logits_on(
        &self,
        base: &Base,
        rows: &Tensor,
        truth: &[f64],
        log_train: &Tensor,
    ) -> Result<(Tensor, Option<Vec<f64>>)> {
        let mut z = self.before.index_select(0, rows);
        let mut moved = None;
        if let Some((step, tau)) = self.prior_step {
            let val_labels = Vec::<i64>::try_from(&base.val.labels)?;
            let correction = prior::Correction {
                estimator: estimator_of(step),
                val_logits: &self.val_before,
                val_labels: &val_labels,
                log_train,
                tau,
            };
            let (corrected, q) = correction.apply(&z, truth)?;
            z = corrected;
            moved = Some(q);
        }
        for f in &self.after {
            z = match f {
                Fitted::LogitAdjustment { tau, .. } => posthoc::adjust_logits(&z, log_train, *tau),
                Fitted::Temperature { t, .. } => &z / *t,
                Fitted::Vector { scale, shift, .. } => posthoc::vector_scale(
                    &z,
                    &Tensor::from_slice(scale),
                    &Tensor::from_slice(shift),
                ),
                other => bail!("{} cannot follow a prior-aware step", other.describe()),
            };
        }
        Ok((z, moved))
    }
}

/// Fits every method of `bases` on its validation split ([`FittedMethod`]), sharing step
/// sequences as [`run_methods`] does.
///
/// # Errors
/// NCM without class means.
pub fn fit_methods<'a>(
    bases: &[BaseMethods<'a>],
    s: &Scoring,
) -> Result<Vec<(&'a Base, FittedMethod)>> {
    let log_train = posthoc::log_prior(&s.train_class_counts);
    let mut out = Vec::new();
    for (base, methods) in bases {
        let mut memo: HashMap<Vec<Step>, Applied> = HashMap::new();
        memo.insert(Vec::new(), Applied::base(base));
        for (spec, base_label) in methods {
            for k in 1..=spec.steps.len() {
                if !memo.contains_key(&spec.steps[..k]) {
                    let next =
                        memo[&spec.steps[..k - 1]].then(spec.steps[k - 1], base, &log_train)?;
                    memo.insert(spec.steps[..k].to_vec(), next);
                }
            }
            let at = spec.steps.iter().position(|st| st.is_prior_aware());
            let cut = at.unwrap_or(spec.steps.len());
            let done = &memo[&spec.steps];
            let prior_step = at.map(|i| {
                let tau = match &done.fitted[i] {
                    Fitted::LogitAdjustment { tau, .. } => *tau,
                    _ => 1.0,
                };
                (spec.steps[i], tau)
            });
            out.push((
                *base,
                FittedMethod {
                    name: spec.label(base_label),
                    spec: spec.canonical(),
                    before: memo[&spec.steps[..cut]].scored.shallow_clone(),
                    val_before: memo[&spec.steps[..cut]].val.shallow_clone(),
                    prior_step,
                    after: done.fitted[(cut + 1).min(done.fitted.len())..].to_vec(),
                },
            ));
        }
    }
    Ok(out)
}

/// One base's methods, in order: `(spec, the base's table name)`.
pub type BaseMethods<'a> = (&'a Base, Vec<(&'a MethodSpec, String)>);

/// Fits every method's steps on its base's validation split, scores it on the scored split, and
/// takes all intervals on the same bootstrap resamples (every base must have the same scored
/// images). A step sequence shared by several methods (`ce+la` and `ce+la+ts`) is fitted once.
/// `log` hears one line per method.
///
/// # Errors
/// NCM without class means.
pub fn run_methods(
    bases: &[BaseMethods<'_>],
    s: &Scoring,
    log: &mut dyn FnMut(&str),
) -> Result<Vec<MethodResult>> {
    let prior = posthoc::log_prior(&s.train_class_counts);
    let mut rows = Vec::new();
    let mut compacts = Vec::new();
    for (base, methods) in bases {
        let mut memo: HashMap<Vec<Step>, Applied> = HashMap::new();
        memo.insert(Vec::new(), Applied::base(base));
        for (spec, base_label) in methods {
            let started = std::time::Instant::now();
            for k in 1..=spec.steps.len() {
                if !memo.contains_key(&spec.steps[..k]) {
                    let next = memo[&spec.steps[..k - 1]].then(spec.steps[k - 1], base, &prior)?;
                    memo.insert(spec.steps[..k].to_vec(), next);
                }
            }
            let applied = &memo[&spec.steps];
            let (row, compact) = score(spec, base_label, applied, base, s)?;
            log(&format!(
                "=> {}: top-1 {:.2}% ECE {:.2}% ({:.2}s)",
                row.name,
                row.figures[0].top1,
                row.figures[0].ece,
                started.elapsed().as_secs_f64()
            ));
            rows.push(row);
            compacts.push(compact);
        }
    }
    let intervals = paired_bootstrap(&compacts, s.groups.len(), s.draws, s.seed)?;
    for (row, iv) in rows.iter_mut().zip(intervals) {
        row.intervals = iv;
    }
    Ok(rows)
}

/// Fits `spec`'s steps on `base.val` and scores the result on `base.scored`, intervals
/// included ([`run_methods`] of one method).
///
/// # Errors
/// NCM without class means.
pub fn run_method(
    spec: &MethodSpec,
    base_label: &str,
    base: &Base,
    s: &Scoring,
) -> Result<MethodResult> {
    let mut rows = run_methods(
        &[(base, vec![(spec, base_label.to_owned())])],
        s,
        &mut |_| {},
    )?;
    Ok(rows.remove(0))
}

/// The figures of a method's scored logits (intervals left empty) and the compact form its
/// intervals are drawn from.
fn score(
    spec: &MethodSpec,
    base_label: &str,
    applied: &Applied,
    base: &Base,
    s: &Scoring,
) -> Result<(MethodResult, Compact)> {
    let labels = Vec::<i64>::try_from(&base.scored.labels)?;
    let out = Outputs::from_logits(&applied.scored, labels)?;
    let cw = classwise_ece(&out)?;
    let brier = out.brier_per_sample();
    let row = MethodResult {
        name: spec.label(base_label),
        spec: spec.canonical(),
        fitted: applied.fitted.clone(),
        figures: figures(&out, &s.groups, &cw, &brier),
        intervals: Vec::new(),
        per_class_accuracy: accuracy_per_class(&out),
        per_class_overconfidence: overconfidence_per_class(&out),
    };
    Ok((row, Compact::of(&out, &s.groups)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_methods() {
        assert_eq!(
            MethodSpec::parse("ce+tau-norm+ts").unwrap(),
            MethodSpec {
                base: "ce".into(),
                steps: vec![Step::TauNorm, Step::Temperature]
            }
        );
        assert_eq!(
            MethodSpec::parse("mislas+ts").unwrap().label("MiSLAS"),
            "MiSLAS + TS"
        );
        let e = MethodSpec::parse("ce+ts+ncm").unwrap_err().to_string();
        assert!(e.contains("must come right after the base"), "{e}");
        let e = MethodSpec::parse("ce+la+la").unwrap_err().to_string();
        assert!(e.contains("la twice"), "{e}");
        let e = MethodSpec::parse("ce+foo").unwrap_err().to_string();
        assert!(e.contains("unknown post-hoc step 'foo'"), "{e}");
        assert!(MethodSpec::parse("+ts").is_err());
    }
}
