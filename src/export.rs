//! The runs list and the seed-group table as CSV (`mislas runs --csv`, `mislas runs --groups
//! --csv`), for a spreadsheet, pandas or a paper's table: one row per run folder, or one row per
//! configuration with the mean and sample standard deviation over its seeds (the runs screen's
//! `g`, [`crate::seeds::group_by_seed`]). Figures are the run folders' own `metrics.jsonl`
//! records, not recomputed: top-1, ECE and many/medium/few-shot in %, NLL in nats.
use crate::events::EpochReport;
use crate::run_dir::RunSummary;
use crate::seeds::{best_epoch, finished, MeanStd, Role, SeedGroup};
use anyhow::Result;
use std::io::Write;

/// Columns of [`write_runs`], in order.
pub const RUN_COLUMNS: [&str; 22] = [
    "name",
    "stage",
    "dataset",
    "imb_factor",
    "backbone",
    "recipe",
    "loss",
    "mixup",
    "seed",
    "epochs_done",
    "num_epochs",
    "finished",
    "best_epoch",
    "best_top1",
    "best_ece",
    "best_nll",
    "best_many_shot",
    "best_medium_shot",
    "best_few_shot",
    "last_top1",
    "last_ece",
    "train_seconds",
];

/// Columns of [`write_groups`], in order.
pub const GROUP_COLUMNS: [&str; 15] = [
    "configuration",
    "seeds",
    "n",
    "best_top1_mean",
    "best_top1_std",
    "best_ece_mean",
    "best_ece_std",
    "best_nll_mean",
    "best_nll_std",
    "last_top1_mean",
    "last_top1_std",
    "last_ece_mean",
    "last_ece_std",
    "duplicates",
    "not_finished",
];

/// An optional figure as a CSV field: empty when absent.
fn field(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

/// One run's row (see [`RUN_COLUMNS`]); a folder without a readable configuration has empty
/// configuration fields. The best epoch is the one of highest top-1 (1-based in the file, as
/// the log counts epochs).
fn run_row(r: &RunSummary) -> Vec<String> {
    let c = r.config.as_ref();
    let conf = |f: &dyn Fn(&crate::config::Config) -> String| c.map(f).unwrap_or_default();
    let best: Option<&EpochReport> = best_epoch(&r.epochs);
    let last = r.epochs.last();
    let at =
        |e: Option<&EpochReport>, f: &dyn Fn(&EpochReport) -> Option<f64>| field(e.and_then(f));
    vec![
        r.name.clone(),
        r.stage.map(|s| s.to_string()).unwrap_or_default(),
        conf(&|c| c.dataset.to_string()),
        conf(&|c| field(c.imb_factor)),
        conf(&|c| c.backbone.clone()),
        // The recipe is a classifier stage's; a stage-1 run ignores the key.
        match r.stage {
            Some(crate::config::Stage::Stage2) => conf(&|c| c.recipe.to_string()),
            _ => String::new(),
        },
        conf(&|c| c.loss.to_string()),
        conf(&|c| c.mixup.to_string()),
        conf(&|c| c.seed.to_string()),
        r.epochs.len().to_string(),
        field(
            last.map(|e| e.num_epochs as f64)
                .or(c.map(|c| c.num_epochs as f64)),
        ),
        finished(r).to_string(),
        best.map(|e| (e.epoch + 1).to_string()).unwrap_or_default(),
        at(best, &|e| Some(e.eval.top1)),
        at(best, &|e| Some(e.eval.ece)),
        at(best, &|e| Some(e.eval.nll)),
        at(best, &|e| e.eval.many_shot),
        at(best, &|e| e.eval.medium_shot),
        at(best, &|e| e.eval.few_shot),
        at(last, &|e| Some(e.eval.top1)),
        at(last, &|e| Some(e.eval.ece)),
        format!("{}", r.epochs.iter().map(|e| e.train_seconds).sum::<f64>()),
    ]
}

/// Writes `runs` as CSV with a header of [`RUN_COLUMNS`], one row per run folder in the order
/// given.
///
/// # Errors
/// The writer fails.
pub fn write_runs(runs: &[RunSummary], out: impl Write) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(RUN_COLUMNS)?;
    for r in runs {
        w.write_record(run_row(r))?;
    }
    w.flush()?;
    Ok(())
}

/// A mean and its sample standard deviation as two fields (the deviation empty for one seed,
/// where it is undefined).
fn mean_std(m: &Option<MeanStd>) -> [String; 2] {
    [
        field(m.as_ref().map(|m| m.mean)),
        field(m.as_ref().and_then(|m| m.std)),
    ]
}

/// Writes `groups` as CSV with a header of [`GROUP_COLUMNS`]: per configuration the seeds
/// used (`;`-separated), their number, mean and sample standard deviation (NumPy's
/// `std(ddof=1)`) of each figure, and how many runs were left out as a repeated seed or
/// unfinished.
///
/// # Errors
/// The writer fails.
pub fn write_groups(groups: &[SeedGroup], out: impl Write) -> Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(GROUP_COLUMNS)?;
    for g in groups {
        let seeds: Vec<String> = g.seeds.iter().map(|s| s.to_string()).collect();
        let mut row = vec![g.label.clone(), seeds.join(";"), g.seeds.len().to_string()];
        for m in [
            &g.best_top1,
            &g.best_ece,
            &g.best_nll,
            &g.last_top1,
            &g.last_ece,
        ] {
            row.extend(mean_std(m));
        }
        row.push(g.count(Role::Duplicate).to_string());
        row.push(g.count(Role::Unfinished).to_string());
        w.write_record(row)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Stage};
    use crate::metrics::EvalReport;
    use std::path::PathBuf;

    fn eval(top1: f64, ece: f64, nll: f64) -> EvalReport {
        EvalReport {
            samples: 100,
            top1,
            top5: 100.0,
            per_class: vec![top1; 2],
            head: top1,
            medium: top1,
            tail: top1,
            many_shot: Some(top1),
            medium_shot: None,
            few_shot: None,
            ece,
            mce: ece,
            nll,
            bins: Vec::new(),
        }
    }

    /// A stage-1 run of `seed` with one record per `(top1, ece, nll)`, 2 epochs in all.
    fn run(name: &str, seed: u64, epochs: &[(f64, f64, f64)]) -> RunSummary {
        let cfg = Config {
            name: "fm_s1".into(),
            seed,
            num_epochs: 2,
            ..Config::default()
        };
        let epochs = epochs
            .iter()
            .enumerate()
            .map(|(e, &(t, ece, nll))| EpochReport {
                stage: Stage::Stage1,
                epoch: e,
                num_epochs: 2,
                lr: vec![0.1],
                train_loss: 1.0,
                train_top1: 50.0,
                eval: eval(t, ece, nll),
                best_top1: t,
                best_ece: ece,
                is_best: true,
                train_seconds: 10.5,
                eval_seconds: 1.0,
                images_per_sec: 100.0,
            })
            .collect();
        RunSummary {
            dir: PathBuf::from(name),
            name: name.into(),
            stage: Some(Stage::Stage1),
            epochs,
            config: Some(cfg),
            best_checkpoint: None,
        }
    }

    fn rows(bytes: Vec<u8>) -> Vec<Vec<String>> {
        csv::Reader::from_reader(bytes.as_slice())
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    /// Seed 0 peaks at its first epoch (34 %), seed 1 at its second (30 %); a stopped run of
    /// seed 2 has one epoch. By hand: best top-1 32 ± sqrt(8) = 2.8284…, last top-1
    /// (30, 30): 30 ± 0; ECE at the best epochs (4, 6): 5 ± 1.4142….
    #[test]
    fn runs_and_seed_groups_are_written_with_their_best_epochs_and_sample_deviations() {
        let runs = vec![
            run("fm_s1_seed0", 0, &[(34.0, 4.0, 1.0), (30.0, 5.0, 1.2)]),
            run("fm_s1_seed1", 1, &[(20.0, 9.0, 2.0), (30.0, 6.0, 1.4)]),
            run("fm_s1_seed2", 2, &[(50.0, 1.0, 0.5)]),
        ];
        let mut out = Vec::new();
        write_runs(&runs, &mut out).unwrap();
        let r = rows(out);
        assert_eq!(r.len(), 3);
        let col = |name: &str| RUN_COLUMNS.iter().position(|c| *c == name).unwrap();
        assert_eq!(r[0][col("best_epoch")], "1");
        assert_eq!(r[0][col("best_top1")], "34");
        assert_eq!(r[0][col("last_top1")], "30");
        assert_eq!(r[1][col("best_epoch")], "2");
        assert_eq!(r[1][col("best_ece")], "6");
        assert_eq!(r[1][col("train_seconds")], "21");
        assert_eq!(r[2][col("finished")], "false");
        assert_eq!(r[0][col("recipe")], "", "a stage-1 run has no recipe");
        assert_eq!(
            r[0][col("best_medium_shot")],
            "",
            "an empty group is an empty field"
        );

        let mut out = Vec::new();
        write_groups(&crate::seeds::group_by_seed(&runs), &mut out).unwrap();
        let g = rows(out);
        assert_eq!(g.len(), 1);
        let col = |name: &str| GROUP_COLUMNS.iter().position(|c| *c == name).unwrap();
        let num = |name: &str| g[0][col(name)].parse::<f64>().unwrap();
        assert_eq!(g[0][col("seeds")], "0;1");
        assert_eq!(num("best_top1_mean"), 32.0);
        assert!((num("best_top1_std") - 8f64.sqrt()).abs() < 1e-12);
        assert_eq!((num("last_top1_mean"), num("last_top1_std")), (30.0, 0.0));
        assert_eq!(num("best_ece_mean"), 5.0);
        assert!((num("best_ece_std") - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(g[0][col("not_finished")], "1");
        // One seed: the deviation is undefined, an empty field, not 0.
        let mut out = Vec::new();
        write_groups(&crate::seeds::group_by_seed(&runs[..1]), &mut out).unwrap();
        assert_eq!(rows(out)[0][col("best_top1_std")], "");
    }
}
