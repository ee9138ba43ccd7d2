//! The presets under `presets/`: the MiSLAS release's 18 configurations (CIFAR-10/100-LT at three
//! imbalance factors, ImageNet-LT, iNaturalist 2018, Places-LT; stage 1 mixup and stage 2 MiSLAS)
//! and mislas's Fashion-MNIST-LT ones load, validate, and carry the release's values.
use mislas::config::{Config, DatasetName, LoadedConfig, Stage, IGNORED_KEYS};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

fn preset_path(folder: &str, stem: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("presets")
        .join(folder)
        .join(format!("{stem}.yaml"))
}

fn load(folder: &str, stem: &str) -> LoadedConfig {
    let path = preset_path(folder, stem);
    let loaded = Config::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let issues = loaded.config.validate();
    assert!(issues.is_empty(), "{}: {issues:?}", path.display());
    assert_eq!(loaded.config.name, stem, "{}", path.display());
    loaded
}

/// The keys of a preset file in file order.
fn file_keys(folder: &str, stem: &str) -> Vec<String> {
    let text = std::fs::read_to_string(preset_path(folder, stem)).unwrap();
    let map: Mapping = serde_yaml::from_str(&text).unwrap();
    map.keys().map(|k| k.as_str().unwrap().to_owned()).collect()
}

/// Keys of the release's files, in their order: the common head, the distributed block, then
/// the stage's training keys.
fn reference_keys(stage: Stage) -> Vec<&'static str> {
    let mut keys = vec![
        "name",
        "print_freq",
        "workers",
        "log_dir",
        "model_dir",
        "dataset",
        "data_path",
        "num_classes",
        "imb_factor",
        "backbone",
        "resume",
        "head_class_idx",
        "med_class_idx",
        "tail_class_idx",
        "deterministic",
    ];
    // The reference's distributed keys, in its order (mislas uses all but distributed, gpu and
    // dist_backend: see src/dist).
    keys.extend_from_slice(&[
        "distributed",
        "gpu",
        "world_size",
        "rank",
        "dist_url",
        "dist_backend",
        "multiprocessing_distributed",
    ]);
    keys.push("mode");
    keys.extend_from_slice(match stage {
        Stage::Stage1 => &[
            "lr",
            "batch_size",
            "weight_decay",
            "num_epochs",
            "momentum",
            "cos",
            "mixup",
            "alpha",
        ],
        Stage::Stage2 => &[
            "smooth_head",
            "smooth_tail",
            "shift_bn",
            "lr_factor",
            "lr",
            "batch_size",
            "weight_decay",
            "num_epochs",
            "momentum",
            "mixup",
            "alpha",
        ],
    });
    keys
}

/// What differs between the release's data sets.
struct DatasetRow {
    folder: &'static str,
    dataset: DatasetName,
    data_path: &'static str,
    num_classes: usize,
    backbone: &'static str,
    print_freq: usize,
    workers: usize,
    /// Class-index boundaries: head [b0, b1), medium [b1, b2), tail [b2, b3).
    bounds: [usize; 4],
    batch_size: usize,
}

/// One release file pair (stage 1 + stage 2) and its values.
struct Run {
    stem: &'static str,
    imb_factor: Option<f64>,
    weight_decay: f64,
    stage1_epochs: usize,
    stage1_cos: bool,
    stage1_alpha: f64,
    stage1_deterministic: bool,
    /// smooth_head, smooth_tail, shift_bn, lr_factor.
    stage2: (f64, f64, bool, f64),
}

fn check_reference(row: &DatasetRow, run: &Run) {
    for stage in [Stage::Stage1, Stage::Stage2] {
        let stem = match stage {
            Stage::Stage1 => format!("{}_stage1_mixup", run.stem),
            Stage::Stage2 => format!("{}_stage2_mislas", run.stem),
        };
        let what = format!("{}/{stem}", row.folder);
        assert_eq!(
            file_keys(row.folder, &stem),
            reference_keys(stage),
            "{what}: keys or their order differ from the release"
        );
        let loaded = load(row.folder, &stem);
        assert_eq!(loaded.ignored, IGNORED_KEYS, "{what}");
        let c = &loaded.config;
        assert_eq!(c.mode, Some(stage), "{what}");
        assert_eq!(c.dataset, row.dataset, "{what}");
        assert_eq!(c.data_path, row.data_path, "{what}");
        assert_eq!(c.num_classes, row.num_classes, "{what}");
        assert_eq!(c.imb_factor, run.imb_factor, "{what}");
        assert_eq!(c.backbone, row.backbone, "{what}");
        assert_eq!(c.print_freq, row.print_freq, "{what}");
        assert_eq!(c.workers, row.workers, "{what}");
        assert_eq!((c.log_dir.as_str(), c.model_dir.as_str()), ("logs", "ckps"));
        let [b0, b1, b2, b3] = row.bounds;
        assert_eq!(
            (c.head_class_idx, c.med_class_idx, c.tail_class_idx),
            ([b0, b1], [b1, b2], [b2, b3]),
            "{what}"
        );
        assert_eq!(c.lr, 0.1, "{what}");
        assert_eq!(c.momentum, 0.9, "{what}");
        assert_eq!(c.batch_size, row.batch_size, "{what}");
        assert_eq!(c.weight_decay, run.weight_decay, "{what}");
        match stage {
            Stage::Stage1 => {
                assert_eq!(c.resume, "", "{what}");
                assert_eq!(c.deterministic, run.stage1_deterministic, "{what}");
                assert_eq!(c.num_epochs, run.stage1_epochs, "{what}");
                assert_eq!(c.cos, run.stage1_cos, "{what}");
                assert!(c.mixup, "{what}");
                assert_eq!(c.alpha, Some(run.stage1_alpha), "{what}");
            }
            Stage::Stage2 => {
                let (head, tail, shift_bn, lr_factor) = run.stage2;
                assert_eq!(c.resume, "Path/to/Stage1_checkpoint.pth.tar", "{what}");
                assert!(!c.deterministic, "{what}");
                assert_eq!(c.num_epochs, 10, "{what}");
                assert!(
                    !c.cos,
                    "{what}: the release's stage-2 files leave cos at its default"
                );
                assert!(!c.mixup, "{what}");
                assert_eq!(c.alpha, None, "{what}");
                assert_eq!(c.smooth_head, Some(head), "{what}");
                assert_eq!(c.smooth_tail, Some(tail), "{what}");
                assert_eq!(c.shift_bn, shift_bn, "{what}");
                assert_eq!(c.lr_factor, Some(lr_factor), "{what}");
            }
        }
        // The mislas additions stay at the defaults that reproduce the reference.
        let d = Config::default();
        assert_eq!(
            (c.seed, &c.device, c.warmup_epochs, &c.lr_milestones),
            (d.seed, &d.device, d.warmup_epochs, &d.lr_milestones),
            "{what}"
        );
        assert_eq!(
            (c.imb_type, c.las_shape, c.las_power, c.eval_batch_size),
            (d.imb_type, d.las_shape, d.las_power, d.eval_batch_size),
            "{what}"
        );
    }
}

fn cifar_run(stem: &'static str, imb: f64, stage2: (f64, f64, bool, f64)) -> Run {
    Run {
        stem,
        imb_factor: Some(imb),
        weight_decay: 2e-4,
        stage1_epochs: 200,
        stage1_cos: false,
        stage1_alpha: 1.0,
        stage1_deterministic: false,
        stage2,
    }
}

#[test]
fn cifar10_presets_match_the_release() {
    let row = DatasetRow {
        folder: "cifar10",
        dataset: DatasetName::Cifar10,
        data_path: "./data/cifar10",
        num_classes: 10,
        backbone: "resnet32_fe",
        print_freq: 40,
        workers: 16,
        bounds: [0, 3, 7, 10],
        batch_size: 128,
    };
    for run in [
        cifar_run("cifar10_imb001", 0.01, (0.3, 0.0, false, 0.5)),
        cifar_run("cifar10_imb002", 0.02, (0.2, 0.0, false, 0.2)),
        cifar_run("cifar10_imb01", 0.1, (0.1, 0.0, false, 0.2)),
    ] {
        check_reference(&row, &run);
    }
}

#[test]
fn cifar100_presets_match_the_release() {
    let row = DatasetRow {
        folder: "cifar100",
        dataset: DatasetName::Cifar100,
        data_path: "./data/cifar100",
        num_classes: 100,
        backbone: "resnet32_fe",
        print_freq: 40,
        workers: 4,
        bounds: [0, 36, 71, 100],
        batch_size: 128,
    };
    // The release's CIFAR-100-LT IF 100 stage-1 file is the only one with deterministic: True.
    let imb001 = Run {
        stage1_deterministic: true,
        ..cifar_run("cifar100_imb001", 0.01, (0.4, 0.1, true, 0.2))
    };
    for run in [
        imb001,
        cifar_run("cifar100_imb002", 0.02, (0.3, 0.0, true, 0.1)),
        cifar_run("cifar100_imb01", 0.1, (0.2, 0.0, true, 0.1)),
    ] {
        check_reference(&row, &run);
    }
}

#[test]
fn large_scale_presets_match_the_release() {
    let large =
        |folder, dataset, data_path, num_classes, backbone, print_freq, bounds| DatasetRow {
            folder,
            dataset,
            data_path,
            num_classes,
            backbone,
            print_freq,
            workers: 48,
            bounds,
            batch_size: 256,
        };
    let run = |stem, weight_decay, stage1_epochs, stage2| Run {
        stem,
        imb_factor: None,
        weight_decay,
        stage1_epochs,
        stage1_cos: true,
        stage1_alpha: 0.2,
        stage1_deterministic: false,
        stage2,
    };
    let cases = [
        (
            large(
                "imagenet",
                DatasetName::Imagenet,
                "Path/to/Data/ImageNet/",
                1000,
                "resnet50_fe",
                100,
                [0, 390, 835, 1000],
            ),
            run("imagenet_resnet50", 5e-4, 180, (0.3, 0.0, true, 0.05)),
        ),
        (
            large(
                "ina2018",
                DatasetName::Ina2018,
                "Path/to/Data/iNaturalist2018",
                8142,
                "resnet50_fe",
                200,
                [0, 842, 4543, 8142],
            ),
            run("ina2018_resnet50", 1e-4, 200, (0.3, 0.0, true, 0.05)),
        ),
        (
            large(
                "places",
                DatasetName::Places,
                "Path/to/Data/Places365/",
                365,
                "resnet152_fe",
                100,
                [0, 131, 288, 365],
            ),
            run("places_resnet152", 5e-4, 90, (0.4, 0.1, true, 0.05)),
        ),
    ];
    for (row, run) in &cases {
        check_reference(row, run);
    }
}

#[test]
fn fashion_mnist_presets() {
    for (tag, imb) in [("imb001", 0.01), ("imb01", 0.1)] {
        for stage in [Stage::Stage1, Stage::Stage2] {
            let stem = match stage {
                Stage::Stage1 => format!("fashion_mnist_{tag}_stage1_mixup"),
                Stage::Stage2 => format!("fashion_mnist_{tag}_stage2_mislas"),
            };
            let loaded = load("fashion_mnist", &stem);
            assert!(loaded.ignored.is_empty(), "{stem}: {:?}", loaded.ignored);
            let c = &loaded.config;
            assert_eq!(c.dataset, DatasetName::FashionMnist, "{stem}");
            assert_eq!(c.data_path, "/usr/share/datasets/fashion-mnist", "{stem}");
            assert_eq!(c.num_classes, 10, "{stem}");
            assert_eq!(c.imb_factor, Some(imb), "{stem}");
            assert_eq!(c.backbone, "resnet32_fe", "{stem}");
            assert_eq!(
                (c.head_class_idx, c.med_class_idx, c.tail_class_idx),
                ([0, 3], [3, 7], [7, 10]),
                "{stem}"
            );
            assert_eq!((c.workers, c.print_freq, c.batch_size), (2, 40, 128));
            assert!(c.deterministic, "{stem}");
            assert_eq!(c.resume, "", "{stem}");
            assert_eq!(c.mode, Some(stage), "{stem}");
            assert_eq!(c.lr, 0.1, "{stem}");
            assert_eq!(c.weight_decay, 2e-4, "{stem}");
            assert_eq!(c.momentum, 0.9, "{stem}");
            assert!(c.cos, "{stem}");
            match stage {
                Stage::Stage1 => {
                    assert_eq!(c.num_epochs, 30, "{stem}");
                    assert_eq!(c.warmup_epochs, Some(5), "{stem}");
                    assert_eq!(c.effective_warmup(), 5, "{stem}");
                    assert!(c.mixup, "{stem}");
                    assert_eq!(c.alpha, Some(1.0), "{stem}");
                }
                Stage::Stage2 => {
                    assert_eq!(c.num_epochs, 10, "{stem}");
                    assert_eq!(c.smooth_head, Some(0.3), "{stem}");
                    assert_eq!(c.smooth_tail, Some(0.0), "{stem}");
                    assert!(c.shift_bn, "{stem}");
                    assert_eq!(c.lr_factor, Some(0.5), "{stem}");
                    assert!(!c.mixup, "{stem}");
                    assert_eq!(c.alpha, None, "{stem}");
                }
            }
        }
    }
}

/// Every file under `presets/` is one of the 52 checked above, and all of them load and
/// validate (so a preset added later without a test still gets the basic check).
#[test]
fn every_preset_file_loads_and_validates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    let mut files = Vec::new();
    for folder in std::fs::read_dir(&root).unwrap() {
        let folder = folder.unwrap().path();
        for file in std::fs::read_dir(&folder).unwrap() {
            let file = file.unwrap().path();
            assert_eq!(
                file.extension().and_then(|e| e.to_str()),
                Some("yaml"),
                "{}",
                file.display()
            );
            let stem = file.file_stem().unwrap().to_str().unwrap().to_owned();
            let dataset = load(folder.file_name().unwrap().to_str().unwrap(), &stem)
                .config
                .dataset;
            assert_eq!(
                Value::String(folder.file_name().unwrap().to_str().unwrap().to_owned()),
                serde_yaml::to_value(dataset).unwrap(),
                "{}: the folder names the data set",
                file.display()
            );
            files.push(stem);
        }
    }
    files.sort();
    // 22 of the release and Fashion-MNIST-LT, a cRT and an LWS preset next to each of the 11
    // MiSLAS stage-2 presets, Fashion-MNIST-LT's two MiSLAS ablations at each IF, and the
    // baselines' LDAM-DRW and weight-balancing pairs.
    assert_eq!(files.len(), 22 + 22 + 4 + 4, "{files:?}");
}

/// Decoupling's classifier stages (Kang et al., ICLR 2020): next to every MiSLAS stage-2 preset,
/// a cRT and an LWS one with the same data, optimiser and epochs (10, cosine, class-aware
/// sampler), backbone in eval mode (no shift learning) and plain cross-entropy (no LAS keys).
#[test]
fn crt_and_lws_presets_sit_next_to_each_mislas_stage2() {
    use mislas::config::ClassifierRecipe;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("presets");
    let mut seen = 0;
    for folder in std::fs::read_dir(&root).unwrap() {
        let folder = folder.unwrap().file_name().into_string().unwrap();
        for file in std::fs::read_dir(root.join(&folder)).unwrap() {
            let stem = file
                .unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let Some(base) = stem.strip_suffix("_stage2_mislas") else {
                continue;
            };
            let mislas = load(&folder, &stem).config;
            for (word, recipe) in [
                ("crt", ClassifierRecipe::Crt),
                ("lws", ClassifierRecipe::Lws),
            ] {
                let other_stem = format!("{base}_stage2_{word}");
                let other = load(&folder, &other_stem).config;
                assert_eq!(other.recipe, recipe, "{other_stem}");
                assert_eq!(other.stage(), Stage::Stage2, "{other_stem}");
                assert!(!other.shift_bn && !other.mixup, "{other_stem}");
                assert_eq!(other.num_epochs, 10, "{other_stem}");
                assert_eq!((other.smooth_head, other.lr_factor), (None, None));
                // Only the method differs from MiSLAS's preset.
                let mut same = other.clone();
                same.name = mislas.name.clone();
                same.recipe = ClassifierRecipe::Mislas;
                same.shift_bn = mislas.shift_bn;
                same.smooth_head = mislas.smooth_head;
                same.smooth_tail = mislas.smooth_tail;
                same.lr_factor = mislas.lr_factor;
                assert_eq!(same, mislas, "{other_stem}");
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 22);
    // The MiSLAS ablation switches of Fashion-MNIST-LT: LAS off is ε = 0 for every class (plain
    // cross-entropy), shift learning off keeps the stage-1 BatchNorm statistics.
    for tag in ["imb001", "imb01"] {
        let full = load(
            "fashion_mnist",
            &format!("fashion_mnist_{tag}_stage2_mislas"),
        )
        .config;
        let no_las = load(
            "fashion_mnist",
            &format!("fashion_mnist_{tag}_stage2_mislas_no_las"),
        );
        let no_shift = load(
            "fashion_mnist",
            &format!("fashion_mnist_{tag}_stage2_mislas_no_shift"),
        );
        let mut c = no_las.config.clone();
        assert_eq!((c.smooth_head, c.smooth_tail), (Some(0.0), Some(0.0)));
        c.name = full.name.clone();
        c.smooth_head = full.smooth_head;
        assert_eq!(c, full);
        let mut c = no_shift.config.clone();
        assert!(!c.shift_bn);
        c.name = full.name.clone();
        c.shift_bn = true;
        assert_eq!(c, full);
    }
}

/// A "both stages" launch of a stage-1 preset pairs it with MiSLAS's stage 2, not with the cRT,
/// LWS or ablation presets beside it; their stage 1 is the mixup preset.
#[test]
fn both_stages_pair_stage1_with_mislas() {
    let presets = mislas::presets::discover(Path::new(env!("CARGO_MANIFEST_DIR")), None);
    let find = |n: &str| presets.iter().position(|p| p.name() == n).unwrap();
    for (from, to) in [
        (
            "fashion_mnist_imb001_stage1_mixup",
            "fashion_mnist_imb001_stage2_mislas",
        ),
        (
            "cifar100_imb01_stage1_mixup",
            "cifar100_imb01_stage2_mislas",
        ),
        (
            "fashion_mnist_imb001_stage2_crt",
            "fashion_mnist_imb001_stage1_mixup",
        ),
        (
            "fashion_mnist_imb01_stage2_mislas_no_las",
            "fashion_mnist_imb01_stage1_mixup",
        ),
        (
            "imagenet_resnet50_stage2_lws",
            "imagenet_resnet50_stage1_mixup",
        ),
        // Weight balancing's pair, and LDAM-DRW's normed classifier with its own stage 2.
        (
            "fashion_mnist_imb001_stage1_wb",
            "fashion_mnist_imb001_stage2_wb",
        ),
        (
            "fashion_mnist_imb001_stage2_wb",
            "fashion_mnist_imb001_stage1_wb",
        ),
        (
            "cifar10_imb001_stage1_ldam_drw",
            "cifar10_imb001_stage2_ldam_drw_mislas",
        ),
        (
            "cifar10_imb001_stage2_ldam_drw_mislas",
            "cifar10_imb001_stage1_ldam_drw",
        ),
        (
            "cifar10_imb001_stage1_mixup",
            "cifar10_imb001_stage2_mislas",
        ),
    ] {
        let j = mislas::presets::partner(&presets, find(from));
        assert_eq!(j.map(|j| presets[j].name()), Some(to.to_owned()), "{from}");
    }
}

/// The baselines' presets: LDAM-DRW's schedule and weight balancing's pair, each only the keys
/// where the paper's setting differs from the MiSLAS preset beside it.
#[test]
fn baseline_presets_carry_their_papers_settings() {
    use mislas::config::{ClassifierKind, ClassifierRecipe, Reweight, StageOneLossName};
    let ldam = load("cifar10", "cifar10_imb001_stage1_ldam_drw").config;
    assert_eq!(
        (ldam.loss, ldam.reweight, ldam.classifier),
        (
            StageOneLossName::Ldam,
            Reweight::Drw,
            ClassifierKind::Normed
        )
    );
    assert_eq!(
        (ldam.drw_epoch, ldam.num_epochs, ldam.cb_beta),
        (160, 200, 0.9999)
    );
    assert_eq!(
        (ldam.mixup_alpha(), ldam.weight_decay, ldam.lr),
        (None, 2e-4, 0.1)
    );
    assert_eq!(
        (ldam.lr_milestones.clone(), ldam.effective_warmup()),
        (vec![160, 180], 5)
    );
    // The rate of every epoch is that of LDAM-DRW's `adjust_learning_rate` (kaidic/LDAM-DRW,
    // cifar_train.py), e = epoch + 1: lr·e/5 for e ≤ 5, lr·0.0001 for e > 180, lr·0.01 for
    // e > 160, else lr.
    for epoch in 0..ldam.num_epochs {
        let e = epoch + 1;
        let code = match e {
            e if e <= 5 => 0.1 * e as f64 / 5.0,
            e if e > 180 => 0.1 * 0.0001,
            e if e > 160 => 0.1 * 0.01,
            _ => 0.1,
        };
        let ours = mislas::method::schedule::stage1_lr(
            ldam.lr,
            epoch,
            ldam.num_epochs,
            ldam.cos,
            ldam.effective_warmup(),
            &ldam.lr_milestones,
            ldam.lr_decay,
        );
        assert!(
            (ours - code).abs() < 1e-15,
            "epoch {epoch}: {ours} vs the code's {code}"
        );
    }
    let on_ldam = load("cifar10", "cifar10_imb001_stage2_ldam_drw_mislas").config;
    let mut plain = load("cifar10", "cifar10_imb001_stage2_mislas").config;
    assert_eq!(on_ldam.classifier, ClassifierKind::Normed);
    plain.name = on_ldam.name.clone();
    plain.classifier = ClassifierKind::Normed;
    assert_eq!(plain, on_ldam);
    let wb1 = load("fashion_mnist", "fashion_mnist_imb001_stage1_wb").config;
    assert_eq!((wb1.loss, wb1.mixup_alpha()), (StageOneLossName::Ce, None));
    assert_eq!((wb1.weight_decay, wb1.lr, wb1.cos), (5e-3, 0.01, true));
    let wb2 = load("fashion_mnist", "fashion_mnist_imb001_stage2_wb").config;
    assert_eq!(
        (wb2.recipe, wb2.stage()),
        (ClassifierRecipe::Wb, Stage::Stage2)
    );
    assert_eq!((wb2.weight_decay, wb2.lr, wb2.num_epochs), (0.1, 0.01, 10));
    assert_eq!((wb2.cb_beta, wb2.maxnorm_thresh), (0.9999, 0.1));
}
