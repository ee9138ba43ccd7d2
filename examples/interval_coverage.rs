//! Coverage of `mislas compare`'s 95 % bootstrap intervals by simulation (the long version of
//! `compare::coverage`'s test): for top-1 predictions whose accuracy at confidence c is c^k,
//! confidence uniform on [0.4, 1], the share of replications whose interval holds the true
//! top-1 and the true (population, 15-bin) ECE, per interval kind, beside the nominal 95 %;
//! and the mean plug-in and debiased ECE against the true one.
//!
//! `cargo run --release --example interval_coverage [replications] [draws] [samples...]`
//! (defaults: 1000 replications, 500 draws, samples 1000 and 10000).
use mislas::compare::bootstrap::IntervalKind;
use mislas::compare::coverage::{simulate, Scenario};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize| {
        args.get(i).map_or(default, |a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("argument {}: '{a}' is not a whole number", i + 1);
                std::process::exit(2)
            })
        })
    };
    let (reps, draws) = (num(0, 1000), num(1, 500));
    let sizes: Vec<usize> = match args.len() > 2 {
        true => (2..args.len()).map(|i| num(i, 0)).collect(),
        false => vec![1000, 10_000],
    };
    let sd = (0.95f64 * 0.05 / reps as f64).sqrt();
    println!(
        "{reps} replications × {draws} draws; nominal 95 %, binomial sd of a coverage {:.1} points",
        100.0 * sd
    );
    println!(
        "{:>6} {:>5} {:>8} {:>8} {:>9} | {:>11} {:>9} {:>9} | {:>11} {:>9} {:>9}",
        "N",
        "k",
        "ECE %",
        "plug-in",
        "debiased",
        "basic top1",
        "ECE",
        "above",
        "pct top1",
        "ECE",
        "above"
    );
    let kinds = [IntervalKind::Basic, IntervalKind::Percentile];
    for &n in &sizes {
        for k in [1.0, 1.05, 1.15, 1.5] {
            let s = Scenario {
                lo: 0.4,
                hi: 1.0,
                k,
            };
            let sim = simulate(&s, n, draws, reps, 7, &kinds).expect("the bootstrap threads run");
            let (b, p) = (sim.coverage[0], sim.coverage[1]);
            println!(
                "{n:>6} {k:>5.2} {:>8.3} {:>8.3} {:>9.3} | {:>10.1}% {:>8.1}% {:>8.1}% | {:>10.1}% {:>8.1}% {:>8.1}%",
                s.true_ece(),
                sim.mean_ece,
                sim.mean_debiased_ece,
                100.0 * b.top1,
                100.0 * b.ece,
                100.0 * b.ece_above_estimate,
                100.0 * p.top1,
                100.0 * p.ece,
                100.0 * p.ece_above_estimate
            );
        }
    }
    println!("above: share of ECE intervals lying wholly above their own plug-in estimate");
}
