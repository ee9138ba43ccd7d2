//! The test-prior estimators of `mislas compare` against NumPy computing the same definitions
//! in the venv: over-confidence error (Thulasidasan et al. 2019, Eq. 3, on the reference's
//! 15 equal-width bins), TACE (Nixon et al. 2019, threshold 0.01, `np.array_split` of the
//! stable arg-sort of each class's probabilities above it), EM / MLLS (Saerens et al. 2002)
//! and BBSE (Lipton et al. 2018, `np.linalg.lstsq`), to 1e-6 or better.
mod common;
use common::python;
use mislas::compare::estimators::{overconfidence_error, tace, Outputs, TACE_THRESHOLD};
use mislas::compare::prior::{bbse_prior, em_prior, implied_prior};
use serde_json::Value;
use tch::Tensor;

const SCRIPT: &str = r#"
import json
import numpy as np

def calibration_bins(conf, correct, nb=15):
    edges = np.linspace(0, 1, nb + 1)
    idx = np.digitize(conf, edges, right=True)
    return [(conf[idx == b], correct[idx == b]) for b in range(1, nb + 1)]

def oe(conf, correct):
    bins = calibration_bins(conf, correct)
    tot = sum(len(c) for c, _ in bins)
    return sum(len(c) * c.mean() * max(c.mean() - k.mean(), 0) for c, k in bins if len(c)) / tot

def tace(p, y, thr=0.01, nb=15):
    gaps = []
    for k in range(p.shape[1]):
        m = p[:, k] > thr
        pk, hit = p[m, k], (y[m] == k).astype(np.float64)
        order = np.argsort(pk, kind='stable')
        for b in np.array_split(order, nb):
            if len(b):
                gaps.append(abs(hit[b].mean() - pk[b].mean()))
    return float(np.mean(gaps)) if gaps else 0.0

def log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))

def em(z, src, tol=1e-8, iters=1000):
    lz = log_softmax(z); ls = np.log(np.maximum(src, 1e-8)); q = src.copy()
    for it in range(1, iters + 1):
        s = lz + np.log(np.maximum(q, 1e-8)) - ls
        post = np.exp(log_softmax(s))
        new = post.mean(0)
        moved = np.abs(new - q).max(); q = new
        if moved < tol: return q, it
    return q, iters

def implied(zv, pval, tol=1e-8, iters=1000):
    lz = log_softmax(zv); b = np.zeros(len(pval))
    for _ in range(iters):
        mean = np.exp(log_softmax(lz + b)).mean(0)
        if np.abs(mean - pval).max() < tol: break
        b = b + np.log(pval) - np.log(np.maximum(mean, 1e-8))
    p = np.log(pval) - b
    return np.exp(p - p.max()) / np.exp(p - p.max()).sum()

def bbse(zv, yv, zt, k):
    pv, pt = zv.argmax(1), zt.argmax(1)
    C = np.zeros((k, k))
    for p, y in zip(pv, yv): C[p, y] += 1 / len(yv)
    mu = np.bincount(pt, minlength=k) / len(pt)
    w = np.linalg.lstsq(C, mu, rcond=None)[0]
    ps = np.bincount(yv, minlength=k) / len(yv)
    q = np.maximum(w, 0) * ps
    return q / q.sum()

rng = np.random.default_rng(3)
cases = []
for name, n, k, scale in [('wide', 700, 9, 3.0), ('sharp', 300, 4, 8.0), ('tiny', 12, 3, 1.0)]:
    z = rng.normal(size=(n, k)) * scale
    p = np.exp(log_softmax(z)).astype(np.float32)
    if name == 'sharp':
        p[:5] = np.eye(k, dtype=np.float32)[rng.integers(0, k, 5)]
        p[5:8] = np.array([0.01, 0.49, 0.25, 0.25], dtype=np.float32)
    y = rng.integers(0, k, n)
    p64 = p.astype(np.float64)
    conf, ok = p64.max(1), (p64.argmax(1) == y).astype(np.float64)
    cases.append(dict(name=name, k=k, probs=p.ravel().tolist(), labels=y.tolist(),
                      oe=oe(conf, ok), tace=tace(p64, y)))

priors = []
k = 6
means = rng.normal(size=(k, 5)) * 2.5
for name, q, drop in [('shifted', [0.4, 0.25, 0.15, 0.1, 0.07, 0.03], False),
                      ('never-predicted', [0.3, 0.3, 0.2, 0.1, 0.05, 0.05], True)]:
    def draw(n, pri):
        y = rng.choice(k, size=n, p=pri)
        x = means[y] + rng.normal(size=(n, 5))
        z = -((x[:, None, :] - means[None]) ** 2).sum(2) / 2 + rng.normal(size=(n, k)) * 0.3
        if drop: z[:, 5] -= 100.0   # class 5 is never predicted: Ĉ is singular
        return z, y
    zv, yv = draw(600, np.full(k, 1 / k))
    zt, _ = draw(900, np.array(q))
    src = np.bincount(yv, minlength=k) / len(yv)
    qe, it = em(zt, src)
    # Logits biased toward class 0 and 1, as a long-tailed model's: the implied source prior.
    bias = np.array([2.0, 1.0, 0, 0, -0.5, -1.0])
    imp = implied(zv + bias, src)
    priors.append(dict(name=name, k=k, zv=zv.ravel().tolist(), yv=yv.tolist(), zt=zt.ravel().tolist(),
                       src=src.tolist(), em=qe.tolist(), implied=imp.tolist(), bias=bias.tolist(), em_iters=it, bbse=bbse(zv, yv, zt, k).tolist()))
print(json.dumps(dict(cases=cases, priors=priors)))
"#;

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn logits(v: &Value, k: usize) -> Tensor {
    let z = floats(v);
    Tensor::from_slice(&z).view([(z.len() / k) as i64, k as i64])
}

#[test]
fn oe_tace_em_and_bbse_match_numpy() {
    let expected: Value = serde_json::from_str(&python(SCRIPT, &[])).expect("JSON from Python");
    for c in expected["cases"].as_array().unwrap() {
        let k = c["k"].as_u64().unwrap() as usize;
        let probs: Vec<f32> = floats(&c["probs"]).iter().map(|&p| p as f32).collect();
        let out = Outputs::from_probabilities(k, probs, ints(&c["labels"]));
        let ok: Vec<bool> = (0..out.len()).map(|i| out.correct(i)).collect();
        let (name, oe, ta) = (
            &c["name"],
            c["oe"].as_f64().unwrap(),
            c["tace"].as_f64().unwrap(),
        );
        let got = overconfidence_error(&out.confidence, &ok);
        assert!((got - oe).abs() < 1e-12, "{name}: OE {got} vs NumPy {oe}");
        let got = tace(&out, TACE_THRESHOLD, 15);
        assert!((got - ta).abs() < 1e-12, "{name}: TACE {got} vs NumPy {ta}");
    }
    for c in expected["priors"].as_array().unwrap() {
        let k = c["k"].as_u64().unwrap() as usize;
        let (zv, zt) = (logits(&c["zv"], k), logits(&c["zt"], k));
        let (q, iters) = em_prior(&zt, &floats(&c["src"])).unwrap();
        let want = c["em_iters"].as_u64().unwrap() as i64;
        assert!(
            (iters as i64 - want).abs() <= 1,
            "{}: {iters} vs {want} iterations",
            c["name"]
        );
        for (a, b) in q.iter().zip(floats(&c["em"])) {
            assert!(
                (a - b).abs() < 1e-6,
                "{}: EM {q:?} vs NumPy {}",
                c["name"],
                c["em"]
            );
        }
        let biased = &zv + Tensor::from_slice(&floats(&c["bias"]));
        let p = implied_prior(&biased, &floats(&c["src"])).unwrap();
        for (a, b) in p.iter().zip(floats(&c["implied"])) {
            assert!(
                (a - b).abs() < 1e-6,
                "{}: implied {p:?} vs NumPy {}",
                c["name"],
                c["implied"]
            );
        }
        // The head classes the logits favour get the larger implied prior.
        assert!(p[0] > p[2] && p[2] > p[5], "{p:?}");
        let q = bbse_prior(&zv, &ints(&c["yv"]), &zt, k).unwrap();
        for (a, b) in q.iter().zip(floats(&c["bbse"])) {
            assert!(
                (a - b).abs() < 1e-6,
                "{}: BBSE {q:?} vs NumPy {}",
                c["name"],
                c["bbse"]
            );
        }
    }
}

/// NumPy's figures of every resample of the Rust bootstrap: the script reads the probabilities,
/// labels and each draw's resampled indices (from `mislas::compare::bootstrap::resample`) and
/// computes adaptive ECE (`np.array_split` of the stable arg-sort of the confidences, Nixon et
/// al. 2019), NLL, Brier, OE and TACE on each resample, then the 2.5th and 97.5th percentiles.
const RESAMPLE_SCRIPT: &str = r#"
import json, sys
import numpy as np

def calibration_bins(conf, correct, nb=15):
    edges = np.linspace(0, 1, nb + 1)
    idx = np.digitize(conf, edges, right=True)
    return [(conf[idx == b], correct[idx == b]) for b in range(1, nb + 1)]

def oe(conf, correct):
    bins = calibration_bins(conf, correct)
    tot = sum(len(c) for c, _ in bins)
    return sum(len(c) * c.mean() * max(c.mean() - k.mean(), 0) for c, k in bins if len(c)) / tot

def aece(conf, correct, nb=15):
    order = np.argsort(conf, kind='stable')
    return sum(abs(correct[b].sum() - conf[b].sum()) for b in np.array_split(order, nb) if len(b)) / len(conf)

def tace(p, y, thr=0.01, nb=15):
    gaps = []
    for k in range(p.shape[1]):
        m = p[:, k] > thr
        pk, hit = p[m, k], (y[m] == k).astype(np.float64)
        order = np.argsort(pk, kind='stable')
        for b in np.array_split(order, nb):
            if len(b):
                gaps.append(abs(hit[b].mean() - pk[b].mean()))
    return float(np.mean(gaps)) if gaps else 0.0

def figures(p, y):
    conf, ok = p.max(1), (p.argmax(1) == y).astype(np.float64)
    onehot = np.eye(p.shape[1])[y]
    return [100 * aece(conf, ok), float(np.mean(-np.log(p[np.arange(len(y)), y]))),
            float(np.mean(((p - onehot) ** 2).sum(1))), 100 * oe(conf, ok), 100 * tace(p, y)]

d = json.load(open(sys.argv[1]))
out = []
for m in d['methods']:
    p = np.array(m['probs'], dtype=np.float32).astype(np.float64).reshape(-1, d['k'])
    y = np.array(d['labels'])
    full = figures(p, y)
    draws = np.array([figures(p[idx], y[idx]) for idx in d['draws']])
    out.append(dict(full=full, draws=draws.tolist(),
                    q_lo=np.percentile(draws, 2.5, axis=0).tolist(),
                    q_hi=np.percentile(draws, 97.5, axis=0).tolist()))
print(json.dumps(out))
"#;

/// The intervals of AECE, NLL, Brier, OE and TACE on a shifted set: every resample's figures
/// and the percentile and basic intervals against NumPy on the same resampled indices, for two
/// methods sharing the draws (1e-9).
#[test]
fn calibration_intervals_match_numpy_on_the_same_resamples() {
    use mislas::compare::bootstrap::{resample, IntervalKind};
    use mislas::compare::figure_intervals::{
        draw_values, paired_calibration_intervals, CalibrationCompact, CalibrationIntervals,
        CalibrationValues,
    };
    let (n, k, draws, seed) = (180usize, 5usize, 40usize, 7u64);
    // Two methods: softmax of seeded normal logits (no two samples alike, so no ties) at
    // two temperatures.
    tch::manual_seed(5);
    let z = Vec::<f64>::try_from(
        Tensor::randn([(n * k) as i64], (tch::Kind::Double, tch::Device::Cpu)) * 2.0,
    )
    .unwrap();
    let labels: Vec<i64> = (0..n).map(|i| ((i * 31 + i / 7) % k) as i64).collect();
    let methods: Vec<Outputs> = [1.0, 0.4]
        .iter()
        .map(|t| {
            // Float32 probabilities, NLL −ln p_y of them (as NumPy computes it).
            let logits = Tensor::from_slice(&z).view([n as i64, k as i64]) / *t;
            let p = logits.softmax(1, tch::Kind::Float).view([-1]);
            Outputs::from_probabilities(k, Vec::<f32>::try_from(&p).unwrap(), labels.clone())
        })
        .collect();
    let idx: Vec<Vec<usize>> = (0..draws).map(|d| resample(seed, d, n)).collect();
    let input = serde_json::json!({
        "k": k, "labels": labels, "draws": idx,
        "methods": methods.iter().map(|o| serde_json::json!({"probs": o.probs})).collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();
    let want: Value =
        serde_json::from_str(&python(RESAMPLE_SCRIPT, &[file.to_str().unwrap()])).unwrap();
    let compacts: Vec<CalibrationCompact> = methods.iter().map(CalibrationCompact::of).collect();
    let got = draw_values(&compacts, draws, seed).unwrap();
    let names = ["AECE", "NLL", "Brier", "OE", "TACE"];
    let five = |v: &CalibrationValues| [v.adaptive_ece, v.nll, v.brier, v.oe, v.tace];
    let pct =
        paired_calibration_intervals(&compacts, draws, seed, IntervalKind::Percentile).unwrap();
    let basic = paired_calibration_intervals(&compacts, draws, seed, IntervalKind::Basic).unwrap();
    for (m, w) in want.as_array().unwrap().iter().enumerate() {
        for (d, row) in w["draws"].as_array().unwrap().iter().enumerate() {
            for ((a, b), name) in five(&got[d][m]).iter().zip(floats(row)).zip(names) {
                assert!(
                    (a - b).abs() < 1e-9,
                    "method {m} draw {d} {name}: {a} vs NumPy {b}"
                );
            }
        }
        let (full, lo, hi) = (floats(&w["full"]), floats(&w["q_lo"]), floats(&w["q_hi"]));
        let ivs = |c: &CalibrationIntervals| [c.adaptive_ece, c.nll, c.brier, c.oe, c.tace];
        for (f, ((p, b), name)) in ivs(&pct[m])
            .iter()
            .zip(ivs(&basic[m]))
            .zip(names)
            .enumerate()
        {
            let expect_basic = (
                (2.0 * full[f] - hi[f]).max(0.0),
                (2.0 * full[f] - lo[f]).max(0.0),
            );
            for (a, e) in [
                (p.lo, lo[f]),
                (p.hi, hi[f]),
                (b.lo, expect_basic.0),
                (b.hi, expect_basic.1),
            ] {
                assert!(
                    (a - e).abs() < 1e-9,
                    "method {m} {name} interval: {a} vs NumPy {e}"
                );
            }
        }
    }
}
