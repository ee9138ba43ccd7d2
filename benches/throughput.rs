//! `cargo bench`: stage-1 throughput of the full pipeline against a bare tch loop, loader
//! throughput and peak memory, on the default Fashion-MNIST-LT preset (see `mislas::bench`).
//! Extra arguments after `--` are KEY VALUE overrides, e.g. `cargo bench -- device cuda`.
use mislas::config::Config;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo test --all-targets` runs this target without `--bench`: measure nothing then.
    if !args.iter().any(|a| a == "--bench") {
        return Ok(());
    }
    let overrides: Vec<String> = args.into_iter().filter(|a| a != "--bench").collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/presets/fashion_mnist/fashion_mnist_imb001_stage1_mixup.yaml"
    );
    let mut cfg = Config::from_file(path.as_ref())?.config;
    cfg.apply_overrides(&overrides)?;
    mislas::bench::run(&cfg, 40)?;
    Ok(())
}
