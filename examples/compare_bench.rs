//! Speed of `mislas compare` without the backbone: every post-hoc method (CE, τ-norm, NCM,
//! logit adjustment, each alone and with temperature scaling) fitted on a validation split and
//! scored with every figure and 95 % bootstrap intervals, then every figure file, on synthetic
//! outputs of ImageNet-LT's size: 50,000 scored images × 1,000 classes, 20,000 validation
//! images (its val list), features of dimension F.
//!
//! Usage: `cargo run --release --example compare_bench [F] [draws]` (F 512, draws 1000).
//! Prints the seconds of each phase and the total (target: under 10 s on 2 cores).
use mislas::compare::cli::{base_label, default_methods};
use mislas::compare::estimators::Group;
use mislas::compare::methods::{run_methods, Base, Scoring, View};
use mislas::compare::posthoc;
use mislas::compare::report::Comparison;
use mislas::compare::split::Protocol;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

const K: i64 = 1000;

/// `per_class` images of each class: features around the class centre, logits of a
/// classifier whose norms grow with the class's training count (the long-tail bias).
fn split(centres: &Tensor, weight: &Tensor, per_class: i64) -> View {
    let labels = Tensor::arange(K, (Kind::Int64, Device::Cpu))
        .repeat_interleave_self_int(per_class, None, None);
    let f = centres.index_select(0, &labels)
        + Tensor::randn(
            [K * per_class, centres.size()[1]],
            (Kind::Float, Device::Cpu),
        ) * 1.2;
    let logits = f.matmul(&weight.tr());
    View {
        features: f,
        logits,
        labels,
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let feat: i64 = args.get(1).map_or(Ok(512), |s| s.parse())?;
    let draws: usize = args.get(2).map_or(Ok(1000), |s| s.parse())?;
    mislas::compare::cli::keep_freed_memory();
    tch::manual_seed(0);
    println!("compare_bench: 50,000 scored × {K} classes, 20,000 validation, F = {feat}, {draws} bootstrap draws, {} torch threads", tch::get_num_threads());
    let t0 = Instant::now();
    // ImageNet-LT-like counts: 1280 down to 5 images, exponential.
    let counts: Vec<usize> = (0..K)
        .map(|k| (1280.0 * (5.0f64 / 1280.0).powf(k as f64 / (K - 1) as f64)).round() as usize)
        .collect();
    let centres = Tensor::randn([K, feat], (Kind::Float, Device::Cpu)) / (feat as f64).sqrt() * 4.0;
    let scale: Vec<f32> = counts.iter().map(|&n| (n as f32).powf(0.15)).collect();
    let weight = &centres * Tensor::from_slice(&scale).unsqueeze(1);
    let val = split(&centres, &weight, 20);
    let scored = split(&centres, &weight, 50);
    let train_like = split(&centres, &weight, 20);
    println!(
        "  synthetic data                {:6.2} s (not counted)",
        t0.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let means = posthoc::class_means(&train_like.features, &train_like.labels, K);
    let base = Base {
        val,
        scored,
        weight,
        class_means: Some(means),
    };
    let groups = Group::standard(&counts, [0, 390], [390, 835], [835, 1000]);
    let scoring = Scoring {
        groups: groups.clone(),
        train_class_counts: counts.clone(),
        draws,
        seed: 0,
    };
    let methods = default_methods(&[]);
    let specs = methods.iter().map(|m| (m, base_label(&m.base))).collect();
    let mut report = |line: &str| println!("  {line}");
    let rows = run_methods(&[(&base, specs)], &scoring, &mut report)?;
    for r in &rows {
        println!(
            "  {:<28} top-1 {:5.2}% [{:.2}, {:.2}]  ECE {:5.2}% [{:.2}, {:.2}]",
            r.name,
            r.figures[0].top1,
            r.intervals[0].top1.lo,
            r.intervals[0].top1.hi,
            r.figures[0].ece,
            r.intervals[0].ece.lo,
            r.intervals[0].ece.hi
        );
    }
    let methods_s = t.elapsed().as_secs_f64();
    let c = Comparison {
        protocol: Protocol::Holdout,
        checkpoint: "synthetic".into(),
        trained: Vec::new(),
        bases: Vec::new(),
        validation: "synthetic validation (20 per class)".into(),
        scored: "synthetic test (50 per class)".into(),
        groups,
        train_class_counts: counts,
        draws,
        seed: 0,
        interval: mislas::compare::bootstrap::DEFAULT_INTERVAL,
        rows,
    };
    let tv = Instant::now();
    let vs = posthoc::fit_vector_scaling(&base.val.logits, &base.val.labels)?;
    let vs_s = tv.elapsed().as_secs_f64();
    println!(
        "  vector scaling fit (optional, not in the default set) {vs_s:6.2} s: {}",
        vs.describe()
    );
    let tf = Instant::now();
    let dir = std::env::temp_dir().join("mislas_compare_bench");
    c.write(&dir)?;
    let files = mislas::compare::plots::write_all(&c, &dir.join("figures"))?;
    let files_s = tf.elapsed().as_secs_f64();
    println!("  8 methods, all figures + CIs  {methods_s:6.2} s");
    println!(
        "  tables + {} figure files    {files_s:6.2} s ({})",
        files.len(),
        dir.display()
    );
    println!(
        "  total                         {:6.2} s (target < 10 s)",
        methods_s + files_s
    );
    Ok(())
}
