//! Tests of loading, validation and the key table.
use super::*;
use serde_yaml::Mapping;

const REFERENCE: &str = "name: cifar10_imb001_stage2_mislas\nprint_freq: 40\nworkers: 16\nlog_dir: 'logs'\nmodel_dir: 'ckps'\ndataset: 'cifar10'\ndata_path: './data/cifar10'\nnum_classes: 10\nimb_factor: 0.01\nbackbone: 'resnet32_fe'\nresume: 'Path/to/Stage1_checkpoint.pth.tar'\nhead_class_idx:\n  - 0\n  - 3\nmed_class_idx:\n  - 3\n  - 7\ntail_class_idx:\n  - 7\n  - 10\ndeterministic: False\ndistributed: False\ngpu: null\nworld_size: -1\nrank: -1\ndist_url: 'tcp://224.66.41.62:23456'\ndist_backend: 'nccl'\nmultiprocessing_distributed: False\nmode: 'stage2'\nsmooth_head: 0.3\nsmooth_tail: 0.0\nshift_bn: False\nlr_factor: 0.5\nlr: 0.1\nbatch_size: 128\nweight_decay: 2e-4\nnum_epochs: 10\nmomentum: 0.9\nmixup: False\nalpha: null\n";

#[test]
fn reference_yaml_loads_unchanged() {
    let l = Config::from_yaml_str(REFERENCE, "ref.yaml").unwrap();
    let c = &l.config;
    assert_eq!(c.weight_decay, 2e-4);
    assert_eq!(c.mode, Some(Stage::Stage2));
    assert_eq!(c.alpha, None);
    assert_eq!(c.tail_class_idx, [7, 10]);
    assert!(!c.deterministic);
    // distributed, gpu, dist_backend; the other data-parallel keys are used (crate::distributed).
    assert_eq!(l.ignored.len(), 3);
    assert!(c.validate().is_empty(), "{:?}", c.validate());
}

#[test]
fn unknown_key_names_key_and_file() {
    let e = Config::from_yaml_str("lr: 0.1\nlearning_rate: 3\n", "x.yaml").unwrap_err();
    assert_eq!(e.source_name, "x.yaml");
    assert!(e.message.contains("'learning_rate'"), "{e}");
}

#[test]
fn wrong_type_names_key() {
    let e = Config::from_yaml_str("batch_size: many\n", "x.yaml").unwrap_err();
    assert_eq!(
        e.message, "batch_size: expected a whole number ≥ 1, got 'many'",
        "{e}"
    );
    let e = Config::from_yaml_str("lr: fast\n", "x.yaml").unwrap_err();
    assert_eq!(e.message, "lr: expected a number, got 'fast'", "{e}");
}

#[test]
fn string_exponent_reads_as_float() {
    let l = Config::from_yaml_str("weight_decay: '5e-4'\n", "x.yaml").unwrap();
    assert_eq!(l.config.weight_decay, 5e-4);
}

#[test]
fn overrides_follow_yacs() {
    let mut c = Config::default();
    c.apply_overrides(&[
        "resume".into(),
        "saved/a/ckps/model_best.pth.tar".into(),
        "lr".into(),
        "0.05".into(),
        "head_class_idx".into(),
        "[0, 4]".into(),
        "alpha".into(),
        "null".into(),
    ])
    .unwrap();
    assert_eq!(c.resume, "saved/a/ckps/model_best.pth.tar");
    assert_eq!(c.lr, 0.05);
    assert_eq!(c.head_class_idx, [0, 4]);
    assert_eq!(c.alpha, None);
    assert!(c.apply_overrides(&["lr".into()]).is_err());
    assert!(c.apply_overrides(&["nope".into(), "1".into()]).is_err());
    assert_eq!(c.get("head_class_idx").unwrap(), "[0, 4]");
    assert_eq!(c.get("lr").unwrap(), "0.05");
}

#[test]
fn yaml_round_trip() {
    let c = Config {
        name: "x".into(),
        alpha: None,
        ..Config::default()
    };
    let back = Config::from_yaml_str(&c.to_yaml(), "rt").unwrap().config;
    assert_eq!(back, c);
}

#[test]
fn validation_rules() {
    let mut c = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
    c.smooth_tail = Some(0.5);
    c.lr = 0.0;
    c.imb_factor = Some(1.5);
    let keys: Vec<_> = c.validate().iter().map(|i| i.key).collect();
    assert_eq!(keys, vec!["lr", "imb_factor", "smooth_head"]);
}

#[test]
fn changed_keys_are_listed_in_order() {
    let a = Config::default();
    let b = Config {
        accum_steps: 2,
        lr: 0.05,
        ..Config::default()
    };
    assert_eq!(
        b.changed_from(&a),
        vec![
            ("lr".to_owned(), "0.1".to_owned(), "0.05".to_owned()),
            ("accum_steps".to_owned(), "1".to_owned(), "2".to_owned()),
        ]
    );
    assert!(a.changed_from(&a).is_empty());
}

#[test]
fn amp_and_accumulation_rules() {
    let mut c = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
    c.batch_size = 64;
    // REFERENCE is a stage-2 file without shift learning: up to batch_size micro-batches.
    for (accum, ok) in [(0, false), (1, true), (8, true), (64, true), (65, false)] {
        c.accum_steps = accum;
        let bad = c.validate().iter().any(|i| i.key == "accum_steps");
        assert_eq!(bad, !ok, "accum_steps {accum}");
    }
    // BatchNorm in train mode: at least two images per micro-batch.
    c.shift_bn = true;
    for (accum, ok) in [(32, true), (33, false)] {
        c.accum_steps = accum;
        let bad = c.validate().iter().any(|i| i.key == "accum_steps");
        assert_eq!(bad, !ok, "accum_steps {accum} with shift_bn");
    }
    c.shift_bn = false;
    c.accum_steps = 4;
    c.amp = true;
    for (device, ok) in [
        ("cpu", false),
        ("cuda", true),
        ("cuda:1", true),
        ("auto", true),
    ] {
        c.device = device.into();
        let issues = c.validate();
        let amp = issues.iter().find(|i| i.key == "amp");
        assert_eq!(amp.is_none(), ok, "amp on {device}");
        if let Some(i) = amp {
            assert!(i.message.contains("CUDA"), "{}", i.message);
        }
    }
    // The keys load from YAML and from overrides.
    let mut c = Config::from_yaml_str(
        &format!("{REFERENCE}amp: true\nchannels_last: true\naccum_steps: 2\n"),
        "r",
    )
    .unwrap()
    .config;
    assert!(c.amp && c.channels_last);
    assert_eq!(c.accum_steps, 2);
    c.apply_overrides(&[
        "accum_steps".into(),
        "4".into(),
        "amp".into(),
        "false".into(),
    ])
    .unwrap();
    assert_eq!((c.accum_steps, c.amp), (4, false));
}

#[test]
fn device_specs() {
    assert_eq!(parse_device_spec("cuda:1"), Ok(DeviceSpec::Cuda(1)));
    assert_eq!(parse_device_spec("auto"), Ok(DeviceSpec::Auto));
    assert!(parse_device_spec("gpu").is_err());
}

/// `Config::default()` serialised, captured before the defaults moved into the key table, with
/// the data-parallel keys added since (one process, the reference's -1s), the in-epoch
/// checkpoint interval (10 minutes) and the long-tail baselines' keys (cross-entropy, no re-weighting, the linear classifier: stage 1 unchanged).
const DEFAULTS_YAML: &str = "name: ''\nprint_freq: 40\nworkers: 2\nlog_dir: logs\nmodel_dir: ckps\ncheckpoint_every: 10.0\nmax_restarts: 2\ndataset: cifar10\ndata_path: ./data/cifar10\nnum_classes: 100\nimb_factor: 0.01\nbackbone: resnet32_fe\nresume: ''\nrun_dir: ''\nhead_class_idx:\n- 0\n- 1\nmed_class_idx:\n- 0\n- 1\ntail_class_idx:\n- 0\n- 1\ndeterministic: true\nmode: null\nsmooth_head: null\nsmooth_tail: null\nshift_bn: false\nsync_bn_stats: true\nlr_factor: null\nlr: 0.1\nbatch_size: 128\nweight_decay: 0.002\nnum_epochs: 200\nmomentum: 0.9\ncos: false\nmixup: true\nalpha: 1.0\nseed: 0\ndevice: auto\nwarmup_epochs: null\nlr_milestones:\n- 160\n- 180\nlr_decay: 0.1\nimb_type: exp\nlas_shape: concave\nlas_power: null\neval_batch_size: null\ntrain_list: null\ntest_list: null\nimage_size: 224\neval_resize: null\non_bad_image: fail\npretrained_weights: ''\namp: false\nchannels_last: false\naccum_steps: 1\ngpus: 1\nmultiprocessing_distributed: false\nworld_size: -1\nrank: -1\ndist_url: ''\ndist_timeout: 300.0\nddp_overlap: true\nrecipe: mislas\nloss: ce\nreweight: none\nla_tau: 1.0\nfocal_gamma: 1.0\ncb_beta: 0.9999\ndrw_epoch: 160\nclassifier: linear\nmaxnorm_thresh: 0.1\n";

#[test]
fn defaults_are_unchanged() {
    assert_eq!(Config::default().to_yaml(), DEFAULTS_YAML);
}

/// The keys of the struct, as serde writes them.
fn struct_keys() -> Vec<String> {
    match serde_yaml::to_value(Config::default()).unwrap() {
        Value::Mapping(m) => m.keys().map(|k| k.as_str().unwrap().to_owned()).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_struct_key_is_in_the_table() {
    let missing: Vec<String> = struct_keys()
        .into_iter()
        .filter(|k| key_spec(k).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "keys of Config missing from KEYS: {missing:?}"
    );
}

#[test]
fn every_table_key_is_a_struct_key() {
    let keys = struct_keys();
    let extra: Vec<&str> = KEYS
        .iter()
        .map(|k| k.name)
        .filter(|k| !keys.iter().any(|s| s == k))
        .collect();
    assert!(
        extra.is_empty(),
        "keys of KEYS that Config lacks: {extra:?}"
    );
    let mut names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), KEYS.len(), "a key appears twice in KEYS");
}

#[test]
fn table_defaults_are_todays_defaults() {
    // The table's `default` column, read as YAML, is today's `Config::default()` serialised,
    // value for value.
    let today: Mapping = serde_yaml::from_str(DEFAULTS_YAML).unwrap();
    assert_eq!(today.len(), KEYS.len());
    for k in KEYS {
        let table: Value = serde_yaml::from_str(k.default).unwrap();
        assert_eq!(Some(&table), today.get(k.name), "default of {}", k.name);
    }
}

#[test]
fn table_rows_are_complete() {
    for k in KEYS {
        assert!(!k.help.is_empty(), "{} has no help", k.name);
        assert_eq!(field_help(k.name), k.help);
    }
    assert_eq!(field_help("no_such_key"), "");
}

#[test]
fn shared_keys_and_form_types_come_from_the_table() {
    let shared: Vec<&str> = KEYS
        .iter()
        .filter(|k| is_shared_key(k.name))
        .map(|k| k.name)
        .collect();
    let mut shared_sorted = shared.clone();
    shared_sorted.sort_unstable();
    let mut before = vec![
        "dataset",
        "data_path",
        "num_classes",
        "imb_factor",
        "imb_type",
        "backbone",
        "head_class_idx",
        "med_class_idx",
        "tail_class_idx",
        "seed",
        "device",
        "gpus",
        "multiprocessing_distributed",
        "world_size",
        "rank",
        "dist_url",
        "dist_timeout",
        "ddp_overlap",
        "classifier",
    ];
    before.sort_unstable();
    assert_eq!(shared_sorted, before);
    // The form's Type column as it was before the table.
    for (label, keys) in [
        ("text", "name log_dir model_dir device dist_url"),
        ("path", "data_path resume run_dir pretrained_weights"),
        ("path?", "train_list test_list"),
        (
            "choice",
            "dataset backbone mode imb_type recipe las_shape on_bad_image loss reweight \
             classifier",
        ),
        (
            "int",
            "print_freq workers num_classes batch_size num_epochs seed image_size accum_steps gpus \
             world_size rank drw_epoch",
        ),
        ("int?", "warmup_epochs eval_batch_size eval_resize"),
        (
            "float",
            "lr weight_decay momentum dist_timeout la_tau focal_gamma cb_beta maxnorm_thresh \
             lr_decay",
        ),
        (
            "float?",
            "imb_factor smooth_head smooth_tail lr_factor alpha las_power",
        ),
        ("[a, b)", "head_class_idx med_class_idx tail_class_idx"),
        ("[int]", "lr_milestones"),
        (
            "bool",
            "deterministic shift_bn cos mixup amp channels_last multiprocessing_distributed \
             ddp_overlap",
        ),
    ] {
        for key in keys.split(' ') {
            assert_eq!(key_spec(key).unwrap().kind.label(), label, "{key}");
        }
    }
}

#[test]
fn choices_are_the_values_that_load() {
    for k in KEYS {
        let (ValueKind::Choice(words) | ValueKind::OptChoice(words)) = k.kind else {
            continue;
        };
        for w in words {
            let mut c = Config::default();
            c.set(k.name, w)
                .unwrap_or_else(|e| panic!("{}: {w}: {e}", k.name));
            assert_eq!(c.get(k.name).as_deref(), Some(*w));
        }
        let mut c = Config::default();
        let refused = c.set(k.name, "no_such_choice").is_err()
            || c.validate().iter().any(|i| i.key == k.name);
        assert!(refused, "{} accepts any word", k.name);
    }
}

#[test]
fn integer_lower_bounds_are_checked() {
    let base = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
    for k in KEYS {
        let Some(min) = k.kind.min().filter(|m| *m > 0) else {
            continue;
        };
        let mut c = base.clone();
        c.set(k.name, &(min - 1).to_string()).unwrap();
        let issue = c.validate().into_iter().find(|i| i.key == k.name);
        let issue = issue.unwrap_or_else(|| panic!("{} = {} passes", k.name, min - 1));
        assert!(issue.message.contains(&format!("≥ {min}")), "{issue:?}");
        assert!(k.kind.expected().contains(&format!("≥ {min}")));
    }
}

#[test]
fn type_errors_say_what_was_expected_in_words() {
    let cases = [
        (
            "batch_size",
            "abc",
            "batch_size: expected a whole number ≥ 1, got 'abc'",
        ),
        (
            "batch_size",
            "-3",
            "batch_size: expected a whole number ≥ 1, got -3",
        ),
        (
            "max_restarts",
            "-1",
            "max_restarts: expected a whole number ≥ 0, got -1",
        ),
        (
            "max_restarts",
            "twice",
            "max_restarts: expected a whole number ≥ 0, got 'twice'",
        ),
        (
            "num_epochs",
            "2.5",
            "num_epochs: expected a whole number ≥ 1, got 2.5",
        ),
        (
            "momentum",
            "[1, 2]",
            "momentum: expected a number, got [1, 2]",
        ),
        ("cos", "maybe", "cos: expected true or false, got 'maybe'"),
        (
            "dataset",
            "mnist",
            "dataset: expected one of cifar10, cifar100, fashion_mnist, imagenet, ina2018, \
             places, got 'mnist'",
        ),
        (
            "head_class_idx",
            "[0, 1, 2]",
            "head_class_idx: expected a class range [start, end] of two whole numbers, got \
             [0, 1, 2]",
        ),
        (
            "eval_batch_size",
            "all",
            "eval_batch_size: expected a whole number ≥ 1, or null, got 'all'",
        ),
    ];
    for (key, text, want) in cases {
        let mut c = Config::default();
        assert_eq!(c.set(key, text).unwrap_err(), want);
        let e = Config::from_yaml_str(&format!("{key}: {text}\n"), "f.yaml").unwrap_err();
        assert_eq!(e.to_string(), format!("f.yaml: {want}"));
    }
    let e = Config::default()
        .apply_overrides(&["batch_size".into(), "abc".into()])
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "command line: batch_size: expected a whole number ≥ 1, got 'abc'"
    );
}

#[test]
fn an_empty_file_says_it_is_empty() {
    for text in ["", "\n", "# only a comment\n", "null\n"] {
        let e = Config::from_yaml_str(text, "e.yaml").unwrap_err();
        assert_eq!(e.source_name, "e.yaml");
        assert!(
            e.message
                .starts_with("the file is empty: expected a yacs YAML configuration"),
            "{text:?}: {e}"
        );
    }
    let e = Config::from_yaml_str("[1, 2]\n", "l.yaml").unwrap_err();
    assert!(e.message.contains("expected a mapping"), "{e}");
    let e = Config::from_yaml_str("lr: [\n", "b.yaml").unwrap_err();
    assert!(
        e.message.starts_with("not YAML") && e.message.contains("expected"),
        "{e}"
    );
}

#[test]
fn batch_size_is_bounded_by_the_training_set() {
    let mut c = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
    c.dataset = DatasetName::FashionMnist;
    // Σ_c int(6000 · 0.01^(c/9)): the loader's count of Fashion-MNIST-LT at IF 0.01.
    assert_eq!(c.train_set_size(), Some(14886));
    c.batch_size = 14886;
    c.accum_steps = 1;
    assert!(!c.validate().iter().any(|i| i.key == "batch_size"));
    c.batch_size = 1_000_000_000;
    let issue = c.validate().into_iter().find(|i| i.key == "batch_size");
    assert_eq!(
        issue.unwrap().message,
        "batch_size 1000000000 is larger than the training set (14886 images of \
         Fashion-MNIST-LT at imbalance factor 0.01)"
    );
    c.dataset = DatasetName::Cifar10;
    assert_eq!(c.train_set_size(), Some(12406));
    c.dataset = DatasetName::Cifar100;
    c.num_classes = 100;
    assert_eq!(c.train_set_size(), Some(10847));
    c.imb_type = ImbalanceType::Step;
    assert_eq!(c.train_set_size(), Some(50 * 500 + 50 * 5));
    // Unknown from the configuration alone: the list-file sets, a wrong num_classes, a bad IF.
    c.num_classes = 10;
    assert_eq!(c.train_set_size(), None);
    c.num_classes = 100;
    c.imb_factor = Some(2.0);
    assert_eq!(c.train_set_size(), None);
    c.dataset = DatasetName::Imagenet;
    c.imb_factor = None;
    assert_eq!(c.train_set_size(), None);
    assert!(!c.validate().iter().any(|i| i.key == "batch_size"));
}

#[test]
fn commented_yaml_loads_back() {
    let c = Config {
        name: "x # y".into(),
        data_path: "a: b".into(),
        resume: "line\nbreak".into(),
        test_list: Some("'quoted'".into()),
        head_class_idx: [0, 4],
        ..Config::from_yaml_str(REFERENCE, "r").unwrap().config
    };
    let text = c.to_commented_yaml();
    assert_eq!(
        Config::from_yaml_str(&text, "c").unwrap().config,
        c,
        "{text}"
    );
    assert!(
        text.contains("head_class_idx: [0, 4]") && text.contains("# [start, end) of many-shot"),
        "{text}"
    );
    assert!(
        text.contains("(stage 2 only) MiSLAS LAS: label smoothing"),
        "{text}"
    );
    assert_eq!(text.lines().count(), KEYS.len() + 1);
}

/// `recipe` names a classifier stage: a stage-1 configuration with another one is an error
/// against the key, and cRT/LWS need neither LAS's ε nor `lr_factor`.
#[test]
fn recipe_is_a_stage2_choice() {
    let mut c = Config::from_yaml_str(REFERENCE, "r").unwrap().config;
    c.set("recipe", "crt").unwrap();
    c.smooth_head = None;
    c.smooth_tail = None;
    c.lr_factor = None;
    assert!(c.validate().is_empty(), "{:?}", c.validate());
    c.set("mode", "stage1").unwrap();
    let issues = c.validate();
    let issue = issues
        .iter()
        .find(|i| i.key == "recipe")
        .expect("recipe refused");
    assert!(
        issue
            .message
            .contains("'crt' is a classifier stage: set mode stage2"),
        "{issue:?}"
    );
    c.set("recipe", "mislas").unwrap();
    assert!(c.validate().iter().all(|i| i.key != "recipe"));
}

/// The keys of the long-tail baselines: each bad value is one issue against its key, in words.
#[test]
fn baseline_loss_keys_are_checked() {
    let issue = |yaml: &str| -> Vec<(String, String)> {
        // A usable base: Fashion-MNIST-LT's 10 classes.
        let yaml = format!("name: b\ndataset: fashion_mnist\nnum_classes: 10\n{yaml}");
        let c = Config::from_yaml_str(&yaml, "b.yaml").unwrap().config;
        c.validate()
            .into_iter()
            .map(|i| (i.key.to_owned(), i.message))
            .collect()
    };
    let one = |yaml: &str, key: &str, words: &str| {
        let issues = issue(yaml);
        assert_eq!(issues.len(), 1, "{yaml}: {issues:?}");
        assert_eq!(issues[0].0, key, "{yaml}: {issues:?}");
        assert!(issues[0].1.contains(words), "{yaml}: {issues:?}");
    };
    // The defaults: cross-entropy, no re-weighting, the linear classifier.
    let d = Config::default();
    assert_eq!(
        (d.loss, d.reweight, d.classifier),
        (StageOneLossName::Ce, Reweight::None, ClassifierKind::Linear)
    );
    assert_eq!((d.la_tau, d.cb_beta, d.drw_epoch), (1.0, 0.9999, 160));
    let fine = issue("loss: ldam\nclassifier: normed\nreweight: drw\n");
    assert!(fine.is_empty(), "{fine:?}");
    one("loss: ldam\n", "loss", "set classifier normed");
    one(
        "loss: balanced_softmax\nreweight: cb\n",
        "reweight",
        "already corrects for the class prior",
    );
    one("la_tau: -0.5\n", "la_tau", "≥ 0, is -0.5");
    one("focal_gamma: -1\n", "focal_gamma", "≥ 0, is -1");
    one("cb_beta: 1.0\n", "cb_beta", "LDAM-DRW), is 1");
    one("cb_beta: -0.1\n", "cb_beta", "LDAM-DRW), is -0.1");
    one("lr_decay: 0\n", "lr_decay", "must be in (0, 1]");
    one(
        "lr_decay: 1.5\n",
        "lr_decay",
        "(0, 1] (0.1: the reference's step decay; 1: none), is 1.5",
    );
    assert!(issue("lr_decay: 0.01\n").is_empty());
    one(
        "reweight: drw\nnum_epochs: 30\ndrw_epoch: 30\n",
        "drw_epoch",
        "drw_epoch 30 is not one of the stage's 0-based epochs 0..29",
    );
    // DRW's epoch only matters with reweight drw.
    assert!(issue("num_epochs: 30\ndrw_epoch: 30\n").is_empty());
    let wb = "mode: stage2\nrecipe: wb\n";
    assert!(issue(wb).is_empty());
    one(
        &format!("{wb}classifier: normed\n"),
        "classifier",
        "wb needs classifier linear",
    );
    one(
        &format!("{wb}maxnorm_thresh: 1.5\n"),
        "maxnorm_thresh",
        "code), is 1.5",
    );
    let e = Config::from_yaml_str("loss: softmax\n", "b.yaml").unwrap_err();
    assert!(e.message.contains("loss"), "{e}");
    assert!(e.message.contains("balanced_softmax"), "{e}");
}
