//! Rendering tests (ratatui's `TestBackend`, at 80×24 and 160×48) and `update` tests (key
//! sequences and engine events → state) of the terminal UI.
use super::app::{
    update, AfterDiscard, App, Confirm, Effect, Msg, Overlay, Quit, Screen, GLOBAL_KEYS,
};
use super::hyperparameters::FormMode;
use super::keys::help_rows;
use super::run::RunState;
use super::runs::RunsView;
use super::theme::Theme;
use super::view::view;
use crate::config::{Config, Stage};
use crate::events::{
    BatchStats, BestFigures, Control, DeviceInfo, EpochReport, EvalProgress, Event, Failure,
    FailureKind, StageFinished, StageStarted,
};
use crate::metrics::{EvalReport, ReliabilityBin};
use crate::presets::discover;
use crate::run_dir::RunSummary;
use crate::runs::status::{FolderFacts, RunStatus};
use crate::wire::Job;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

const NO_COLOR: Theme = Theme { color: false };

fn preset_yaml(name: &str, mode: &str, data: &str, epochs: usize) -> String {
    format!(
        "name: {name}\ndataset: fashion_mnist\ndata_path: '{data}'\nnum_classes: 10\n\
         imb_factor: 0.01\nhead_class_idx: [0, 3]\nmed_class_idx: [3, 7]\n\
         tail_class_idx: [7, 10]\nmode: {mode}\nsmooth_head: 0.3\nsmooth_tail: 0.0\n\
         lr_factor: 0.5\nnum_epochs: {epochs}\ncos: true\n"
    )
}

/// A project with two Fashion-MNIST presets (data found), a CIFAR-10 one (data missing) and an
/// unreadable one.
fn project() -> (tempfile::TempDir, App) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("data/fmnist");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("train-images-idx3-ubyte.gz"), "").unwrap();
    let fm = root.join("presets/fashion_mnist");
    fs::create_dir_all(&fm).unwrap();
    fs::write(
        fm.join("fm_imb001_stage1_mixup.yaml"),
        preset_yaml("fm_s1", "stage1", "./data/fmnist", 30),
    )
    .unwrap();
    fs::write(
        fm.join("fm_imb001_stage2_mislas.yaml"),
        preset_yaml("fm_s2", "stage2", "./data/fmnist", 10),
    )
    .unwrap();
    let c10 = root.join("presets/cifar10");
    fs::create_dir_all(&c10).unwrap();
    fs::write(
        c10.join("cifar10_imb001_stage1_mixup.yaml"),
        "name: c10\ndataset: cifar10\ndata_path: ./data/cifar10\nnum_classes: 10\nmode: stage1\n",
    )
    .unwrap();
    fs::write(c10.join("broken.yaml"), "learning_rate: 3\n").unwrap();
    let presets = discover(root, None);
    let app = App::new(root.to_path_buf(), presets, NO_COLOR);
    (dir, app)
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

fn ctrl(c: char) -> Msg {
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

fn send(app: &mut App, msgs: impl IntoIterator<Item = Msg>) -> Vec<Effect> {
    msgs.into_iter().flat_map(|m| update(app, m)).collect()
}

fn typed(text: &str) -> Vec<Msg> {
    text.chars().map(ch).collect()
}

fn render(app: &App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view(app, f)).unwrap();
    let buf = t.backend().buffer();
    (0..h)
        .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>() + "\n")
        .collect()
}

fn eval(top1: f64, ece: f64) -> EvalReport {
    EvalReport {
        samples: 10_000,
        top1,
        top5: 99.0,
        per_class: (0..10).map(|c| 100.0 - 9.0 * c as f64).collect(),
        head: 91.0,
        medium: 68.5,
        tail: 28.0,
        many_shot: Some(91.0),
        medium_shot: Some(68.5),
        few_shot: Some(28.0),
        ece,
        mce: 2.0 * ece,
        nll: 0.812,
        bins: (0..15)
            .map(|i| ReliabilityBin {
                lo: i as f64 / 15.0,
                hi: (i + 1) as f64 / 15.0,
                count: 100,
                confidence: (i as f64 + 0.5) / 15.0,
                accuracy: (i as f64 + 0.5) / 15.0 * 0.8,
            })
            .collect(),
    }
}

fn epoch(stage: Stage, e: usize, n: usize, top1: f64, ece: f64) -> EpochReport {
    EpochReport {
        stage,
        epoch: e,
        num_epochs: n,
        lr: vec![0.1],
        train_loss: 1.5,
        train_top1: 50.0,
        eval: eval(top1, ece),
        best_top1: top1,
        best_ece: ece,
        is_best: true,
        train_seconds: 40.0,
        eval_seconds: 8.0,
        images_per_sec: 400.0,
    }
}

fn started(stage: Stage, epochs: usize) -> Event {
    Event::StageStarted(StageStarted {
        stage,
        run_dir: PathBuf::from(format!("saved/fm_{stage}_202501010000")),
        name: format!("fm_{stage}"),
        dataset: "Fashion-MNIST-LT".into(),
        device: DeviceInfo {
            id: "cuda:0".into(),
            name: "NVIDIA H200".into(),
            memory_total_bytes: Some(150 << 30),
        },
        num_epochs: epochs,
        start_epoch: 0,
        batches_per_epoch: 100,
        images_per_epoch: 12_800,
        class_counts: (0..10).map(|c| 6000 / (c + 1)).collect(),
        head_class_idx: [0, 3],
        med_class_idx: [3, 7],
        tail_class_idx: [7, 10],
    })
}

fn batch(stage: Stage, e: usize, b: usize, loss: f64) -> Event {
    Event::Batch(BatchStats {
        stage,
        epoch: e,
        batch: b,
        batches: 100,
        loss,
        top1: 40.0,
        lr: 0.05,
        images_per_sec: 1234.0,
        memory_bytes: 3 << 30,
    })
}

fn finished(stage: Stage, stopped: bool) -> Event {
    Event::StageFinished(StageFinished {
        stage,
        run_dir: PathBuf::from("saved/x"),
        best: Some(BestFigures {
            top1: 71.2,
            ece: 4.5,
        }),
        best_checkpoint: Some(PathBuf::from("saved/x/ckps/model_best.safetensors")),
        stopped,
    })
}

/// Opens the Fashion-MNIST stage-1 preset (the first preset of its group).
fn open_fm_stage1(app: &mut App) {
    send(app, [ch('/')]);
    send(app, typed("fm_imb001_stage1"));
    send(app, [key(KeyCode::Enter), key(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Hyperparameters);
}

/// Moves the form's selection to `field`.
fn select_field(app: &mut App, field: &str) {
    let idx = Config::keys().iter().position(|k| k == field).unwrap();
    send(app, [key(KeyCode::Home)]);
    send(app, (0..idx).map(|_| key(KeyCode::Down)));
}

fn edit_field(app: &mut App, field: &str, value: &str) {
    select_field(app, field);
    send(app, [key(KeyCode::Enter), ctrl('u')]);
    send(app, typed(value));
    send(app, [key(KeyCode::Enter)]);
}

/// An app in the middle of a both-stages run: stage 1 done (3 epochs), stage 2 at epoch 2.
fn app_with_run() -> (tempfile::TempDir, App) {
    let (dir, mut app) = project();
    open_fm_stage1(&mut app);
    let fx = send(&mut app, [ch('b')]);
    assert!(matches!(fx.as_slice(), [Effect::Launch(_)]));
    let s1 = Stage::Stage1;
    let s2 = Stage::Stage2;
    let mut events = vec![started(s1, 3)];
    for e in 0..3 {
        events.extend((0..100).map(|b| batch(s1, e, b, 2.0 - 0.005 * (e * 100 + b) as f64)));
        events.push(Event::Epoch(Box::new(epoch(
            s1,
            e,
            3,
            50.0 + 5.0 * e as f64,
            9.0,
        ))));
    }
    events.push(finished(s1, false));
    events.push(started(s2, 2));
    events.extend((0..100).map(|b| batch(s2, 0, b, 0.9)));
    events.push(Event::Epoch(Box::new(epoch(s2, 0, 2, 71.2, 4.5))));
    events.extend((0..40).map(|b| batch(s2, 1, b, 0.8)));
    events.push(Event::Log("* Acc@1 71.200\tAcc@5 99.000".into()));
    send(&mut app, events.into_iter().map(Msg::Engine));
    (dir, app)
}

fn fake_runs(root: &Path) -> Vec<RunSummary> {
    let ckpt = root.join("saved/fm_s1_202501010000/ckps/model_best.safetensors");
    fs::create_dir_all(ckpt.parent().unwrap()).unwrap();
    fs::write(&ckpt, "").unwrap();
    let config = Config::from_yaml_str(&preset_yaml("fm_s1", "stage1", "./data/fmnist", 30), "t")
        .unwrap()
        .config;
    vec![
        RunSummary {
            dir: root.join("saved/fm_s1_202501010000"),
            name: "fm_s1_202501010000".into(),
            stage: Some(Stage::Stage1),
            epochs: (0..4)
                .map(|e| epoch(Stage::Stage1, e, 30, 60.0 + e as f64, 7.0))
                .collect(),
            config: Some(config),
            best_checkpoint: Some(ckpt),
        },
        RunSummary {
            dir: root.join("saved/fm_s2_202501020000"),
            name: "fm_s2_202501020000".into(),
            stage: Some(Stage::Stage2),
            epochs: (0..10)
                .map(|e| epoch(Stage::Stage2, e, 10, 80.0, 2.5))
                .collect(),
            config: None,
            best_checkpoint: None,
        },
    ]
}

// ---- presets screen ----

#[test]
fn presets_screen_groups_by_data_set_with_data_status() {
    let (_d, app) = project();
    // The first preset whose data is found is selected at start.
    assert_eq!(
        app.presets.selected_preset().unwrap().name(),
        "fm_imb001_stage1_mixup"
    );
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&app, w, h);
        assert!(s.contains("1 Presets"), "{s}");
        assert!(s.contains("CIFAR-10-LT"), "{s}");
        assert!(s.contains("Fashion-MNIST-LT"), "{s}");
        assert!(s.contains("ImageNet-LT"), "{s}");
        assert!(s.contains("fm_imb001_stage1_mixup"), "{s}");
        assert!(s.contains("✓ found"), "{s}");
        assert!(s.contains("✗ missing"), "{s}");
        assert!(s.contains("✗ error"), "{s}");
        assert!(s.contains("CIFAR-100-LT · no preset"), "{s}");
        assert!(s.contains("Enter open"), "footer: {s}");
    }
    // CIFAR-10's data is missing: the path it was looked for at is shown.
    let mut app = app;
    send(&mut app, [ch('g'), ch('j')]);
    let s = render(&app, 160, 48);
    assert!(s.contains("not found at"), "{s}");
    assert!(s.contains("data/cifar10"), "{s}");
    let fm_row = s
        .lines()
        .find(|l| l.contains("fm_imb001_stage1_mixup"))
        .unwrap();
    assert!(fm_row.contains("resnet32"), "{fm_row}");
    assert!(fm_row.contains("stage1"), "{fm_row}");
    assert!(fm_row.contains("0.01"), "{fm_row}");
    assert!(fm_row.contains("30"), "{fm_row}");
}

#[test]
fn filter_and_navigation() {
    let (_d, mut app) = project();
    assert_eq!(app.presets.visible().len(), 4);
    send(&mut app, [ch('/')]);
    send(&mut app, typed("stage2"));
    // Typing filters live, and `q` or digits are text while typing.
    assert_eq!(app.presets.visible().len(), 1);
    send(&mut app, [key(KeyCode::Enter)]);
    assert_eq!(app.presets.filter, "stage2");
    assert!(render(&app, 80, 24).contains("filter 'stage2'"));
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(app.presets.visible().len(), 4);
    send(&mut app, [ch('g'), ch('j'), ch('j'), ch('k')]);
    assert_eq!(app.presets.selected, 1);
    send(&mut app, [key(KeyCode::End)]);
    assert_eq!(
        app.presets.selected_preset().unwrap().name(),
        "fm_imb001_stage2_mislas"
    );
}

#[test]
fn unreadable_preset_does_not_open() {
    let (_d, mut app) = project();
    send(&mut app, [ch('/')]);
    send(&mut app, typed("broken"));
    send(&mut app, [key(KeyCode::Enter), key(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Presets);
    assert!(app.status.as_ref().unwrap().error);
    assert!(render(&app, 80, 24).contains("cannot be opened"));
}

// ---- hyperparameter form ----

#[test]
fn form_has_both_stages_and_every_field() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    let form = app.form.as_ref().unwrap();
    assert_eq!(form.tabs.len(), 2);
    assert_eq!(form.tab, 0);
    assert_eq!(form.tabs[1].config.stage(), Stage::Stage2);
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&app, w, h);
        assert!(s.contains("Hyperparameters"), "{s}");
        assert!(s.contains("stage1 · fm_imb001_stage1_mixup"), "{s}");
        assert!(s.contains("stage2 · fm_imb001_stage2_mislas"), "{s}");
        assert!(s.contains("name"), "{s}");
        assert!(s.contains("Run name"), "help line: {s}");
    }
    // At a large size every key is on screen, with its type.
    let s = render(&app, 160, 48);
    let row = s.lines().find(|l| l.contains("num_epochs")).unwrap();
    assert!(row.contains("int"), "{row}");
    assert!(row.contains("30"), "{row}");
    send(&mut app, [key(KeyCode::Tab)]);
    assert_eq!(app.form.as_ref().unwrap().tab, 1);
}

#[test]
fn editing_a_field_highlights_it_and_revalidates() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    edit_field(&mut app, "num_epochs", "1");
    let tab = &app.form.as_ref().unwrap().tabs[0];
    assert_eq!(tab.config.num_epochs, 1);
    assert_eq!(tab.preset.num_epochs, 30);
    let s = render(&app, 80, 24);
    let row = s.lines().find(|l| l.contains("num_epochs")).unwrap();
    assert!(row.contains("30"), "preset value kept: {row}");
    assert!(row.contains("1 *"), "edited value marked: {row}");

    // lr must be > 0: the field is flagged with the rule.
    edit_field(&mut app, "lr", "-1");
    let tab = &app.form.as_ref().unwrap().tabs[0];
    assert_eq!(tab.issue("lr"), Some("must be > 0, is -1"));
    let s = render(&app, 80, 24);
    assert!(s.contains("✗ lr"), "{s}");
    assert!(s.contains("must be > 0"), "{s}");
    // u restores the preset's value.
    send(&mut app, [ch('u')]);
    assert!(app.form.as_ref().unwrap().tabs[0].issue("lr").is_none());
}

#[test]
fn leaving_the_form_and_reopening_its_preset_keeps_the_edits() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    edit_field(&mut app, "num_epochs", "1");
    send(&mut app, [key(KeyCode::Esc)]);
    assert_eq!(app.screen, Screen::Presets);
    send(&mut app, [key(KeyCode::Enter)]);
    assert_eq!(app.screen, Screen::Hyperparameters);
    let tab = &app.form.as_ref().unwrap().tabs[0];
    assert_eq!(tab.config.num_epochs, 1, "the edit survived");
}

#[test]
fn a_value_of_the_wrong_type_keeps_the_editor_open() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    select_field(&mut app, "batch_size");
    send(&mut app, [key(KeyCode::Enter), ctrl('u')]);
    send(&mut app, typed("many"));
    send(&mut app, [key(KeyCode::Enter)]);
    let form = app.form.as_ref().unwrap();
    match &form.mode {
        FormMode::Edit(input, Some(err)) => {
            assert_eq!(input.text(), "many");
            assert!(err.contains("batch_size"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    // `q` and `1` are text while editing; Esc cancels and the value is unchanged.
    send(&mut app, [ch('q'), ch('1')]);
    assert_eq!(app.quit, Quit::No);
    assert_eq!(app.screen, Screen::Hyperparameters);
    send(&mut app, [key(KeyCode::Esc)]);
    let form = app.form.as_ref().unwrap();
    assert_eq!(form.mode, FormMode::Browse);
    assert_eq!(form.tabs[0].config.batch_size, 128);
}

#[test]
fn data_keys_follow_in_the_other_stage_and_bools_toggle() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    edit_field(&mut app, "imb_factor", "0.1");
    let form = app.form.as_ref().unwrap();
    assert_eq!(form.tabs[0].config.imb_factor, Some(0.1));
    assert_eq!(form.tabs[1].config.imb_factor, Some(0.1));
    // Training keys do not follow.
    edit_field(&mut app, "num_epochs", "2");
    let form = app.form.as_ref().unwrap();
    assert_eq!(form.tabs[1].config.num_epochs, 10);
    select_field(&mut app, "cos");
    send(&mut app, [key(KeyCode::Enter)]);
    assert!(!app.form.as_ref().unwrap().tabs[0].config.cos);
    // A missing data folder is an issue of data_path.
    edit_field(&mut app, "data_path", "/nonexistent/fm");
    let tab = &app.form.as_ref().unwrap().tabs[1];
    assert!(
        tab.issue("data_path").unwrap().contains("/nonexistent/fm"),
        "{:?}",
        tab.issues
    );
}

#[test]
fn launching_both_stages_and_one_stage() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    edit_field(&mut app, "num_epochs", "1");
    // Stage 2 alone needs a checkpoint: refused, and the selection goes to `resume`.
    send(&mut app, [key(KeyCode::Tab)]);
    let fx = send(&mut app, [ch('r')]);
    assert!(fx.is_empty());
    let form = app.form.as_ref().unwrap();
    assert_eq!(form.keys[form.selected], "resume");
    assert!(app.status.as_ref().unwrap().text.contains("resume"));
    // Both stages: stage 2's resume comes from stage 1.
    let fx = send(&mut app, [ch('b')]);
    match fx.as_slice() {
        [Effect::Launch(job)] => match job.as_ref() {
            Job::Pipeline { stage1, stage2 } => {
                assert_eq!(stage1.num_epochs, 1);
                assert_eq!(stage2.len(), 1);
                assert_eq!(stage2[0].stage(), Stage::Stage2);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(app.screen, Screen::Run);
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.stages_planned, 2);
    assert_eq!(run.state, RunState::Starting);
    // A second launch while the first runs is refused.
    send(&mut app, [ch('2')]);
    let fx = send(&mut app, [key(KeyCode::Tab), ch('r')]);
    assert!(fx.is_empty());
    assert!(app.status.as_ref().unwrap().text.contains("in progress"));
}

#[test]
fn resume_picker_lists_stage1_runs() {
    let (d, mut app) = project();
    send(&mut app, [Msg::Runs(fake_runs(d.path()), HashMap::new())]);
    open_fm_stage1(&mut app);
    send(&mut app, [key(KeyCode::Tab)]);
    select_field(&mut app, "resume");
    send(&mut app, [key(KeyCode::Enter)]);
    assert_eq!(app.form.as_ref().unwrap().mode, FormMode::Pick(0));
    let s = render(&app, 80, 24);
    assert!(s.contains("fm_s1_202501010000"), "{s}");
    assert!(
        !s.contains("fm_s2_202501020000"),
        "stage-2 runs are not candidates: {s}"
    );
    assert!(s.contains("63.00"), "best top-1: {s}");
    send(&mut app, [key(KeyCode::Enter)]);
    let tab = &app.form.as_ref().unwrap().tabs[1];
    assert!(tab.config.resume.ends_with("model_best.safetensors"));
    assert!(tab.issue("resume").is_none(), "{:?}", tab.issues);
    let fx = send(&mut app, [ch('r')]);
    assert!(matches!(fx.as_slice(), [Effect::Launch(j)] if matches!(**j, Job::Single(_))));
}

#[test]
fn saving_a_preset() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    send(&mut app, [ch('w'), ctrl('u')]);
    send(&mut app, typed("quick"));
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    match fx.as_slice() {
        [Effect::SavePreset(name, config)] => {
            assert_eq!(name, "quick");
            // Its own name: its runs get their own folders, not the built-in's.
            assert_eq!(config.name, "quick");
        }
        other => panic!("{other:?}"),
    }
    // A name taken: the prompt stays with the error.
    send(
        &mut app,
        [Msg::Saved(Err(
            "a preset named 'quick' exists already".into()
        ))],
    );
    let s = render(&app, 80, 24);
    assert!(s.contains("exists already"), "{s}");
    assert!(matches!(
        app.form.as_ref().unwrap().mode,
        FormMode::SaveAs(_, Some(_))
    ));
    let fx = send(&mut app, [Msg::Saved(Ok(PathBuf::from("/u/quick2.yaml")))]);
    assert!(matches!(fx.as_slice(), [Effect::LoadPresets]));
    assert_eq!(app.form.as_ref().unwrap().mode, FormMode::Browse);
    assert!(render(&app, 80, 24).contains("saved the preset /u/quick2.yaml"));
}

// ---- live run ----

#[test]
fn engine_events_build_the_dashboard_state() {
    let (_d, app) = app_with_run();
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.state, RunState::Running);
    assert_eq!(run.stage_number, 2);
    assert_eq!(run.epochs.len(), 4);
    assert_eq!(run.batches_seen, 440);
    assert_eq!(run.loss_boundary, Some(300.0));
    assert_eq!(run.loss.points().len(), 440);
    assert_eq!(run.finished.len(), 1);
    assert!((run.images_per_sec.unwrap() - 1234.0).abs() < 1e-6);
    // ETA: 60 batches of 128 images at 1234 img/s, plus one evaluation of 8 s.
    let eta = run.eta_seconds().unwrap();
    assert!((eta - (60.0 * 128.0 / 1234.0 + 8.0)).abs() < 1e-6, "{eta}");
    // Tabs of the reference's log lines become spaces: they would move the terminal's cursor.
    assert!(run.log.iter().any(|l| l.contains("Acc@1 71.200  Acc@5")));
    assert!(run.log.iter().all(|l| !l.chars().any(char::is_control)));
}

#[test]
fn dashboard_renders_progress_charts_and_diagrams() {
    let (_d, app) = app_with_run();
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&app, w, h);
        assert!(s.contains("3 Run"), "{s}");
        assert!(s.contains("Epoch [1] of 2"), "{s}");
        assert!(s.contains("Batch 40/100"), "{s}");
        assert!(s.contains("1234 img/s"), "{s}");
        assert!(s.contains("NVIDIA H200"), "{s}");
        assert!(s.contains("Top-1 71.20%"), "{s}");
        assert!(s.contains("ECE 4.50%"), "{s}");
        assert!(s.contains("Reliability"), "{s}");
        assert!(s.contains("s2"), "stage boundary: {s}");
        assert!(s.contains("p pause"), "footer: {s}");
    }
    let s = render(&app, 160, 48);
    assert!(s.contains("stage 2 of 2 (stage2)"), "{s}");
    assert!(s.contains("150.0 GiB · RAM 3.0 GiB"), "{s}");
    assert!(s.contains("ETA"), "{s}");
    assert!(
        s.contains("many-shot 91 · medium-shot 68 · few-shot 28"),
        "{s}"
    );
    assert!(s.contains("head 91 · medium 68 · tail 28"), "{s}");
    for band in ["head", "med", "tail"] {
        assert!(s.contains(band), "{band}: {s}");
    }
    assert!(s.contains("confidence"), "{s}");
    assert!(s.contains("░"), "calibration gap drawn: {s}");
    assert!(s.contains("┊"), "stage boundary drawn: {s}");
    assert!(s.contains("Acc@1 71.200"), "log: {s}");
}

#[test]
fn class_bar_at_its_place_on_the_dashboard() {
    let (_d, mut app) = app_with_run();
    // Zoom the class panel: class 0 (most frequent, 100 %) is a full bar right of the axis.
    let run = app.run.as_mut().unwrap();
    run.focus = super::run::Panel::Classes;
    run.zoom = true;
    let s = render(&app, 80, 24);
    let lines: Vec<&str> = s.lines().collect();
    let title = lines
        .iter()
        .position(|l| l.contains("Per-class top-1"))
        .unwrap();
    let top = lines[title + 1..]
        .iter()
        .find(|l| l.contains("100┤"))
        .unwrap();
    let axis = top.find("100┤").expect("y axis") + "100┤".len();
    let first_bar = top[axis..].chars().next().unwrap();
    assert_eq!(first_bar, '█', "{top}");
    // The last class (19 %) is short: the top row is empty above it.
    let bars: String = top[axis..].chars().filter(|c| *c == '█').collect();
    assert!(bars.chars().count() < 20, "{top}");
}

#[test]
fn a_new_epoch_shows_before_its_first_batch() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    send(&mut app, [ch('r')]);
    let s1 = Stage::Stage1;
    send(
        &mut app,
        [
            started(s1, 3),
            batch(s1, 0, 99, 1.0),
            Event::EpochStarted {
                stage: s1,
                epoch: 1,
                lr: vec![0.01],
            },
        ]
        .map(Msg::Engine),
    );
    let s = render(&app, 100, 30);
    assert!(s.contains("Epoch [1] of 3"), "{s}");
    assert!(s.contains("Batch 0/100"), "{s}");
    assert!(s.contains("lr 0.0100"), "{s}");
    assert!(s.contains("stage 1 of 1 (stage1)"), "{s}");
}

#[test]
fn focus_zoom_and_log_scroll() {
    let (_d, mut app) = app_with_run();
    send(&mut app, (0..5).map(|_| key(KeyCode::Tab)));
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.focus, super::run::Panel::Log);
    send(&mut app, [key(KeyCode::Up), key(KeyCode::Up)]);
    assert_eq!(app.run.as_ref().unwrap().log_scroll, 2);
    assert!(render(&app, 80, 24).contains("2 lines up"));
    send(&mut app, [key(KeyCode::End), key(KeyCode::Enter)]);
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.log_scroll, 0);
    assert!(run.zoom);
    send(&mut app, [key(KeyCode::BackTab)]);
    assert_eq!(app.run.as_ref().unwrap().focus, super::run::Panel::Classes);
}

#[test]
fn pause_and_resume() {
    let (_d, mut app) = app_with_run();
    let fx = send(&mut app, [ch('p')]);
    assert!(matches!(fx.as_slice(), [Effect::Control(Control::Pause)]));
    send(&mut app, [Msg::Engine(Event::Paused)]);
    assert_eq!(app.run.as_ref().unwrap().state, RunState::Paused);
    assert!(render(&app, 80, 24).contains("paused"));
    let fx = send(&mut app, [ch('p')]);
    assert!(matches!(fx.as_slice(), [Effect::Control(Control::Resume)]));
    send(&mut app, [Msg::Engine(Event::Resumed)]);
    assert_eq!(app.run.as_ref().unwrap().state, RunState::Running);
}

#[test]
fn stop_asks_first_and_sends_one_stop() {
    let (_d, mut app) = app_with_run();
    assert!(send(&mut app, [ch('s')]).is_empty());
    assert_eq!(app.overlay, Some(Overlay::Confirm(Confirm::Stop)));
    assert!(render(&app, 80, 24).contains("Stop the run?"));
    assert!(send(&mut app, [ch('n')]).is_empty());
    assert_eq!(app.overlay, None);
    send(&mut app, [ch('s')]);
    let fx = send(&mut app, [ch('y')]);
    assert!(matches!(fx.as_slice(), [Effect::Control(Control::Stop)]));
    assert_eq!(app.run.as_ref().unwrap().state, RunState::Stopping);
    // No second stop while stopping; the run ends after its checkpoint.
    assert!(send(&mut app, [ch('s')]).is_empty());
    send(
        &mut app,
        [
            Msg::Engine(Event::Checkpoint {
                path: "saved/x/ckps/current.safetensors".into(),
                best: false,
            }),
            Msg::Engine(finished(Stage::Stage2, true)),
            Msg::Engine(Event::Finished),
        ],
    );
    // It ended stopped, not finished: no green "run ended", no ETA left behind.
    assert_eq!(app.run.as_ref().unwrap().state, RunState::Stopped);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("■ run stopped"), "{screen}");
    assert!(!screen.contains("run ended"), "{screen}");
    assert!(screen.contains("ETA –"), "{screen}");
    assert_eq!(app.quit, Quit::No, "a stop is not a quit");
    // With the run over, q quits at once.
    send(&mut app, [ch('q')]);
    assert_eq!(app.quit, Quit::Now);
}

#[test]
fn quit_during_a_run_asks_leave_or_stop() {
    let (_d, mut app) = app_with_run();
    send(&mut app, [ch('q')]);
    assert_eq!(app.overlay, Some(Overlay::Confirm(Confirm::Quit(0))));
    let screen = render(&app, 80, 24);
    assert!(screen.contains("leave it running"), "{screen}");
    assert!(screen.contains("stop it (checkpoint)"), "{screen}");
    // s: stop, then quit once the stop is confirmed.
    let fx = send(&mut app, [ch('s')]);
    assert!(matches!(fx.as_slice(), [Effect::Control(Control::Stop)]));
    assert_eq!(app.quit, Quit::AfterStop);
    // Batches still in flight do not end it; the stopped stage does.
    send(&mut app, [Msg::Engine(batch(Stage::Stage2, 1, 41, 0.7))]);
    assert_eq!(app.quit, Quit::AfterStop);
    send(&mut app, [Msg::Engine(finished(Stage::Stage2, true))]);
    assert_eq!(app.quit, Quit::Now);

    // l: quit now and send nothing: the run goes on in its own process.
    let (_d, mut app) = app_with_run();
    let fx = send(&mut app, [ch('q'), ch('l')]);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(app.quit, Quit::Now);
    assert!(app.run_active());
    // n: neither.
    let (_d, mut app) = app_with_run();
    let fx = send(&mut app, [ch('q'), ch('n')]);
    assert!(fx.is_empty());
    assert_eq!(app.quit, Quit::No);
}

#[test]
fn ctrl_c_stops_and_signals_leave_the_run_running() {
    let (_d, mut app) = app_with_run();
    let fx = send(&mut app, [ctrl('c')]);
    assert!(matches!(fx.as_slice(), [Effect::Control(Control::Stop)]));
    assert_eq!(app.quit, Quit::AfterStop);
    // A natural end of stage 1 would not do; an error or the end does.
    send(
        &mut app,
        [Msg::Engine(Event::Failed(Failure::new(
            FailureKind::Io,
            "disk full",
        )))],
    );
    assert_eq!(app.quit, Quit::Now);

    // A second Ctrl-C quits without waiting.
    let (_d, mut app) = app_with_run();
    send(&mut app, [ctrl('c')]);
    assert_eq!(app.quit, Quit::AfterStop);
    send(&mut app, [ctrl('c')]);
    assert_eq!(app.quit, Quit::Now);

    // A hang-up (SIGHUP, SIGTERM, the end of input) sends no stop: the run outlives the UI.
    let (_d, mut app) = app_with_run();
    let fx = send(&mut app, [Msg::Signal, Msg::Signal]);
    assert!(fx.is_empty(), "{fx:?}");
    assert_eq!(app.quit, Quit::Now);
    assert!(app.run_active());

    // Without a run, Ctrl-C quits at once; so does a dead trainer while waiting.
    let (_d, mut app) = project();
    send(&mut app, [ctrl('c')]);
    assert_eq!(app.quit, Quit::Now);
    let (_d, mut app) = app_with_run();
    send(&mut app, [ctrl('c'), Msg::EngineClosed(None)]);
    assert_eq!(app.quit, Quit::Now);
    assert!(matches!(
        app.run.as_ref().unwrap().state,
        RunState::Failed(_)
    ));
}

#[test]
fn live_runs_are_listed_at_start_and_attached_with_a() {
    let (d, mut app) = project();
    let runs_dir = d.path().join("saved/live_run");
    fs::create_dir_all(&runs_dir).unwrap();
    let summary = RunSummary {
        dir: runs_dir.clone(),
        name: "live_run".into(),
        stage: None,
        epochs: Vec::new(),
        config: None,
        best_checkpoint: None,
    };
    let facts = FolderFacts {
        alive: Some(true),
        ..FolderFacts::default()
    };
    send(
        &mut app,
        [Msg::Runs(
            vec![summary],
            HashMap::from([(runs_dir.clone(), facts)]),
        )],
    );
    assert_eq!(app.screen, Screen::Runs);
    assert!(app.status.as_ref().unwrap().text.contains("1 live run"));
    let fx = send(&mut app, [ch('a')]);
    assert!(
        matches!(fx.as_slice(), [Effect::Attach(p)] if *p == runs_dir),
        "{fx:?}"
    );
    send(&mut app, [Msg::Attached(runs_dir.clone(), Ok(2))]);
    assert_eq!(app.screen, Screen::Run);
    assert!(app.run_active());
    // The attached screen controls the run as a launched one does.
    let fx = send(&mut app, [ch('p')]);
    assert!(
        matches!(fx.as_slice(), [Effect::Control(Control::Pause)]),
        "{fx:?}"
    );
}

/// `r` while the UI follows a run (here an attached one) starts nothing and says how to start
/// it next: the queue.
#[test]
fn r_during_an_attached_run_points_at_the_queue() {
    let (d, mut app) = project();
    let dir = d.path().join("saved/live_run");
    send(&mut app, [Msg::Attached(dir, Ok(1))]);
    assert!(app.run_active());
    send(&mut app, [ch('1')]);
    open_fm_stage1(&mut app);
    for k in ['r', 'b'] {
        let fx = send(&mut app, [ch(k)]);
        assert!(fx.is_empty(), "{k}: {fx:?}");
        let status = app.status.as_ref().unwrap();
        assert!(status.error);
        assert_eq!(status.text, crate::tui::app::RUN_IN_PROGRESS);
        assert!(
            status.text.contains("Q queues this one") && status.text.contains("mislas queue run")
        );
    }
    assert_eq!(app.screen, Screen::Hyperparameters);
}

#[test]
fn a_dead_run_shows_as_dead_and_resumable() {
    let (d, mut app) = project();
    let dir = d.path().join("saved/dead_run");
    let summary = RunSummary {
        dir: dir.clone(),
        name: "dead_run".into(),
        stage: None,
        epochs: Vec::new(),
        config: Some(Config::default()),
        best_checkpoint: None,
    };
    let facts = FolderFacts {
        alive: Some(false),
        last_log_line: Some("Epoch: [0][10/20]".into()),
        current_checkpoint: Some(dir.join("ckps/current.safetensors")),
        modified: Some(std::time::SystemTime::now()),
        started: None,
        node: None,
    };
    send(
        &mut app,
        [Msg::Runs(
            vec![summary],
            HashMap::from([(dir.clone(), facts)]),
        )],
    );
    assert_eq!(
        app.screen,
        Screen::Presets,
        "a dead run is not offered as live"
    );
    assert_eq!(app.runs.status(&dir, &[]), Some(RunStatus::Died));
    assert!(RunStatus::Died.resumable());
    send(&mut app, [ch('4')]);
    assert!(render(&app, 80, 24).contains("dead"));
    let fx = send(&mut app, [ch('a')]);
    assert!(fx.is_empty());
    assert!(app.status.as_ref().unwrap().error);
}

#[test]
fn failed_run_is_reported() {
    let (_d, mut app) = app_with_run();
    send(
        &mut app,
        [Msg::Engine(Event::Failed(Failure::new(
            FailureKind::Data,
            "data_path: no train-images-idx3-ubyte in /x",
        )))],
    );
    let s = render(&app, 80, 24);
    assert!(s.contains("run failed"), "{s}");
    assert!(s.contains("train-images-idx3-ubyte"), "{s}");
}

#[test]
fn run_screen_without_a_run() {
    let (_d, mut app) = project();
    send(&mut app, [ch('3')]);
    let s = render(&app, 80, 24);
    assert!(s.contains("No run launched"), "{s}");
    assert!(send(&mut app, [ch('p'), ch('s')]).is_empty());
}

// ---- runs screen ----

#[test]
fn runs_list_detail_follow_and_compare() {
    let (d, mut app) = project();
    let fx = send(&mut app, [ch('4')]);
    assert!(matches!(fx.as_slice(), [Effect::LoadRuns]));
    send(&mut app, [Msg::Runs(fake_runs(d.path()), HashMap::new())]);
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&app, w, h);
        assert!(s.contains("Runs in saved/"), "{s}");
        let row = s.lines().find(|l| l.contains("fm_s1_2025")).unwrap();
        assert!(row.contains("4/30"), "{row}");
        assert!(row.contains("63.00"), "{row}");
        let row = s.lines().find(|l| l.contains("fm_s2_2025")).unwrap();
        assert!(row.contains("10/10"), "{row}");
        assert!(row.contains("80.00"), "{row}");
    }
    // Open the first: its metrics are re-read now and on every tick.
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    let dir = d.path().join("saved/fm_s1_202501010000");
    assert!(matches!(fx.as_slice(), [Effect::LoadMetrics(p)] if *p == dir));
    let fx = send(&mut app, [Msg::Tick]);
    assert!(matches!(fx.as_slice(), [Effect::LoadMetrics(p)] if *p == dir));
    let more = (0..5)
        .map(|e| epoch(Stage::Stage1, e, 30, 60.0 + e as f64, 7.0))
        .collect();
    send(&mut app, [Msg::Metrics(dir.clone(), Ok(more))]);
    for (w, h) in [(80, 24), (160, 48)] {
        let s = render(&app, w, h);
        assert!(s.contains("top-1 64.00%"), "{s}");
        assert!(s.contains("5/30 epochs"), "{s}");
        assert!(s.contains("Reliability · epoch [4]"), "{s}");
    }
    // Back, mark, compare.
    send(&mut app, [key(KeyCode::Esc), ch('c'), ch('j')]);
    let fx = send(&mut app, [ch('c')]);
    assert_eq!(fx.len(), 2);
    assert!(matches!(app.runs.view, RunsView::Compare(..)));
    let s = render(&app, 160, 48);
    assert!(s.contains("fm_s1_202501010000"), "{s}");
    assert!(s.contains("fm_s2_202501020000"), "{s}");
    assert_eq!(s.matches("Reliability").count(), 2, "{s}");
    // Ticks do nothing off the runs screen.
    send(&mut app, [ch('1')]);
    assert!(send(&mut app, [Msg::Tick]).is_empty());
}

// ---- everywhere ----

#[test]
fn help_lists_every_screen_and_closes_on_any_key() {
    let (_d, mut app) = project();
    send(&mut app, [ch('?')]);
    assert_eq!(app.overlay, Some(Overlay::Help));
    let s = render(&app, 160, 48);
    for t in [
        "1 Presets",
        "2 Hyperparameters",
        "3 Run",
        "4 Runs",
        "both stages",
        "zoom",
    ] {
        assert!(s.contains(t), "{t}: {s}");
    }
    assert!(render(&app, 80, 24).contains("Keys"));
    send(&mut app, [ch('x')]);
    assert_eq!(app.overlay, None);
    assert_eq!(app.quit, Quit::No);
}

#[test]
fn too_small_terminal_says_so() {
    let (_d, app) = project();
    let s = render(&app, 79, 24);
    assert!(s.contains("terminal too small"), "{s}");
    assert!(s.contains("79×24"), "{s}");
    let s = render(&app, 40, 5);
    assert!(s.contains("terminal too small"), "{s}");
    let (_d, app) = app_with_run();
    for (w, h) in [(80, 23), (10, 2), (1, 1)] {
        render(&app, w, h);
    }
}

#[test]
fn every_screen_draws_at_odd_sizes() {
    let (d, mut app) = app_with_run();
    send(&mut app, [Msg::Runs(fake_runs(d.path()), HashMap::new())]);
    for screen in ['1', '2', '3', '4'] {
        send(&mut app, [ch(screen)]);
        for (w, h) in [(80, 24), (81, 25), (100, 30), (120, 40), (250, 70)] {
            render(&app, w, h);
        }
    }
}

#[test]
fn no_color_draws_without_colours() {
    let (_d, app) = app_with_run();
    let mut t = Terminal::new(TestBackend::new(160, 48)).unwrap();
    t.draw(|f| view(&app, f)).unwrap();
    let buf = t.backend().buffer();
    assert!(buf
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
    let mut coloured = app.clone();
    coloured.theme = Theme { color: true };
    t.draw(|f| view(&coloured, f)).unwrap();
    assert!(t
        .backend()
        .buffer()
        .content()
        .iter()
        .any(|c| c.fg != Color::Reset));
}

// ---- issue 13 / 8 ----

/// The panic hook acts for the UI thread only: a trainer thread's panic neither restores the
/// terminal nor writes to stderr (its message is kept); the UI thread's panic restores the
/// terminal once, then prints. Checked in a child process: the hook is process-wide.
#[test]
fn panic_hook_acts_only_for_the_ui_thread() {
    const CHILD: &str = "MISLAS_PANIC_HOOK_CHILD";
    if std::env::var_os(CHILD).is_some() {
        fn restore() {
            println!("restored");
        }
        super::install_panic_hook(std::thread::current().id(), restore);
        super::TERMINAL_HELD.store(true, std::sync::atomic::Ordering::SeqCst);
        let joined = std::thread::spawn(|| panic!("trainer boom")).join();
        assert!(joined.is_err());
        let kept = super::take_other_panic().unwrap_or_default();
        println!("after the trainer; kept: {kept}");
        panic!("ui boom");
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tui::tests::panic_hook_acts_only_for_the_ui_thread",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("trainer boom"), "stderr: {stderr}");
    assert!(stderr.contains("ui boom"), "stderr: {stderr}");
    let after = stdout
        .find("after the trainer; kept: panicked at")
        .expect(&stdout);
    assert!(stdout[after..].contains("trainer boom"), "{stdout}");
    let restored: Vec<usize> = stdout.match_indices("restored").map(|m| m.0).collect();
    assert_eq!(restored.len(), 1, "{stdout}");
    assert!(
        restored[0] > after,
        "restored only by the UI's panic: {stdout}"
    );
}

#[test]
fn a_trainer_error_shows_in_the_run_panel() {
    let (_d, mut app) = app_with_run();
    let msg = "the trainer thread panicked at src/engine/stage.rs:12:5: index out of bounds";
    send(
        &mut app,
        [
            Msg::Engine(Event::Failed(Failure::new(FailureKind::Data, msg))),
            ch('x'),
        ],
    );
    assert!(app.status.is_none(), "a key clears the status line");
    let s = render(&app, 80, 24);
    let panel: String = s.lines().skip(1).take(6).collect();
    assert!(panel.contains("✗ failed"), "{s}");
    assert!(panel.contains("index out of bounds"), "{s}");
    assert!(panel.contains("src/engine/stage.rs:12:5"), "{s}");
}

#[test]
fn class_panel_names_both_splits() {
    let (_d, mut app) = app_with_run();
    let run = app.run.as_mut().unwrap();
    let e = &mut run.epochs.last_mut().unwrap().eval;
    (e.many_shot, e.medium_shot, e.few_shot) = (Some(95.0), Some(55.0), None);
    let s = render(&app, 160, 48);
    assert!(
        s.contains("many-shot 95 · medium-shot 55 · few-shot –"),
        "{s}"
    );
    assert!(s.contains("head 91 · medium 68 · tail 28"), "{s}");
    assert!(
        !s.contains("many 91"),
        "head figures are not many-shot: {s}"
    );
    let s = render(&app, 80, 24);
    assert!(s.contains("many/med/few"), "{s}");
    assert!(s.contains("head/med/tail 91/68/28"), "{s}");
}

/// Every key that does something on a screen is in that screen's table or the global one.
#[test]
fn every_bound_key_is_in_its_screens_help() {
    let (d, form) = project();
    let mut form = form;
    open_fm_stage1(&mut form);
    let (_d2, run) = app_with_run();
    let (_d3, mut runs) = project();
    send(
        &mut runs,
        [Msg::Runs(fake_runs(d.path()), HashMap::new()), ch('4')],
    );
    let (_d4, presets) = project();
    let mut codes: Vec<KeyCode> = (' '..='~').map(KeyCode::Char).collect();
    codes.extend([
        KeyCode::Enter,
        KeyCode::Esc,
        KeyCode::Tab,
        KeyCode::BackTab,
        KeyCode::Backspace,
        KeyCode::Delete,
        KeyCode::Insert,
        KeyCode::Left,
        KeyCode::Right,
        KeyCode::Up,
        KeyCode::Down,
        KeyCode::Home,
        KeyCode::End,
        KeyCode::PageUp,
        KeyCode::PageDown,
        KeyCode::F(1),
        KeyCode::F(5),
    ]);
    let global: Vec<KeyCode> = GLOBAL_KEYS.iter().flat_map(|b| b.codes).copied().collect();
    for (app, table) in [
        (presets, help_codes(super::presets::KEYS)),
        (form, help_codes(super::hyperparameters::KEYS)),
        (run, help_codes(super::run::KEYS)),
        (runs, help_codes(super::runs::KEYS)),
    ] {
        let before = render(&app, 160, 48);
        for &code in &codes {
            let mut a = app.clone();
            let fx = send(&mut a, [key(code)]);
            let acted = !fx.is_empty()
                || a.quit != app.quit
                || a.overlay != app.overlay
                || a.screen != app.screen
                || render(&a, 160, 48) != before;
            if acted {
                assert!(
                    table.contains(&code) || global.contains(&code),
                    "{code:?} acts on {:?} but its help does not list it",
                    app.screen
                );
            }
        }
    }
}

fn help_codes<A: Copy>(table: &[super::keys::Binding<A>]) -> Vec<KeyCode> {
    table.iter().flat_map(|b| b.codes).copied().collect()
}

/// Every row of every table is in the help overlay, and in the footer when it is wide enough.
#[test]
fn help_and_footer_list_every_table_row() {
    let (_d, mut app) = project();
    send(&mut app, [ch('?')]);
    // Tall enough for one column: every row whole.
    let s = render(&app, 160, 90);
    let mut rows = help_rows(GLOBAL_KEYS);
    rows.extend(help_rows(super::view::HELP_KEYS));
    for (screen, _, table) in super::view::screen_tables() {
        let (footer, _) = super::view::footer_hints(screen, 1000);
        assert_eq!(footer.len(), table.len(), "{screen:?}");
        rows.extend(table);
    }
    for (keys, _, help) in rows {
        assert!(
            s.lines().any(|l| l.contains(keys) && l.contains(help)),
            "{keys} {help}: {s}"
        );
    }
    // At 80×24 the help scrolls to its end.
    send(&mut app, (0..90).map(|_| key(KeyCode::Down)));
    assert_eq!(app.overlay, Some(Overlay::Help));
    assert!(render(&app, 80, 24).contains("any other key"));
}

#[test]
fn footer_fits_80_columns_with_help_and_quit() {
    let (d, mut app) = app_with_run();
    send(&mut app, [Msg::Runs(fake_runs(d.path()), HashMap::new())]);
    for (screen, first) in [
        ('1', "Enter open"),
        ('2', "Enter edit"),
        ('3', "p pause"),
        ('4', "Enter/→ open"),
    ] {
        send(&mut app, [ch(screen)]);
        let s = render(&app, 80, 24);
        let footer = s.lines().last().unwrap();
        assert!(footer.trim_end().ends_with("? help  q quit"), "{footer}");
        assert!(footer.contains(first), "{footer}");
    }
    let footer = render(&app, 80, 24).lines().nth(23).unwrap().to_owned();
    assert!(footer.contains("R resume"), "{footer}");
}

#[test]
fn quit_with_unsaved_edits_asks_first() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    edit_field(&mut app, "num_epochs", "1");
    send(&mut app, [ch('q')]);
    assert_eq!(app.quit, Quit::No);
    assert_eq!(
        app.overlay,
        Some(Overlay::Confirm(Confirm::Discard(1, AfterDiscard::Quit)))
    );
    assert!(render(&app, 80, 24).contains("discard 1 unsaved edit"));
    send(&mut app, [ch('n')]);
    assert_eq!(app.quit, Quit::No);
    assert_eq!(app.form.as_ref().unwrap().tabs[0].config.num_epochs, 1);
    // Opening another preset over the edits asks too.
    send(&mut app, [ch('1'), ch('/'), ctrl('u')]);
    send(&mut app, typed("cifar10"));
    send(&mut app, [key(KeyCode::Enter), key(KeyCode::Enter)]);
    assert!(matches!(
        app.overlay,
        Some(Overlay::Confirm(Confirm::Discard(1, AfterDiscard::Open(_))))
    ));
    send(&mut app, [key(KeyCode::Esc), ch('2'), ch('q'), ch('y')]);
    assert_eq!(app.quit, Quit::Now);
    // Saved edits are not lost by a quit: no question.
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    edit_field(&mut app, "num_epochs", "1");
    send(&mut app, [ch('w'), key(KeyCode::Enter)]);
    send(
        &mut app,
        [Msg::Saved(Ok(PathBuf::from("/u/x.yaml"))), ch('q')],
    );
    assert_eq!(app.quit, Quit::Now);
}

/// A run folder under `root/saved` with `done` of `total` epochs, a log ending with `last`, and
/// a current checkpoint when `ckpt`.
fn run_folder(
    root: &Path,
    name: &str,
    (done, total): (usize, usize),
    last: &str,
    ckpt: bool,
) -> PathBuf {
    let dir = root.join("saved").join(name);
    fs::create_dir_all(dir.join("logs")).unwrap();
    fs::create_dir_all(dir.join("ckps")).unwrap();
    let yaml = preset_yaml("fm_s1", "stage1", "./data/fmnist", total);
    let config = Config::from_yaml_str(&yaml, "t").unwrap().config;
    fs::write(dir.join("config.yaml"), config.to_yaml()).unwrap();
    let metrics: String = (0..done)
        .map(|e| serde_json::to_string(&epoch(Stage::Stage1, e, total, 60.0, 5.0)).unwrap() + "\n")
        .collect();
    fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    let log = format!("2026-12-06 04:30:46,110 * ECE   24.836%.\n2026-12-06 04:30:46,110 {last}\n");
    fs::write(dir.join("logs/fm_s1.txt"), log).unwrap();
    if ckpt {
        fs::write(dir.join("ckps/current.safetensors"), "").unwrap();
    }
    // Written long ago: nothing is writing it now.
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
    for f in ["metrics.jsonl", "logs/fm_s1.txt"] {
        fs::File::options()
            .write(true)
            .open(dir.join(f))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    dir
}

fn load_runs(app: &mut App, root: &Path) {
    let runs = crate::run_dir::list_runs(&root.join("saved"));
    let facts = runs
        .iter()
        .map(|r| {
            (
                r.dir.clone(),
                crate::runs::status::read_facts(&r.dir, r.config.as_ref()),
            )
        })
        .collect();
    send(app, [Msg::Runs(runs, facts)]);
}

#[test]
fn runs_show_their_state_and_a_stopped_one_resumes() {
    let (d, mut app) = project();
    let root = d.path();
    run_folder(
        root,
        "a_done",
        (3, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    let stopped = run_folder(
        root,
        "b_stopped",
        (1, 3),
        "=> stopped at epoch 1 batch 7; resume with: resume x",
        true,
    );
    run_folder(
        root,
        "c_failed",
        (1, 3),
        "unusable image /x.jpg (epoch 1 batch 3)",
        true,
    );
    run_folder(
        root,
        "d_killed",
        (1, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        false,
    );
    let live = run_folder(
        root,
        "e_live",
        (1, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    // This process trains e_live.
    open_fm_stage1(&mut app);
    send(&mut app, [ch('r')]);
    let Event::StageStarted(mut s) = started(Stage::Stage1, 3) else {
        unreachable!()
    };
    s.run_dir = live.clone();
    send(&mut app, [Msg::Engine(Event::StageStarted(s)), ch('4')]);
    load_runs(&mut app, root);
    let s = render(&app, 80, 24);
    for (run, state) in [
        ("a_done", "✓ done"),
        ("b_stopped", "■ stopped"),
        ("c_failed", "✗ failed"),
        ("d_killed", "? unfinished"),
        ("e_live", "● live"),
    ] {
        let row = s.lines().find(|l| l.contains(run)).expect(run);
        assert!(row.contains(state), "{run}: {row}");
    }
    // "following" only for what something writes.
    let open = |app: &mut App, name: &str| {
        let i = app.runs.runs.iter().position(|r| r.name == name).unwrap();
        app.runs.selected = i;
        send(app, [key(KeyCode::Enter)]);
        let s = render(app, 100, 30);
        send(app, [key(KeyCode::Esc)]);
        s
    };
    assert!(open(&mut app, "e_live").contains("live · a attaches"));
    let s = open(&mut app, "b_stopped");
    assert!(!s.contains("following"), "{s}");
    assert!(s.contains("stopped · R resumes"), "{s}");
    assert!(open(&mut app, "c_failed").contains("failed · R resumes: unusable image"));
    // R on a finished run is refused; on the stopped one it opens the form to resume it.
    app.runs.selected = app
        .runs
        .runs
        .iter()
        .position(|r| r.name == "a_done")
        .unwrap();
    send(&mut app, [ch('R')]);
    assert_eq!(app.screen, Screen::Runs);
    assert!(app.status.as_ref().unwrap().error);
    app.runs.selected = app.runs.runs.iter().position(|r| r.dir == stopped).unwrap();
    send(&mut app, [ch('R')]);
    assert_eq!(app.screen, Screen::Hyperparameters);
    let form = app.form.as_ref().unwrap();
    let ckpt = stopped.join("ckps/current.safetensors");
    assert_eq!(form.tabs.len(), 1);
    assert_eq!(form.tabs[0].config.resume, ckpt.display().to_string());
    assert_eq!(form.keys[form.selected], "resume");
    assert!(form.tabs[0].issues.is_empty(), "{:?}", form.tabs[0].issues);
}

#[test]
fn help_overlay_has_single_corners() {
    let (_d, mut app) = app_with_run();
    send(&mut app, [ch('?')]);
    let s = render(&app, 80, 24);
    let top = s.lines().nth(1).unwrap();
    assert!(top.starts_with('┏') && top.ends_with('┓'), "{top}");
    let bottom = s.lines().nth(22).unwrap();
    assert!(bottom.starts_with('┗') && bottom.ends_with('┛'), "{bottom}");
}

#[test]
fn failed_launch_leaves_the_run_border_whole() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    send(&mut app, [ch('r')]);
    send(
        &mut app,
        [
            Msg::Engine(Event::Failed(Failure::new(FailureKind::Data, "no data"))),
            ch('x'),
        ],
    );
    let s = render(&app, 80, 24);
    let top = s.lines().find(|l| l.contains(" Run · ")).unwrap();
    assert!(top.ends_with("─╮"), "{top}");
    assert!(!top.contains("─ ─"), "{top}");
    assert!(s.contains("no data"), "{s}");
}

#[test]
fn evaluation_progress_shows_on_the_run_screen() {
    let (_d, mut app) = app_with_run();
    send(
        &mut app,
        [Msg::Engine(Event::EvalProgress(EvalProgress {
            stage: Stage::Stage2,
            epoch: 1,
            images_done: 2_500,
            images_total: 10_000,
            images_per_sec: 1_250.0,
        }))],
    );
    let s = render(&app, 80, 24);
    assert!(s.contains("Evaluating"), "{s}");
    assert!(s.contains("2500/10000 · 1250 img/s · ETA 6s"), "{s}");
    // The epoch's figures end the evaluation line.
    send(
        &mut app,
        [Msg::Engine(Event::Epoch(Box::new(epoch(
            Stage::Stage2,
            1,
            2,
            72.0,
            4.0,
        ))))],
    );
    assert!(!render(&app, 80, 24).contains("Evaluating"));
}

#[test]
fn a_stop_before_the_first_evaluation_shows_no_figures() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    send(&mut app, [ch('r')]);
    let stopped = Event::StageFinished(StageFinished {
        stage: Stage::Stage1,
        run_dir: PathBuf::from("saved/x"),
        best: None,
        best_checkpoint: None,
        stopped: true,
    });
    send(
        &mut app,
        [
            Msg::Engine(started(Stage::Stage1, 3)),
            Msg::Engine(batch(Stage::Stage1, 0, 0, 2.0)),
            Msg::Engine(stopped),
        ],
    );
    let run = app.run.as_ref().unwrap();
    let line = run.log.iter().find(|l| l.contains("stopped")).unwrap();
    assert!(line.contains("no evaluation yet"), "{line}");
    assert!(
        !run.log.iter().any(|l| l.contains("0.00 %")),
        "{:?}",
        run.log
    );
}

#[test]
fn runs_screen_groups_seeds_filters_and_compares_differing_keys() {
    let (d, mut app) = project();
    let root = d.path();
    for (name, seed, top1) in [("s0", 0, 70.0), ("s1", 1, 72.0), ("s2", 2, 77.0)] {
        let dir = run_folder(root, name, (1, 1), "Best Prec@1: 1.000% ECE: 1.000%", false);
        let mut c = Config::from_file(&dir.join("config.yaml")).unwrap().config;
        c.seed = seed;
        fs::write(dir.join("config.yaml"), c.to_yaml()).unwrap();
        let line = serde_json::to_string(&epoch(Stage::Stage1, 0, 1, top1, 5.0)).unwrap();
        fs::write(dir.join("metrics.jsonl"), line + "\n").unwrap();
    }
    let other = run_folder(root, "lr", (1, 1), "Best Prec@1: 1.000% ECE: 1.000%", false);
    let mut c = Config::from_file(&other.join("config.yaml"))
        .unwrap()
        .config;
    c.lr = 0.5;
    fs::write(other.join("config.yaml"), c.to_yaml()).unwrap();
    load_runs(&mut app, root);
    send(&mut app, [ch('4'), ch('g')]);
    let screen = render(&app, 80, 24);
    // 70, 72, 77: mean 73.00, sample std sqrt(13) = 3.61 (numpy.std(ddof=1)).
    assert!(screen.contains("73.00±3.61"), "{screen}");
    assert!(
        screen.lines().any(|l| l.contains(" 3 ")),
        "three seeds: {screen}"
    );
    // The filter: only lr=0.5; a bad term is refused with a message.
    send(&mut app, [ch('g'), ch('/')]);
    send(&mut app, typed("lr"));
    send(&mut app, [key(KeyCode::Enter)]);
    assert!(app.status.as_ref().unwrap().text.contains("key=value"));
    send(&mut app, typed("=0.5"));
    send(&mut app, [key(KeyCode::Enter)]);
    assert_eq!(app.runs.runs.len(), 1);
    assert_eq!(app.runs.runs[0].dir, other);
    assert!(render(&app, 80, 24).contains("filter lr=0.5"));
    send(&mut app, [ch('/'), key(KeyCode::Esc)]);
    assert_eq!(app.runs.runs.len(), 4);
    // Compare lr against a seed run: only lr (and the seed) differ.
    let idx = |app: &App, name: &str| app.runs.runs.iter().position(|r| r.name == name).unwrap();
    app.runs.selected = idx(&app, "lr");
    send(&mut app, [ch('c')]);
    app.runs.selected = idx(&app, "s1");
    send(&mut app, [ch('c')]);
    let screen = render(&app, 80, 24);
    let line = screen.lines().find(|l| l.contains("differs:")).unwrap();
    assert!(
        line.contains("seed 0 → 1") && line.contains("lr 0.5 → 0.1"),
        "{line}"
    );
    assert_eq!(
        line.matches('→').count(),
        2,
        "only the differing keys: {line}"
    );
}

#[test]
fn the_form_queues_a_run_and_the_queue_view_holds_reorders_and_cancels() {
    let (d, mut app) = project();
    open_fm_stage1(&mut app);
    let fx = send(&mut app, [ch('Q')]);
    let [Effect::QueueOp(super::app::QueueOp::Add(job, name))] = fx.as_slice() else {
        panic!("Q queues this stage: {fx:?}");
    };
    assert!(matches!(**job, Job::Single(_)));
    // What the loop does with it, on a queue of its own.
    let q = crate::queue::Queue::open(&d.path().join("data")).unwrap();
    let saved = d.path().join("saved");
    let add = |app: &mut App| {
        let op = super::app::QueueOp::Add(job.clone(), name.clone());
        let what = super::queue_op(&q, op, d.path(), &saved).unwrap();
        send(
            app,
            [
                Msg::QueueChanged(Ok(what)),
                Msg::Queue(Ok(q.list().unwrap())),
            ],
        );
    };
    add(&mut app);
    assert!(app.status.as_ref().unwrap().text.starts_with("queued 1: "));
    add(&mut app);
    let jobs = q.list().unwrap();
    assert_eq!(jobs[0].args[0], "train");
    let yaml = std::path::Path::new(&jobs[0].args[2]);
    assert!(
        Config::from_file(yaml).is_ok(),
        "the queued configuration loads"
    );
    // The queue view: t moves run 2 to the front, Space holds it, x cancels run 1.
    let fx = send(&mut app, [ch('4'), ch('Q')]);
    assert!(
        matches!(fx.as_slice(), [Effect::LoadRuns, Effect::LoadQueue]),
        "{fx:?}"
    );
    assert!(render(&app, 80, 24).contains("queued"));
    let apply = |app: &mut App, keys: Vec<Msg>| {
        for e in send(app, keys) {
            if let Effect::QueueOp(op) = e {
                super::queue_op(&q, op, d.path(), &saved).unwrap();
            }
        }
        send(app, [Msg::Queue(Ok(q.list().unwrap()))]);
    };
    apply(&mut app, vec![key(KeyCode::Down), ch('t')]);
    assert_eq!(app.runs.queue[0].id, 2);
    apply(&mut app, vec![key(KeyCode::Up), ch(' ')]);
    assert_eq!(app.runs.queue[0].state, "held");
    apply(&mut app, vec![key(KeyCode::Down), ch('x')]);
    let ids: Vec<i64> = q.list().unwrap().iter().map(|j| j.id).collect();
    assert_eq!(ids, [2]);
}

#[test]
fn a_sweep_typed_in_the_form_queues_one_run_per_point() {
    let (_d, mut app) = project();
    open_fm_stage1(&mut app);
    send(&mut app, [ch('G')]);
    assert!(render(&app, 80, 24).contains("Sweep"));
    // Replace the suggested text with a 2 × 2 grid.
    send(&mut app, (0..20).map(|_| key(KeyCode::Backspace)));
    send(&mut app, typed("lr 0.05,0.2 × seed 3,4"));
    let fx = send(&mut app, [key(KeyCode::Enter)]);
    let got: Vec<(String, f64, u64)> = fx
        .iter()
        .map(|e| match e {
            Effect::QueueOp(super::app::QueueOp::Add(job, name)) => match &**job {
                Job::Single(c) => {
                    assert_eq!(&c.name, name);
                    (name.clone(), c.lr, c.seed)
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        })
        .collect();
    let base = "fm_s1";
    assert_eq!(
        got,
        [
            (format!("{base}_lr0.05_seed3"), 0.05, 3),
            (format!("{base}_lr0.05_seed4"), 0.05, 4),
            (format!("{base}_lr0.2_seed3"), 0.2, 3),
            (format!("{base}_lr0.2_seed4"), 0.2, 4),
        ]
    );
    // No runs, too many runs, a bad value: the prompt stays with the reason.
    for (text, why) in [
        ("seed ,", "no values"),
        (
            "seed 0,1,2,3,4,5,6,7,8,9,10 × lr 1,2,3,4,5,6,7,8,9,10",
            "more than 100",
        ),
        ("lr x,y", "lr x"),
    ] {
        send(&mut app, [ch('G')]);
        send(&mut app, (0..20).map(|_| key(KeyCode::Backspace)));
        send(&mut app, typed(text));
        let fx = send(&mut app, [key(KeyCode::Enter)]);
        assert!(fx.is_empty(), "{text}: {fx:?}");
        let screen = render(&app, 80, 24);
        assert!(screen.contains(why), "{text}: {screen}");
        send(&mut app, [key(KeyCode::Esc)]);
    }
}

mod launch_dialog;
mod loader;
mod methods;
mod runs_actions;
mod seed_groups;
mod slurm_queue;
mod test_priors;

#[test]
fn the_presets_screen_says_where_it_looks() {
    let (d, mut app) = project();
    let places = crate::presets::PresetPlaces {
        project_root: d.path().to_path_buf(),
        release: d.path().join("presets"),
        installed: false,
        user: Some(d.path().join("config/presets")),
        problem: None,
    };
    app.presets.places = places.describe();
    let s = render(&app, 120, 30);
    let want = format!(
        "Looks in {} (project) · {} (yours)",
        d.path().join("presets").display(),
        d.path().join("config/presets").display()
    );
    assert!(s.contains(&want), "{want}\n{s}");
}

/// The catalogue of screens: one row per screen, keys 1, 2, … in order, the global number keys
/// are exactly the rows' keys, and each key shows its screen with its name lit in the header.
#[test]
fn the_screen_catalogue_drives_the_number_keys_and_the_header() {
    use super::screens::{by_key, Screen as S, SCREENS};
    let all = [S::Presets, S::Hyperparameters, S::Run, S::Runs, S::Methods];
    for s in all {
        assert_eq!(SCREENS.iter().filter(|r| r.screen == s).count(), 1, "{s:?}");
    }
    assert_eq!(SCREENS.len(), all.len());
    let keys: Vec<char> = SCREENS.iter().map(|r| r.key).collect();
    assert_eq!(keys, ['1', '2', '3', '4', '5']);
    let global: Vec<KeyCode> = GLOBAL_KEYS
        .iter()
        .find(|b| b.action == super::app::GlobalKey::Screen)
        .unwrap()
        .codes
        .to_vec();
    assert_eq!(
        global,
        keys.iter().map(|&c| KeyCode::Char(c)).collect::<Vec<_>>()
    );
    assert_eq!(by_key(KeyCode::Char('6')), None);
    let (_d, mut app) = project();
    for r in SCREENS {
        send(&mut app, [ch(r.key)]);
        assert_eq!(app.screen, r.screen);
        assert_eq!(by_key(KeyCode::Char(r.key)), Some(r.screen));
        let s = render(&app, 80, 24);
        assert!(s
            .lines()
            .next()
            .unwrap()
            .contains(&format!(" {} {} ", r.key, r.name)));
    }
    // The Methods screen before any run was chosen says how to choose one.
    send(&mut app, [ch('5')]);
    let s = render(&app, 80, 24);
    assert!(s.contains("m on a finished stage-1 run"), "{s}");
}

/// `R` says why a run cannot be resumed: a failed or killed run that never wrote a checkpoint
/// (it died before its first one), a finished one, a live one; a killed run is listed as
/// killed.
#[test]
fn r_says_why_a_run_cannot_be_resumed() {
    let (d, mut app) = project();
    let root = d.path();
    let failed = "unusable image /x.jpg (epoch 0 batch 3)";
    run_folder(root, "a_failed_early", (0, 3), failed, false);
    run_folder(
        root,
        "b_done",
        (3, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    let killed = run_folder(root, "c_killed", (1, 3), "Epoch: [0][ 40/118]", false);
    send(&mut app, [ch('4')]);
    load_runs(&mut app, root);
    // What the folder of a process killed by kill -9 says (its lock free, no last event).
    let mut facts = app.runs.facts(&killed);
    facts.alive = Some(false);
    send(&mut app, [Msg::Facts(killed.clone(), facts)]);
    let s = render(&app, 80, 24);
    let row = s.lines().find(|l| l.contains("c_killed")).unwrap();
    assert!(row.contains("✗ killed"), "{row}");
    for (name, why) in [
        (
            "a_failed_early",
            "a_failed_early failed before its first checkpoint (ckps/current.safetensors)",
        ),
        ("b_done", "b_done finished: nothing to resume"),
        (
            "c_killed",
            "c_killed was killed before its first checkpoint",
        ),
    ] {
        app.runs.selected = app.runs.runs.iter().position(|r| r.name == name).unwrap();
        assert!(send(&mut app, [ch('R')]).is_empty());
        assert_eq!(app.screen, Screen::Runs);
        let status = app.status.clone().unwrap();
        assert!(
            status.error && status.text.contains(why),
            "{name}: {}",
            status.text
        );
    }
}

/// The runs list gives the best epoch, duration, start and device where the terminal is wide
/// enough (none at 80 columns, where the name keeps its room).
#[test]
fn the_runs_list_shows_best_epoch_duration_start_and_device() {
    let (d, mut app) = project();
    let root = d.path();
    let dir = run_folder(
        root,
        "a_run",
        (3, 3),
        "Best Prec@1: 60.000% ECE: 5.000%",
        true,
    );
    // Epoch 2 of 3 (index 1) is the best; each epoch took 40 s + 8 s.
    let metrics: String = (0..3)
        .map(|e| {
            let mut r = epoch(Stage::Stage1, e, 3, 60.0, 5.0);
            r.is_best = e == 1;
            serde_json::to_string(&r).unwrap() + "\n"
        })
        .collect();
    fs::write(dir.join("metrics.jsonl"), metrics).unwrap();
    let start = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
    fs::File::options()
        .write(true)
        .open(dir.join("config.yaml"))
        .unwrap()
        .set_modified(start)
        .unwrap();
    send(&mut app, [ch('4')]);
    load_runs(&mut app, root);
    let r = &app.runs.runs[0];
    assert_eq!(super::runs::best_epoch(r), Some(2));
    // At 80 columns the name keeps its room; from 90 the best epoch comes.
    let s = render(&app, 80, 24);
    assert!(!s.contains("@ep"), "{s}");
    let s = render(&app, 90, 24);
    assert!(s.contains("@ep"), "{s}");
    let row = s.lines().find(|l| l.contains("a_run")).unwrap();
    // ECE@best 5.00, then the best epoch: 2.
    assert!(row.contains("5.00     2 "), "{row}");
    assert!(!s.contains("Started"), "{s}");
    let stamp = chrono::DateTime::<chrono::Local>::from(start)
        .format("%m-%d %H:%M")
        .to_string();
    let device = r.config.as_ref().unwrap().device.clone();
    let s = render(&app, 130, 30);
    for text in ["@ep", "Time", "Started", "Device"] {
        assert!(s.contains(text), "{text}: {s}");
    }
    let row = s.lines().find(|l| l.contains("a_run")).unwrap();
    // 3 × 48 s.
    for text in ["2m24s", stamp.as_str(), device.as_str()] {
        assert!(row.contains(text), "{text}: {row}");
    }
}
