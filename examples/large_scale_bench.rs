//! Large-scale figures: loader images/s of one loader thread on a generated JPEG tree (training
//! and evaluation transforms), then the ResNet-50 stage-1 images/s of `mislas::bench::run` on
//! that tree.
//!
//! Usage: `large_scale_bench DIR [device] [batch] [timed_batches] [KEY VALUE]…` — writes (once)
//! a tree of 512 JPEGs of 500×375 (quality 90, 12 classes, long-tailed) with
//! `ImageNet_LT_train.txt` and `ImageNet_LT_test.txt` under `DIR`, then prints the figures.
//! `device` defaults to `cpu`, `batch` to 32, `timed_batches` to 5; `timed_batches` 0 skips the
//! training figure. Trailing `KEY VALUE` pairs override the configuration of the training figure
//! as on mislas's command line, e.g. `amp true channels_last true` or `accum_steps 2`.
//! `scripts/bench_loader_torch.py DIR` measures PyTorch's DataLoader on the same files.
use mislas::config::{Config, DatasetName, Stage};
use mislas::data::loader::{epoch_loader, LoaderOptions};
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

const IMAGES: usize = 512;
const WIDTH: u32 = 500;
const HEIGHT: u32 = 375;

fn write_tree(root: &Path) -> anyhow::Result<()> {
    let list = root.join("ImageNet_LT_train.txt");
    if list.is_file() {
        return Ok(());
    }
    let mut text = String::new();
    let mut state = 12345u32;
    for i in 0..IMAGES {
        // Class c gets images while i < cumulative 2·IMAGES/(c+2)-ish: a long tail.
        let class = ((i * i) / (IMAGES * IMAGES / 12)).min(11);
        let rel = format!("train/n{class:04}/img_{i:05}.jpg");
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap())?;
        let mut img = image::RgbImage::new(WIDTH, HEIGHT);
        for (x, y, p) in img.enumerate_pixels_mut() {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = state >> 27;
            let v = |a: u32| ((a + noise) % 256) as u8;
            *p = image::Rgb([
                v(x * 255 / WIDTH + class as u32 * 9),
                v(y * 255 / HEIGHT),
                v(((x / 25 + y / 25) % 2) * 120 + 40),
            ]);
        }
        img.save(&path)?;
        writeln!(text, "{rel} {class}")?;
    }
    std::fs::write(root.join("ImageNet_LT_test.txt"), &text)?;
    std::fs::write(list, text)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("target/large_scale_bench"),
    );
    let device = args.get(2).cloned().unwrap_or_else(|| "cpu".into());
    let batch: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let timed: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(5);
    std::fs::create_dir_all(dir)?;
    write_tree(dir)?;
    let cfg = Config {
        name: "large_scale_bench".into(),
        dataset: DatasetName::Imagenet,
        data_path: dir.display().to_string(),
        num_classes: 12,
        imb_factor: None,
        backbone: "resnet50_fe".into(),
        head_class_idx: [0, 4],
        med_class_idx: [4, 8],
        tail_class_idx: [8, 12],
        mode: Some(Stage::Stage1),
        batch_size: batch,
        alpha: Some(0.2),
        device,
        workers: 1,
        ..Config::default()
    };
    let data = mislas::data::load(&cfg)?;
    for (what, augment) in [("training", true), ("evaluation", false)] {
        let opts = LoaderOptions {
            batch_size: batch,
            workers: 1,
            prefetch: 2,
            augment,
            pin_memory: false,
            first_batch: 0,
        };
        let t = Instant::now();
        let mut n = 0;
        for b in epoch_loader(
            data.train.clone(),
            (0..data.train.len()).collect(),
            &data.norm,
            &opts,
            0,
            0,
        ) {
            assert!(b.skipped.is_empty(), "{:?}", b.skipped);
            n += b.len;
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "loader, 1 thread, {what} transforms at 224: {rate:.1} images/s ({n} JPEGs of \
             {WIDTH}×{HEIGHT})"
        );
    }
    if timed > 0 {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
        let mut cfg = Config { workers, ..cfg };
        cfg.apply_overrides(args.get(5..).unwrap_or_default())?;
        mislas::bench::run(&cfg, timed)?;
    }
    Ok(())
}
