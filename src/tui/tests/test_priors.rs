//! The Methods screen's test-prior picker and chart: `p` steps the table through the scored
//! split and each shifted set the comparison scored, the figures shown are that set's, and the
//! chart's points are each method's figure at each prior's place on the axis.
use super::*;
use crate::compare::bootstrap::{GroupIntervals, Interval, IntervalKind};
use crate::compare::estimators::{Figures, Group};
use crate::compare::methods::MethodResult;
use crate::compare::report::Comparison;
use crate::compare::shift::{ShiftedSet, TestPrior};
use crate::compare::split::Protocol;
use crate::compare::test_priors::{PriorFigures, PriorRow, TestPriorComparison, TestSetResult};
use crate::tui::methods::CompareMsg;
use crate::tui::methods_view::{prior_points, PriorFigure};

fn ci(lo: f64, hi: f64) -> Interval {
    Interval { lo, hi }
}

/// A method's row on the whole scored split: top-1 `top1`, ECE `ece`.
pub(super) fn method(spec: &str, top1: f64, ece: f64) -> MethodResult {
    MethodResult {
        name: spec.to_uppercase(),
        spec: spec.into(),
        fitted: Vec::new(),
        figures: vec![Figures {
            samples: 100,
            top1,
            ece,
            adaptive_ece: ece,
            classwise_ece: ece,
            mce: ece,
            nll: 1.5,
            brier: 0.5,
            bins: Vec::new(),
        }],
        intervals: vec![GroupIntervals {
            top1: ci(top1 - 2.0, top1 + 2.0),
            ece: ci(ece - 1.0, ece + 1.0),
            ece_debiased: ece,
        }],
        per_class_accuracy: Vec::new(),
        per_class_overconfidence: Vec::new(),
    }
}

pub(super) fn comparison() -> Comparison {
    Comparison {
        protocol: Protocol::Holdout,
        checkpoint: "ckps/current.safetensors".into(),
        trained: Vec::new(),
        bases: Vec::new(),
        validation: "test half A".into(),
        scored: "test half B".into(),
        groups: vec![Group {
            name: "all".into(),
            classes: vec![true; 3],
        }],
        train_class_counts: vec![300, 30, 3],
        draws: 100,
        seed: 0,
        interval: IntervalKind::Percentile,
        rows: vec![method("ce", 61.0, 9.0), method("ce+ts", 61.0, 3.0)],
    }
}

/// One method on one shifted set.
fn prior_row(spec: &str, top1: f64, ece: f64) -> PriorRow {
    PriorRow {
        name: spec.to_uppercase(),
        spec: spec.into(),
        figures: PriorFigures {
            samples: 120,
            top1,
            top1_ci: ci(top1 - 3.0, top1 + 3.0),
            many: None,
            medium: None,
            few: None,
            ece,
            ece_ci: ci(ece - 1.5, ece + 1.5),
            adaptive_ece: ece,
            nll: 2.25,
            brier: 0.6,
            oe: 1.0,
            tace: 1.0,
            prior_l1: None,
            prior: None,
            intervals: Default::default(),
        },
    }
}

/// forward50, uniform, backward50 (in the order `compare` wrote them: not the axis order).
fn priors() -> TestPriorComparison {
    let set = |prior: TestPrior, ce: (f64, f64), ts: (f64, f64)| TestSetResult {
        set: ShiftedSet {
            name: prior.name(),
            prior,
            class_counts: vec![40, 40, 40],
            indices: Vec::new(),
            sha256: String::new(),
            source: None,
        },
        rows: vec![prior_row("ce", ce.0, ce.1), prior_row("ce+ts", ts.0, ts.1)],
    };
    TestPriorComparison {
        seed: 0,
        draws: 100,
        sets: vec![
            set(TestPrior::Uniform, (60.0, 10.0), (60.0, 4.0)),
            set(TestPrior::Forward(50), (80.0, 5.0), (80.0, 2.0)),
            set(TestPrior::Backward(50), (40.0, 20.0), (40.0, 8.0)),
        ],
        skipped: Vec::new(),
    }
}

#[test]
fn p_picks_the_tables_test_prior_and_the_chart_draws_each_method_against_it() {
    let (d, mut app) = project();
    let root = d.path();
    let s1 = super::methods::stage1_run(root, "fm_s1_done", 3, true);
    super::methods::on_runs(&mut app, vec![s1.clone()]);
    send(&mut app, [ch('m')]);
    let out = s1.dir.join("compare/20261206-220000");
    fs::create_dir_all(&out).unwrap();
    fs::write(
        out.join("test_priors.json"),
        serde_json::to_string(&priors()).unwrap(),
    )
    .unwrap();
    let done = CompareMsg::Done(Box::new(comparison()), out);
    send(&mut app, [Msg::Compare(s1.dir.clone(), done)]);
    assert_eq!(app.screen, Screen::Methods);
    let s = render(&app, 80, 24);
    for text in [
        "scored on test half B · p: test prior",
        "61.00 [59.00,63.00]",
        "Top-1 % by test prior",
        "ECE % by test prior",
        "fwd50",
        "uniform",
        "bwd50",
    ] {
        assert!(s.contains(text), "{text}:\n{s}");
    }
    // p: the sets in the comparison's order, then the scored split again.
    for (name, ce, ts) in [
        ("uniform", "60.00 [57.00,63.00]", "4.00 [2.50,5.50]"),
        ("forward50", "80.00 [77.00,83.00]", "2.00 [0.50,3.50]"),
        ("backward50", "40.00 [37.00,43.00]", "8.00 [6.50,9.50]"),
    ] {
        send(&mut app, [ch('p')]);
        let m = app.methods.as_ref().unwrap();
        assert_eq!(m.prior_name(), Some(name));
        let s = render(&app, 80, 24);
        assert!(s.contains(&format!("test prior {name}")), "{name}:\n{s}");
        assert!(s.contains(ce) && s.contains(ts), "{name}:\n{s}");
        assert!(!s.contains("61.00"), "{name}:\n{s}");
    }
    send(&mut app, [ch('p')]);
    assert_eq!(app.methods.as_ref().unwrap().prior_name(), None);
    let s = render(&app, 80, 24);
    assert!(s.contains("61.00 [59.00,63.00]"), "{s}");
    // The footer says the key.
    assert!(s.lines().nth(23).unwrap().contains("p prior"), "{s}");

    // The chart's points: each method's figure at −ln ρ (forward), 0, +ln ρ (backward).
    let m = app.methods.as_ref().unwrap();
    let (c, p) = (comparison(), priors());
    let x = 50f64.ln();
    let top1 = prior_points(m, &c, &p, PriorFigure::Top1);
    assert_eq!(top1[0], (0, vec![(-x, 80.0), (0.0, 60.0), (x, 40.0)]));
    let ece = prior_points(m, &c, &p, PriorFigure::Ece);
    assert_eq!(ece[1], (1, vec![(-x, 2.0), (0.0, 4.0), (x, 8.0)]));
    // A hidden row has no line.
    send(&mut app, [ch(' ')]);
    let m = app.methods.as_ref().unwrap();
    assert_eq!(prior_points(m, &c, &p, PriorFigure::Top1).len(), 1);
}

#[test]
fn without_shifted_sets_p_does_nothing_and_no_prior_chart_is_drawn() {
    let (d, mut app) = project();
    let root = d.path();
    let s1 = super::methods::stage1_run(root, "fm_s1_done", 3, true);
    super::methods::on_runs(&mut app, vec![s1.clone()]);
    send(&mut app, [ch('m')]);
    let out = s1.dir.join("compare/20261206-220000");
    let done = CompareMsg::Done(Box::new(comparison()), out);
    send(&mut app, [Msg::Compare(s1.dir.clone(), done), ch('p')]);
    assert_eq!(app.methods.as_ref().unwrap().prior, None);
    let s = render(&app, 80, 24);
    assert!(
        !s.contains("by test prior") && !s.contains("p: test prior"),
        "{s}"
    );
    assert!(s.contains("Reliability"), "{s}");
}
