//! The comparison's tables and arrays: a text table for the terminal, CSV and Markdown with
//! the intervals, and JSON with the reliability bins, per-class arrays and fitted parameters.
use super::bootstrap::IntervalKind;
use super::estimators::Group;
use super::methods::MethodResult;
use super::split::Protocol;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// Every method's figures on one checkpoint, and how they were obtained.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Fit/score protocol.
    pub protocol: Protocol,
    /// The stage-1 checkpoint.
    pub checkpoint: String,
    /// The trained bases: `(name, checkpoint file)`.
    #[serde(default)]
    pub trained: Vec<(String, String)>,
    /// The other stage-1 bases (`--base`): `(name, label, checkpoint file)`.
    #[serde(default)]
    pub bases: Vec<(String, String, String)>,
    /// Where post-hoc parameters were fitted, in words (names the half or list).
    pub validation: String,
    /// Which images were scored, in words.
    pub scored: String,
    /// The groups of every row's figures.
    pub groups: Vec<Group>,
    /// Training images per class.
    pub train_class_counts: Vec<usize>,
    /// Bootstrap draws.
    pub draws: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// How the intervals were read from the draws (files without it: percentile).
    #[serde(default = "super::bootstrap::legacy_interval_kind")]
    pub interval: IntervalKind,
    /// One per method.
    pub rows: Vec<MethodResult>,
}

fn ci(v: f64, lo: f64, hi: f64) -> String {
    format!("{v:.2} [{lo:.2}, {hi:.2}]")
}

impl Comparison {
    /// The overall table as Markdown: top-1 and ECE with 95 % intervals, adaptive and
    /// classwise ECE, MCE, NLL, Brier; then top-1 and ECE [CI] of each other group.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Protocol: {}.  ", self.protocol.label());
        let _ = writeln!(s, "Fitted on: {}.  ", self.validation);
        let _ = writeln!(s, "Scored on: {}.  ", self.scored);
        let _ = writeln!(s, "Stage-1 checkpoint (`ce`): {}.  ", self.checkpoint);
        for (name, label, path) in &self.bases {
            let _ = writeln!(s, "Stage-1 base `{name}` ({label}): {path}.  ");
        }
        for (name, path) in &self.trained {
            let _ = writeln!(s, "Trained base `{name}`: {path}.  ");
        }
        s.push_str(&self.interval_note());
        let _ = writeln!(
            s,
            "| Method | Top-1 % [95 % CI] | ECE % [95 % CI] | dECE % | AECE % | cw-ECE % | MCE % | NLL | Brier | fitted |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for r in &self.rows {
            let (f, i) = (&r.figures[0], &r.intervals[0]);
            let fitted: Vec<String> = r.fitted.iter().map(|f| f.describe()).collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.4} | {:.4} | {} |",
                r.name,
                ci(f.top1, i.top1.lo, i.top1.hi),
                ci(f.ece, i.ece.lo, i.ece.hi),
                i.ece_debiased,
                f.adaptive_ece,
                f.classwise_ece,
                f.mce,
                f.nll,
                f.brier,
                fitted.join("; ")
            );
        }
        s.push_str(&self.sweeps());
        for what in ["Top-1 %", "ECE %"] {
            let _ = writeln!(s, "\n| {what} [95 % CI] |{}", self.group_header());
            let _ = writeln!(s, "|---|{}", "---|".repeat(self.groups.len() - 1));
            for r in &self.rows {
                let cells: Vec<String> = (1..self.groups.len())
                    .map(|g| {
                        let (f, i) = (&r.figures[g], &r.intervals[g]);
                        if what.starts_with("Top") {
                            ci(f.top1, i.top1.lo, i.top1.hi)
                        } else {
                            ci(f.ece, i.ece.lo, i.ece.hi)
                        }
                    })
                    .collect();
                let _ = writeln!(s, "| {} | {} |", r.name, cells.join(" | "));
            }
        }
        s
    }

    /// The line under the protocol that says how the intervals were made and what dECE is.
    fn interval_note(&self) -> String {
        format!(
            "95 % intervals: {} bootstrap of the scored images, {} draws, seed {} (the same \
             resamples for every method). The ECE is the plug-in one, biased upward; its \
             interval is for the true (population) ECE{}; dECE is Kumar et al.'s debiased ECE \
             (NeurIPS 2019).\n\n",
            self.interval.name(),
            self.draws,
            self.seed,
            match self.interval {
                IntervalKind::Basic => ", so it may lie below the plug-in figure",
                IntervalKind::Percentile => " only where that bias is small",
            }
        )
    }

    /// The validation sweeps of τ-norm and logit adjustment (each τ tried, validation top-1),
    /// once per distinct sweep.
    fn sweeps(&self) -> String {
        use super::posthoc::Fitted;
        let mut s = String::new();
        let mut seen = Vec::new();
        for r in &self.rows {
            for f in &r.fitted {
                let (what, tau, sweep) = match f {
                    Fitted::TauNorm { tau, sweep } => ("τ-norm", tau, sweep),
                    Fitted::LogitAdjustment { tau, sweep } => ("logit adjustment", tau, sweep),
                    _ => continue,
                };
                let key = format!("{what}{sweep:?}");
                if seen.contains(&key) {
                    continue;
                }
                seen.push(key);
                let pts: Vec<String> = sweep
                    .iter()
                    .step_by(2)
                    .map(|(t, a)| format!("{t:.2}: {a:.2}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "\n{what} sweep of {} (τ: validation top-1 %, every other τ; chosen τ = \
                     {tau:.2}): {}",
                    r.name.split(" + ").next().unwrap_or_default(),
                    pts.join(", ")
                );
            }
        }
        s
    }

    fn group_header(&self) -> String {
        self.groups[1..]
            .iter()
            .map(|g| {
                let k = g.classes.iter().filter(|&&b| b).count();
                format!(" {} ({k} cl.) |", g.name)
            })
            .collect()
    }

    /// A compact text table for the terminal: per method, overall top-1 and ECE with
    /// intervals, NLL, and top-1 of many/medium/few.
    pub fn text_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{}", self.protocol.label());
        let _ = writeln!(
            s,
            "fitted on {}; scored on {}",
            self.validation, self.scored
        );
        let shot: Vec<usize> = ["many", "medium", "few"]
            .iter()
            .filter_map(|n| self.groups.iter().position(|g| g.name == *n))
            .collect();
        let _ = write!(
            s,
            "{:<28} {:>22} {:>22} {:>6} {:>7} {:>7}",
            "method",
            format!("top-1 % [95% {}]", self.interval.name()),
            format!("ECE % [95% {}]", self.interval.name()),
            "dECE",
            "NLL",
            "Brier"
        );
        for &g in &shot {
            let _ = write!(s, " {:>7}", self.groups[g].name);
        }
        s.push('\n');
        for r in &self.rows {
            let (f, i) = (&r.figures[0], &r.intervals[0]);
            let _ = write!(
                s,
                "{:<28} {:>22} {:>22} {:>6.2} {:>7.4} {:>7.4}",
                r.name,
                ci(f.top1, i.top1.lo, i.top1.hi),
                ci(f.ece, i.ece.lo, i.ece.hi),
                i.ece_debiased,
                f.nll,
                f.brier
            );
            for &g in &shot {
                let _ = write!(s, " {:>7.2}", r.figures[g].top1);
            }
            s.push('\n');
        }
        s
    }

    /// Writes `results.csv` (one line per method and group), `results.md`, and
    /// `comparison.json` (everything, with the per-bin arrays) into `dir`.
    ///
    /// # Errors
    /// A file cannot be written (its path and the reason).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let csv_path = dir.join("results.csv");
        let mut w = csv::Writer::from_path(&csv_path)
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        w.write_record([
            "method",
            "spec",
            "group",
            "samples",
            "top1",
            "top1_lo",
            "top1_hi",
            "ece",
            "ece_lo",
            "ece_hi",
            "ece_debiased",
            "interval",
            "adaptive_ece",
            "classwise_ece",
            "mce",
            "nll",
            "brier",
            "protocol",
        ])?;
        for r in &self.rows {
            for (g, (f, i)) in self.groups.iter().zip(r.figures.iter().zip(&r.intervals)) {
                let num = |v: f64| format!("{v:.6}");
                w.write_record([
                    r.name.clone(),
                    r.spec.clone(),
                    g.name.clone(),
                    f.samples.to_string(),
                    num(f.top1),
                    num(i.top1.lo),
                    num(i.top1.hi),
                    num(f.ece),
                    num(i.ece.lo),
                    num(i.ece.hi),
                    num(i.ece_debiased),
                    self.interval.name().to_owned(),
                    num(f.adaptive_ece),
                    num(f.classwise_ece),
                    num(f.mce),
                    num(f.nll),
                    num(f.brier),
                    format!("{:?}", self.protocol),
                ])?;
            }
        }
        w.flush()
            .with_context(|| format!("cannot write {}", csv_path.display()))?;
        let md = dir.join("results.md");
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("cannot write {}", md.display()))?;
        let json = dir.join("comparison.json");
        std::fs::write(&json, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        Ok(())
    }
}
