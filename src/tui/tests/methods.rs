//! The Methods view: which runs open it, its keys, which stage-2 runs it finds for which
//! method, the stage-2 configuration of each trained method, and what Enter does.
use super::*;
use crate::config::ClassifierRecipe;
use crate::engine::recipe::catalogue::{self, Method};
use crate::tui::app::QueueOp;
use crate::tui::methods::{
    find_trained, stage2_plan, CompareMsg, Found, Item, Job as CompareJob, Trained,
};

/// The catalogue's row of `name`.
fn row(name: &str) -> Trained {
    catalogue::by_name(name).unwrap()
}

/// A finished stage-1 run of `fm_s1` with its best checkpoint, in `root`'s `saved/`.
pub(super) fn stage1_run(root: &Path, name: &str, epochs: usize, best: bool) -> RunSummary {
    let dir = root.join("saved").join(name);
    let ckpt = dir.join("ckps/model_best.safetensors");
    fs::create_dir_all(ckpt.parent().unwrap()).unwrap();
    if best {
        fs::write(&ckpt, "").unwrap();
    }
    let config = Config::from_yaml_str(&preset_yaml("fm_s1", "stage1", "./data/fmnist", 3), "t")
        .unwrap()
        .config;
    RunSummary {
        dir,
        name: name.into(),
        stage: Some(Stage::Stage1),
        epochs: (0..epochs)
            .map(|e| epoch(Stage::Stage1, e, 3, 60.0, 7.0))
            .collect(),
        config: Some(config),
        best_checkpoint: best.then_some(ckpt),
    }
}

/// A stage-2 run of `config` (its `resume` says from which checkpoint), finished or not.
fn stage2_run(root: &Path, name: &str, config: Config, finished: bool) -> RunSummary {
    let dir = root.join("saved").join(name);
    let n = config.num_epochs;
    RunSummary {
        best_checkpoint: Some(dir.join("ckps/model_best.safetensors")),
        dir,
        name: name.into(),
        stage: Some(Stage::Stage2),
        epochs: (0..if finished { n } else { 1 })
            .map(|e| epoch(Stage::Stage2, e, n, 70.0, 3.0))
            .collect(),
        config: Some(config),
    }
}

/// A stage-2 configuration of `method` from `ckpt`.
fn trained_config(method: Trained, ckpt: &Path) -> Config {
    let mut c = Config::from_yaml_str(&preset_yaml("fm_s2", "stage2", "./data/fmnist", 2), "t")
        .unwrap()
        .config;
    c.resume = ckpt.display().to_string();
    method.apply(&mut c);
    c
}

/// The app on the runs screen with `runs` listed.
pub(super) fn on_runs(app: &mut App, runs: Vec<RunSummary>) {
    send(app, [ch('4'), Msg::Runs(runs, HashMap::new())]);
    app.runs.selected = 0;
    app.status = None;
}

fn status_text(app: &App) -> String {
    app.status
        .as_ref()
        .map(|s| s.text.clone())
        .unwrap_or_default()
}

#[test]
fn m_opens_the_methods_view_only_on_a_finished_stage1_run() {
    let (d, mut app) = project();
    let root = d.path();
    let s2 = stage2_run(root, "fm_s2_1", trained_config(row("crt"), root), true);
    let cases = [
        (stage1_run(root, "fm_s1_short", 1, true), "is not finished"),
        (s2, "is a stage-2 run"),
        (
            stage1_run(root, "fm_s1_nobest", 3, false),
            "has no ckps/current.safetensors nor ckps/model_best",
        ),
    ];
    for (run, why) in cases {
        on_runs(&mut app, vec![run]);
        assert!(send(&mut app, [ch('m')]).is_empty());
        assert_eq!(app.runs.view, RunsView::List);
        assert_eq!(app.screen, Screen::Runs);
        assert!(status_text(&app).contains(why), "{}", status_text(&app));
        assert!(app.status.as_ref().unwrap().error);
    }
    let done = stage1_run(root, "fm_s1_done", 3, true);
    on_runs(&mut app, vec![done.clone()]);
    send(&mut app, [ch('m')]);
    assert_eq!(app.screen, Screen::Methods, "{}", status_text(&app));
    assert!(app.methods.is_some());
    let s = render(&app, 80, 24);
    for text in [
        "Methods · fm_s1_done",
        "[x] CE + TS",
        "[ ] CE + τ-norm",
        "cRT",
        "+ trains",
    ] {
        assert!(s.contains(text), "{text}: {s}");
    }
    assert!(
        s.contains("Space check"),
        "the footer shows the view's keys: {s}"
    );
    // Esc goes back where m was pressed: the list, or the run's detail.
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(
        (app.screen, &app.runs.view),
        (Screen::Runs, &RunsView::List)
    );
    send(&mut app, [key(KeyCode::Enter), ch('m'), key(KeyCode::Esc)]);
    assert_eq!(app.screen, Screen::Runs);
    assert_eq!(app.runs.view, RunsView::Detail(done.dir.clone()));
    // A screen of its own: 5 shows it again (the same run, its state kept), 4 leaves it.
    send(&mut app, [ch('5')]);
    assert_eq!(app.screen, Screen::Methods);
    assert_eq!(app.methods.as_ref().unwrap().dir, done.dir);
    assert!(render(&app, 80, 24).contains(" 5 Methods "));
    send(&mut app, [ch('4')]);
    assert_eq!(app.screen, Screen::Runs);
}

#[test]
fn keys_check_methods_and_enter_compares_the_checked_ones_on_the_worker() {
    let (d, mut app) = project();
    let run = stage1_run(d.path(), "fm_s1_done", 3, true);
    on_runs(&mut app, vec![run.clone()]);
    send(&mut app, [ch('m')]);
    let m = app.methods.as_ref().unwrap();
    let checked: Vec<String> = m.checked_items().map(Item::label).collect();
    assert_eq!(checked, ["CE", "CE + TS"]);
    // Space unchecks CE; a checks every post-hoc method, a again none of them.
    send(&mut app, [key(KeyCode::Char(' '))]);
    let m = app.methods.as_ref().unwrap();
    assert_eq!(
        m.checked_items().map(Item::label).collect::<Vec<_>>(),
        ["CE + TS"]
    );
    send(&mut app, [ch('a')]);
    let m = app.methods.as_ref().unwrap();
    assert!(m.checked_items().all(|i| matches!(i, Item::PostHoc(_))));
    assert_eq!(m.checked_items().count(), 9);
    send(&mut app, [ch('a')]);
    assert!(send(&mut app, [key(KeyCode::Enter)]).is_empty());
    assert_eq!(status_text(&app), "check methods with Space first");
    // CE + TS and LA: Enter hands the comparison to the worker.
    send(&mut app, [ch('j'), key(KeyCode::Char(' ')), ch('G')]);
    // Up from the last trained method, past every trained one and `vs`, to `ce+la`.
    let up = catalogue::classifier_stages().count() + 2;
    send(&mut app, (0..up).map(|_| ch('k')));
    send(&mut app, [key(KeyCode::Char(' '))]);
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    let [Effect::Compare(dir, opts)] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    assert_eq!(*dir, run.dir);
    let specs: Vec<String> = opts
        .methods
        .iter()
        .map(crate::tui::methods::spec_text)
        .collect();
    assert_eq!(specs, ["ce+ts", "ce+la"]);
    assert!(opts.trained.is_empty());
    assert_eq!(
        opts.cfg.resume,
        run.best_checkpoint.unwrap().display().to_string()
    );
    assert_eq!(opts.out, None, "compare's own folder per comparison");
    assert_eq!(app.comparing, Some(run.dir.clone()));
    // One comparison at a time.
    assert!(send(&mut app, [key(KeyCode::Enter)]).is_empty());
    assert!(
        status_text(&app).contains("is running"),
        "{}",
        status_text(&app)
    );
    // The worker's lines, then its failure in words: the view says it, nothing else changes.
    let line = CompareMsg::Line("=> cached outputs".into());
    let failed = CompareMsg::Failed("data of 'fm_s1': no file train-images".into());
    send(
        &mut app,
        [
            Msg::Compare(run.dir.clone(), line),
            Msg::Compare(run.dir, failed),
        ],
    );
    assert_eq!(app.comparing, None);
    let m = app.methods.as_ref().unwrap();
    assert_eq!(
        m.job,
        CompareJob::Failed("data of 'fm_s1': no file train-images".into())
    );
    let s = render(&app, 80, 24);
    assert!(s.contains("comparison failed: data of"), "{s}");
    assert!(s.contains("=> cached outputs"), "{s}");
}

#[test]
fn each_trained_method_finds_its_own_finished_run_from_this_checkpoint() {
    let (d, _app) = project();
    let root = d.path();
    let s1 = stage1_run(root, "fm_s1_done", 3, true);
    let ckpt = s1.best_checkpoint.clone().unwrap();
    let other = root.join("elsewhere.safetensors");
    let runs = vec![
        stage2_run(
            root,
            "crt_new_unfinished",
            trained_config(row("crt"), &ckpt),
            false,
        ),
        stage2_run(root, "crt_done", trained_config(row("crt"), &ckpt), true),
        stage2_run(
            root,
            "lws_other_ckpt",
            trained_config(row("lws"), &other),
            true,
        ),
        stage2_run(
            root,
            "mislas_done",
            trained_config(row("mislas"), &ckpt),
            true,
        ),
        // Started from the same run's last checkpoint rather than its best: the same backbone
        // run, so it counts.
        stage2_run(
            root,
            "lws_from_current",
            trained_config(row("lws"), &ckpt.with_file_name("current.safetensors")),
            true,
        ),
        stage2_run(
            root,
            "no_las_done",
            trained_config(row("mislas-no-las"), &ckpt),
            true,
        ),
        stage2_run(
            root,
            "no_shift_live",
            trained_config(row("mislas-no-shift"), &ckpt),
            false,
        ),
        s1,
    ];
    let live = vec![root.join("saved/no_shift_live")];
    let facts = HashMap::new();
    let found = |t| find_trained(t, &ckpt, &runs, &facts, &live);
    let finished = |name: &str| Found::Finished {
        dir: root.join("saved").join(name),
        checkpoint: root
            .join("saved")
            .join(name)
            .join("ckps/model_best.safetensors"),
    };
    assert_eq!(found(row("lws")), finished("lws_from_current"));
    // With its last checkpoint present, that is what the comparison scores: its best epoch was
    // picked on the whole test set, which includes the scored half.
    let crt_current = root.join("saved/crt_done/ckps/current.safetensors");
    fs::create_dir_all(crt_current.parent().unwrap()).unwrap();
    fs::write(&crt_current, "").unwrap();
    assert_eq!(
        found(row("crt")),
        Found::Finished {
            dir: root.join("saved/crt_done"),
            checkpoint: crt_current,
        }
    );
    assert_eq!(found(row("mislas")), finished("mislas_done"));
    assert_eq!(found(row("mislas-no-las")), finished("no_las_done"));
    assert_eq!(
        found(row("mislas-no-shift")),
        Found::Training(root.join("saved/no_shift_live"))
    );
    // A stage-2 MiSLAS run with both switches off is none of the five.
    let mut neither = trained_config(row("mislas-no-las"), &ckpt);
    neither.shift_bn = false;
    assert_eq!(Method::of_config(&neither), None);
    for t in catalogue::classifier_stages() {
        assert_eq!(Method::of_config(&trained_config(t, &ckpt)), Some(t));
    }
}

#[test]
fn each_trained_method_gets_its_presets_stage2_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let presets = discover(root, None);
    let p = root.join("presets/fashion_mnist/fashion_mnist_imb01_stage1_mixup.yaml");
    let mut s1 = Config::from_file(&p).unwrap().config;
    (s1.data_path, s1.device, s1.workers) = ("/data/fm".into(), "cpu".into(), 0);
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("model_best.safetensors");
    fs::write(&ckpt, "").unwrap();
    let expect = [
        (
            row("crt"),
            ClassifierRecipe::Crt,
            "fashion_mnist_imb01_stage2_crt",
            false,
            None,
        ),
        (
            row("lws"),
            ClassifierRecipe::Lws,
            "fashion_mnist_imb01_stage2_lws",
            false,
            None,
        ),
        (
            row("mislas"),
            ClassifierRecipe::Mislas,
            "fashion_mnist_imb01_stage2_mislas",
            true,
            Some(0.3),
        ),
        (
            row("mislas-no-las"),
            ClassifierRecipe::Mislas,
            "stage2_mislas_no_las",
            true,
            Some(0.0),
        ),
        (
            row("mislas-no-shift"),
            ClassifierRecipe::Mislas,
            "stage2_mislas_no_shift",
            false,
            Some(0.3),
        ),
    ];
    for (t, recipe, preset, shift, smooth_head) in expect {
        let plan = stage2_plan(t, &s1, &ckpt, &presets).unwrap_or_else(|e| panic!("{t:?}: {e}"));
        let c = &plan.config;
        assert!(
            plan.from.starts_with("preset fashion_mnist"),
            "{t:?}: {}",
            plan.from
        );
        assert!(plan.from.ends_with(preset), "{t:?}: {}", plan.from);
        assert_eq!(c.stage(), Stage::Stage2);
        assert_eq!((c.recipe, c.shift_bn), (recipe, shift), "{t:?}");
        if recipe == ClassifierRecipe::Mislas {
            assert_eq!(c.smooth_head, smooth_head, "{t:?}");
        }
        assert_eq!(c.resume, ckpt.display().to_string());
        assert_eq!(
            c.name,
            format!("fashion_mnist_imb01_stage1_mixup_{}", t.name)
        );
        // The stage-1 run's data and machine keys follow.
        assert_eq!(
            (c.data_path.as_str(), c.device.as_str()),
            ("/data/fm", "cpu")
        );
        assert_eq!(c.workers, 0);
        assert!(!c.mixup);
        assert_eq!(Method::of_config(c), Some(t));
    }
    // Without presets: the stage-1 configuration turned into stage 2.
    let plan = stage2_plan(row("lws"), &s1, &ckpt, &[]).unwrap();
    assert!(
        plan.from.starts_with("the stage-1 configuration"),
        "{}",
        plan.from
    );
    let c = &plan.config;
    assert_eq!(
        (c.stage(), c.recipe, c.mixup, c.num_epochs),
        (Stage::Stage2, ClassifierRecipe::Lws, false, 10)
    );
    assert_eq!(c.alpha, None);
}

#[test]
fn enter_launches_the_first_missing_trained_method_and_queues_the_rest() {
    let (d, mut app) = project();
    let root = d.path();
    let s1 = stage1_run(root, "fm_s1_done", 3, true);
    let ckpt = s1.best_checkpoint.clone().unwrap();
    let crt = stage2_run(root, "crt_done", trained_config(row("crt"), &ckpt), true);
    on_runs(&mut app, vec![s1.clone(), crt]);
    send(&mut app, [ch('m')]);
    let m = app.methods.as_mut().unwrap();
    let all: Vec<bool> = m
        .items
        .iter()
        .map(|i| matches!(i, Item::Trained(t) if ["crt", "lws", "mislas"].contains(&t.name)))
        .collect();
    m.checked = all;
    // The second Enter confirms the launch dialog's epochs and devices as planned.
    let fx = send(&mut app, [key(KeyCode::Enter), key(KeyCode::Enter)]);
    // cRT has its run: compared as a trained base. LWS is launched, MiSLAS queued behind it.
    let [Effect::Compare(_, opts), Effect::Launch(lws), Effect::QueueOp(QueueOp::Add(mislas, name))] =
        fx.as_slice()
    else {
        panic!("{fx:?}");
    };
    assert_eq!(
        opts.trained,
        [(
            "crt".to_owned(),
            root.join("saved/crt_done/ckps/model_best.safetensors")
        )]
    );
    assert_eq!(
        opts.methods
            .iter()
            .map(crate::tui::methods::spec_text)
            .collect::<Vec<_>>(),
        ["crt"]
    );
    let Job::Single(lws) = lws.as_ref() else {
        panic!()
    };
    assert_eq!(
        (lws.recipe, lws.resume.as_str()),
        (ClassifierRecipe::Lws, ckpt.to_str().unwrap())
    );
    let Job::Single(mislas) = mislas.as_ref() else {
        panic!()
    };
    assert_eq!(Method::of_config(mislas), Some(row("mislas")));
    assert_eq!(name, "fm_s1_mislas");
    assert_eq!(
        app.screen,
        Screen::Run,
        "the launched run shows on the run screen"
    );
}

#[test]
fn the_view_compares_and_trains_from_the_last_checkpoint_and_says_which() {
    let (d, mut app) = project();
    let root = d.path();
    let s1 = stage1_run(root, "fm_s1_done", 3, true);
    let best = s1.best_checkpoint.clone().unwrap();
    let last = best.with_file_name("current.safetensors");
    fs::write(&last, "").unwrap();
    on_runs(&mut app, vec![s1.clone()]);
    send(&mut app, [ch('m')]);
    let s = render(&app, 80, 24);
    assert!(s.contains("Post-hoc, on current.safetensors"), "{s}");
    let m = app.methods.as_mut().unwrap();
    assert_eq!(m.checkpoint(), last.as_path());
    // CE and a trained method: compare scores the last checkpoint, LWS trains from it.
    m.checked = m
        .items
        .iter()
        .map(|i| matches!(i, Item::Trained(t) if t.name == "lws") || i.label() == "CE")
        .collect();
    let fx = send(&mut app, [key(KeyCode::Enter), key(KeyCode::Enter)]);
    let [Effect::Compare(_, opts), Effect::Launch(lws)] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    assert_eq!(opts.cfg.resume, last.display().to_string());
    let Job::Single(lws) = lws.as_ref() else {
        panic!()
    };
    assert_eq!(lws.resume, last.display().to_string());
}

#[test]
fn the_backbone_pass_shows_its_progress_and_x_cancels_it() {
    use crate::compare::cache::{PassProgress, CANCELLED};
    let (d, mut app) = project();
    let run = stage1_run(d.path(), "fm_s1_done", 3, true);
    on_runs(&mut app, vec![run.clone()]);
    send(&mut app, [ch('m')]);
    // x without a comparison does nothing.
    assert!(send(&mut app, [ch('x')]).is_empty());
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    let [Effect::Compare(_, opts)] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    let progress = PassProgress {
        source: "test set".into(),
        done: 250,
        total: 1000,
        elapsed_s: 5.0,
    };
    send(
        &mut app,
        [Msg::Compare(
            run.dir.clone(),
            CompareMsg::Progress(progress),
        )],
    );
    let s = render(&app, 120, 30);
    // 250 images in 5 s: 50 img/s, 750 left: 15 s.
    assert!(
        s.contains("backbone on the test set: 250/1000 images (25 %) · 50 img/s · ETA 0:15"),
        "{s}"
    );
    assert!(!opts.watch.is_cancelled());
    send(&mut app, [ch('x')]);
    assert!(opts.watch.is_cancelled(), "x sets the worker's stop flag");
    assert_eq!(status_text(&app), "cancelling the comparison…");
    send(
        &mut app,
        [Msg::Compare(run.dir, CompareMsg::Failed(CANCELLED.into()))],
    );
    assert_eq!(app.comparing, None);
    assert_eq!(status_text(&app), "comparison cancelled");
    assert!(render(&app, 120, 30).contains("comparison cancelled"));
}

/// A finished stage-1 run like [`stage1_run`], trained with `loss` on imbalance factor `imb`.
fn stage1_run_of(
    root: &Path,
    name: &str,
    loss: crate::config::StageOneLossName,
    imb: f64,
) -> RunSummary {
    let mut r = stage1_run(root, name, 3, true);
    let c = r.config.as_mut().unwrap();
    (c.loss, c.imb_factor) = (loss, Some(imb));
    r
}

/// A project with a finished CE stage-1 run, a finished Balanced Softmax one of the same data,
/// a CE run of other data, an unfinished CE run, and a finished cRT run from each of the first
/// two; the Methods view open on the CE run. Returns the app and the CE and BS runs.
fn two_backbones(root: &Path, mut app: App) -> (App, RunSummary, RunSummary) {
    use crate::config::StageOneLossName::{BalancedSoftmax, Ce};
    let ce = stage1_run(root, "fm_s1_done", 3, true);
    let bs = stage1_run_of(root, "fm_bs", BalancedSoftmax, 0.01);
    let other_data = stage1_run_of(root, "fm_if10", Ce, 0.1);
    let unfinished = stage1_run(root, "fm_short", 1, true);
    let (ce_ck, bs_ck) = (
        ce.best_checkpoint.clone().unwrap(),
        bs.best_checkpoint.clone().unwrap(),
    );
    let crt_ce = stage2_run(root, "crt_ce", trained_config(row("crt"), &ce_ck), true);
    let crt_bs = stage2_run(root, "crt_bs", trained_config(row("crt"), &bs_ck), true);
    let runs = vec![
        ce.clone(),
        bs.clone(),
        other_data,
        unfinished,
        crt_ce,
        crt_bs,
    ];
    on_runs(&mut app, runs);
    send(&mut app, [ch('m')]);
    (app, ce, bs)
}

/// The other finished stage-1 runs of the same data are offered under the methods (not a
/// stage-2 run, an unfinished run or a run of other data); Space on one adds it as a backbone
/// named by its loss, Space again removes it.
#[test]
fn other_stage1_runs_of_the_same_data_are_offered_and_space_adds_or_removes_one() {
    let (d, app) = project();
    let (mut app, ce, bs) = two_backbones(d.path(), app);
    let m = app.methods.as_ref().unwrap();
    assert_eq!(m.dir, ce.dir);
    let offered: Vec<&str> = m.candidates.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(offered, ["fm_bs"]);
    let s = render(&app, 100, 30);
    assert!(s.contains("Backbones beside it (Space adds)"), "{s}");
    assert!(s.contains("[ ] Balanced Softmax  fm_bs"), "{s}");
    // G: the last line, the offered run; Space adds it, as `balanced_softmax`.
    send(&mut app, [ch('G')]);
    let s = render(&app, 100, 30);
    assert!(
        s.contains("Space adds it as backbone balanced_softmax beside fm_s1_done"),
        "{s}"
    );
    send(&mut app, [key(KeyCode::Char(' '))]);
    let m = app.methods.as_ref().unwrap();
    let names: Vec<&str> = m.backbones.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["ce", "balanced_softmax"]);
    assert_eq!(m.backbones[1].checkpoint, bs.best_checkpoint.unwrap());
    let s = render(&app, 100, 30);
    for text in [
        "Methods · fm_s1_done + 1 backbone",
        "[x] Balanced Softmax  as balanced_softmax",
        "Trained, from each: ce balanced_softmax",
        // cRT has its run on both backbones, LWS on neither.
        "cRT               ✓ ✓",
        "LWS               + +",
    ] {
        assert!(s.contains(text), "{text}:\n{s}");
    }
    send(&mut app, [key(KeyCode::Char(' '))]);
    assert_eq!(app.methods.as_ref().unwrap().backbones.len(), 1);
    assert!(render(&app, 100, 30).contains("[ ] Balanced Softmax  fm_bs"));
}

/// With a second backbone, Enter runs every checked method on each, grouped by method, each
/// trained one from that backbone's own stage-2 run, in one comparison; its results say which
/// run each backbone is and name the rows as `compare` does.
#[test]
fn enter_compares_every_checked_method_on_every_backbone() {
    let (d, app) = project();
    let root = d.path();
    let (mut app, ce, bs) = two_backbones(root, app);
    send(&mut app, [ch('G'), key(KeyCode::Char(' '))]);
    // CE, CE + TS and cRT (whose run is done on both backbones): one comparison.
    let m = app.methods.as_mut().unwrap();
    m.checked = m
        .items
        .iter()
        .map(|i| ["CE", "CE + TS", "cRT"].contains(&i.label().as_str()))
        .collect();
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    let [Effect::Compare(dir, opts)] = fx.as_slice() else {
        panic!("{fx:?}");
    };
    assert_eq!(*dir, ce.dir);
    let specs: Vec<String> = opts
        .methods
        .iter()
        .map(crate::tui::methods::spec_text)
        .collect();
    let want = ["ce", "balanced_softmax", "ce+ts", "balanced_softmax+ts"];
    assert_eq!(
        specs,
        [&want[..], &["crt", "crt-balanced_softmax"]].concat()
    );
    let (ce_ck, bs_ck) = (ce.best_checkpoint.unwrap(), bs.best_checkpoint.unwrap());
    assert_eq!(opts.cfg.resume, ce_ck.display().to_string());
    assert_eq!(opts.bases, [("balanced_softmax".to_owned(), bs_ck.clone())]);
    let crt_ck = |run: &str| {
        root.join("saved")
            .join(run)
            .join("ckps/model_best.safetensors")
    };
    assert_eq!(
        opts.trained,
        [
            ("crt".to_owned(), crt_ck("crt_ce")),
            ("crt-balanced_softmax".to_owned(), crt_ck("crt_bs"))
        ]
    );
    // LWS, with no run on either backbone: one stage-2 run to train from each checkpoint.
    let (m, runs) = (app.methods.as_mut().unwrap(), &app.runs);
    m.checked = m.items.iter().map(|i| i.label() == "LWS").collect();
    let plan = m.run_plan(&runs.all_runs, &runs.facts, &[]);
    let resumes: Vec<(&str, &str)> = plan
        .train
        .iter()
        .map(|(t, c)| (t.name, c.resume.as_str()))
        .collect();
    let (ce_s, bs_s) = (ce_ck.display().to_string(), bs_ck.display().to_string());
    assert_eq!(resumes, [("lws", ce_s.as_str()), ("lws", bs_s.as_str())]);
    assert!(plan.compare.is_none() && plan.errors.is_empty());
    // Enter asks first; the dialog says which backbone each LWS row trains on. Esc: nothing.
    send(&mut app, [key(KeyCode::Enter)]);
    let s = render(&app, 100, 30);
    for text in [
        "2 stage-2 runs each from its backbone's checkpoint",
        "LWS on fm_s1_done",
        "LWS on fm_bs",
    ] {
        assert!(s.contains(text), "{text}:\n{s}");
    }
    assert!(send(&mut app, [key(KeyCode::Esc)]).is_empty());
    // LWS on fm_bs queued (not started: no folder yet): Enter offers only the other one, and
    // says the queued one is queued already.
    let bs_cfg = plan.train[1].1.clone();
    let file = root.join("queued_lws.yaml");
    std::fs::write(&file, bs_cfg.to_yaml()).unwrap();
    let mut job = super::slurm_queue::queued(7, &bs_cfg.name, "queued");
    job.args = vec!["train".into(), "--cfg".into(), file.display().to_string()];
    app.runs.queue = vec![job.clone()];
    send(&mut app, [key(KeyCode::Enter)]);
    let s = render(&app, 100, 30);
    assert!(
        s.contains("1 stage-2 run from this run's checkpoint"),
        "{s}"
    );
    assert!(!s.contains("LWS on fm_bs"), "{s}");
    assert!(send(&mut app, [key(KeyCode::Esc)]).is_empty());
    job.state = "failed".into();
    app.runs.queue = vec![job];
    send(&mut app, [key(KeyCode::Enter)]);
    assert!(render(&app, 100, 30).contains("LWS on fm_bs"));
    assert!(send(&mut app, [key(KeyCode::Esc)]).is_empty());
    // The results: which run each backbone is; rows named as compare names them.
    let mut c = super::test_priors::comparison();
    let label = "Balanced Softmax".to_owned();
    c.bases = vec![(
        "balanced_softmax".into(),
        label,
        bs_ck.display().to_string(),
    )];
    let mut row_bs = super::test_priors::method("balanced_softmax+ts", 64.0, 4.0);
    row_bs.name = "Balanced Softmax + TS".into();
    c.rows.push(row_bs);
    let done = CompareMsg::Done(Box::new(c), root.join("saved/fm_s1_done/compare/x"));
    send(&mut app, [Msg::Compare(ce.dir.clone(), done)]);
    let s = render(&app, 120, 30);
    for text in [
        "backbones: ce = fm_s1_done · balanced_softmax = fm_bs (Balanced Softmax)",
        "Balanced Softmax + TS",
        "64.00 [62.00,66.00]",
    ] {
        assert!(s.contains(text), "{text}:\n{s}");
    }
}
