//! The estimators of `mislas compare` against NumPy computing the same definitions in the venv:
//! ECE (the reference's `calibration`), adaptive ECE (`np.array_split` of the stable arg-sort),
//! classwise ECE, MCE, NLL, Brier, per-class over-confidence and accuracy, and the bootstrap's
//! percentile (`np.percentile`), on random outputs and on the edge cases: confidences of
//! exactly 0 and 1, probabilities of exactly 0, empty bins, fewer samples than bins and a
//! single class.
mod common;
use common::python;
use mislas::compare::bootstrap::percentile;
use mislas::compare::estimators::{
    accuracy_per_class, adaptive_ece, classwise_ece, figures, overconfidence_per_class, Group,
    Outputs,
};
use mislas::metrics::calibration;
use serde_json::Value;

/// The NumPy side: the cases and every expected figure, as JSON.
const SCRIPT: &str = r#"
import json, sys
import numpy as np
import torch

def calibration(conf, correct, nb=15):
    edges = np.linspace(0, 1, nb + 1)
    idx = np.digitize(conf, edges, right=True)
    ece = mce = 0.0; tot = 0
    for b in range(1, nb + 1):
        m = idx == b
        if m.sum() > 0:
            gap = abs(correct[m].mean() - conf[m].mean())
            ece += gap * m.sum(); mce = max(mce, gap); tot += m.sum()
    return (ece / tot if tot else 0.0), mce

def aece(conf, correct, nb=15):
    if len(conf) == 0: return 0.0
    order = np.argsort(conf, kind='stable')
    tot = sum(abs(correct[b].sum() - conf[b].sum()) for b in np.array_split(order, nb) if len(b))
    return tot / len(conf)

def fin(x):
    return 'inf' if np.isinf(x) else float(x)

def case(name, p, y, groups):
    p = np.asarray(p, dtype=np.float32); y = np.asarray(y)
    n, k = p.shape
    p64 = p.astype(np.float64)
    conf = p64.max(1); pred = p64.argmax(1); ok = (pred == y).astype(np.float64)
    onehot = np.eye(k)[y]
    with np.errstate(divide='ignore'):
        nll = -np.log(p64[np.arange(n), y])
    brier = ((p64 - onehot) ** 2).sum(1)
    cw = np.array([calibration(p64[:, c], (y == c).astype(np.float64))[0] for c in range(k)])
    out = {}
    for gname, cls in groups.items():
        m = np.isin(y, cls)
        e, mc = calibration(conf[m], ok[m])
        out[gname] = dict(classes=cls, samples=int(m.sum()),
            top1=100 * ok[m].mean() if m.any() else 0.0, ece=100 * e, mce=100 * mc,
            adaptive_ece=100 * aece(conf[m], ok[m]), classwise_ece=100 * cw[cls].mean(),
            nll=fin(nll[m].mean()) if m.any() else 0.0,
            brier=float(brier[m].mean()) if m.any() else 0.0)
    over = [100 * (conf[y == c] - ok[y == c]).mean() if (y == c).any() else 0.0 for c in range(k)]
    acc = [100 * ok[y == c].mean() if (y == c).any() else 0.0 for c in range(k)]
    return dict(name=name, k=k, probs=p.ravel().tolist(), labels=y.tolist(), groups=out,
                classwise=cw.tolist(), over=over, acc=acc)

rng = np.random.default_rng(7)
cases = []
# Random outputs of a 7-class model, with one-hot rows (confidence exactly 1, probabilities of
# exactly 0) and confidences that sit on bin edges.
n, k = 600, 7
logits = torch.tensor(rng.normal(size=(n, k)) * rng.uniform(0.2, 4, size=(n, 1)), dtype=torch.float32)
p = torch.softmax(logits, 1).numpy()
p[:40] = np.eye(k, dtype=np.float32)[rng.integers(0, k, 40)]
p[40:45] = np.float32(0)
p[40:45, 0] = np.float32(0.6); p[40:45, 1] = np.float32(0.4)
y = rng.integers(0, k, n); y[y == 6] = rng.integers(0, 6, (y == 6).sum())  # class 6: no sample
cases.append(case('random', p, y, {'all': list(range(k)), 'many': [0, 1, 2], 'few': [5, 6]}))
# Fewer samples than bins: empty equal-width and equal-mass bins.
p = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8], [1.0, 0.0], [0.5, 0.5]], dtype=np.float32)
cases.append(case('five', p, [0, 1, 1, 1, 0], {'all': [0, 1], 'tail': [1]}))
# A single class: every probability 1, every prediction right.
cases.append(case('one_class', np.ones((9, 1)), np.zeros(9, dtype=int), {'all': [0]}))
# Direct estimator calls with confidences of exactly 0 (in no equal-width bin) and 1.
c = np.array([0.0, 0.0, 1.0, 1.0, 0.3, 0.7, 0.999, 1e-9])
ok = np.array([0, 1, 1, 0, 1, 1, 1, 0], dtype=np.float64)
e, mc = calibration(c, ok)
direct = dict(conf=c.tolist(), correct=ok.tolist(), ece=e, mce=mc, aece=aece(c, ok))
v = rng.normal(size=1001)
perc = dict(values=v.tolist(), p025=np.percentile(v, 2.5), p975=np.percentile(v, 97.5),
            p50=np.percentile(v[:10], 50))
# NLL from logits: PyTorch's cross entropy per sample.
lg = torch.tensor(rng.normal(size=(50, 4)) * 6, dtype=torch.float32)
ly = torch.tensor(rng.integers(0, 4, 50))
nll = torch.nn.functional.cross_entropy(lg, ly, reduction='none').double().numpy()
logit_case = dict(logits=lg.numpy().ravel().tolist(), labels=ly.tolist(), nll=nll.tolist(),
                  probs=torch.softmax(lg, 1).numpy().ravel().tolist())
print(json.dumps(dict(cases=cases, direct=direct, perc=perc, logits=logit_case)))
"#;

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol * (1.0 + want.abs()),
        "{what}: got {got}, NumPy {want}"
    );
}

fn group_of(k: usize, classes: &[f64], name: &str) -> Group {
    Group {
        name: name.into(),
        classes: (0..k).map(|c| classes.contains(&(c as f64))).collect(),
    }
}

#[test]
fn estimators_match_numpy() {
    let expected: Value = serde_json::from_str(&python(SCRIPT, &[])).expect("JSON from Python");
    for case in expected["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let k = case["k"].as_u64().expect("k") as usize;
        let probs: Vec<f32> = f64s(&case["probs"]).iter().map(|&p| p as f32).collect();
        let labels: Vec<i64> = f64s(&case["labels"]).iter().map(|&y| y as i64).collect();
        let out = Outputs::from_probabilities(k, probs, labels);
        let cw = classwise_ece(&out).unwrap();
        for (c, (got, want)) in cw.iter().zip(f64s(&case["classwise"])).enumerate() {
            close(
                *got,
                want,
                1e-12,
                &format!("{name}: classwise ECE of class {c}"),
            );
        }
        for (got, want) in overconfidence_per_class(&out)
            .iter()
            .zip(f64s(&case["over"]))
        {
            close(*got, want, 1e-9, &format!("{name}: over-confidence"));
        }
        for (got, want) in accuracy_per_class(&out).iter().zip(f64s(&case["acc"])) {
            close(*got, want, 1e-12, &format!("{name}: per-class accuracy"));
        }
        let groups = case["groups"].as_object().expect("groups");
        let gs: Vec<Group> = groups
            .iter()
            .map(|(g, v)| group_of(k, &f64s(&v["classes"]), g))
            .collect();
        let figs = figures(&out, &gs, &cw, &out.brier_per_sample());
        for (g, f) in gs.iter().zip(&figs) {
            let want = &groups[&g.name];
            let what = |m: &str| format!("{name}/{}: {m}", g.name);
            assert_eq!(
                f.samples as u64,
                want["samples"].as_u64().unwrap(),
                "{}",
                what("samples")
            );
            match &want["nll"] {
                Value::String(s) if s == "inf" => assert!(f.nll.is_infinite(), "{}", what("nll")),
                w => close(f.nll, w.as_f64().unwrap(), 1e-12, &what("nll")),
            }
            for (m, got, tol) in [
                ("top1", f.top1, 1e-12),
                ("ece", f.ece, 1e-12),
                ("mce", f.mce, 1e-12),
                ("adaptive_ece", f.adaptive_ece, 1e-12),
                ("classwise_ece", f.classwise_ece, 1e-12),
                ("brier", f.brier, 1e-12),
            ] {
                close(got, want[m].as_f64().unwrap(), tol, &what(m));
            }
        }
    }
    let d = &expected["direct"];
    let conf = f64s(&d["conf"]);
    let ok: Vec<bool> = f64s(&d["correct"]).iter().map(|&c| c == 1.0).collect();
    let (ece, mce, bins) = calibration(&conf, &ok, 15);
    close(ece, d["ece"].as_f64().unwrap(), 1e-12, "direct ECE");
    close(mce, d["mce"].as_f64().unwrap(), 1e-12, "direct MCE");
    // The two zeros are in no bin; the two ones in the last.
    assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 6);
    assert_eq!(bins[14].count, 3);
    close(
        adaptive_ece(&conf, &ok, 15),
        d["aece"].as_f64().unwrap(),
        1e-12,
        "direct AECE",
    );

    let p = &expected["perc"];
    let v = f64s(&p["values"]);
    close(
        percentile(&v, 2.5),
        p["p025"].as_f64().unwrap(),
        1e-12,
        "percentile 2.5",
    );
    close(
        percentile(&v, 97.5),
        p["p975"].as_f64().unwrap(),
        1e-12,
        "percentile 97.5",
    );
    close(
        percentile(&v[..10], 50.0),
        p["p50"].as_f64().unwrap(),
        1e-12,
        "median of 10",
    );

    let l = &expected["logits"];
    let logits: Vec<f32> = f64s(&l["logits"]).iter().map(|&x| x as f32).collect();
    let labels: Vec<i64> = f64s(&l["labels"]).iter().map(|&y| y as i64).collect();
    let t = tch::Tensor::from_slice(&logits).view([-1, 4]);
    let out = Outputs::from_logits(&t, labels).unwrap();
    for (got, want) in out.nll.iter().zip(f64s(&l["nll"])) {
        close(*got, want, 1e-6, "NLL from logits");
    }
    for (got, want) in out.probs.iter().zip(f64s(&l["probs"])) {
        close(*got as f64, want, 1e-7, "softmax");
    }
}

/// PyTorch fits vector scaling (Guo et al. 2017) in float64 with L-BFGS to the same data.
const VECTOR_SCALING: &str = r#"
import json, sys
import torch
d = json.load(open(sys.argv[1]))
z = torch.tensor(d["logits"], dtype=torch.float64).view(d["n"], d["k"])
y = torch.tensor(d["labels"])
a = torch.ones(d["k"], dtype=torch.float64, requires_grad=True)
b = torch.zeros(d["k"], dtype=torch.float64, requires_grad=True)
opt = torch.optim.LBFGS([a, b], lr=1, max_iter=1000, tolerance_grad=1e-12,
                        tolerance_change=1e-15, line_search_fn="strong_wolfe")
def closure():
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(z * a + b, y)
    loss.backward()
    return loss
opt.step(closure)
nll = torch.nn.functional.cross_entropy(z * a + b, y).item()
print(json.dumps({"nll": nll, "a": a.tolist(), "b": b.tolist()}))
"#;

/// Vector scaling reaches PyTorch's L-BFGS minimum of the validation NLL (a convex problem):
/// the same NLL to 1e-5 nats and the same per-class scale and shift to 0.01, on logits whose
/// calibrated form needs a different scale and shift per class. Temperature scaling, the
/// special case a_k = 1/T, b = 0, cannot do better.
#[test]
fn vector_scaling_matches_pytorch_lbfgs() {
    use mislas::compare::posthoc::{fit_temperature, fit_vector_scaling, Fitted};
    use tch::{Device, Kind, Tensor};
    tch::manual_seed(7);
    let (n, k) = (3000i64, 5i64);
    let clean = Tensor::randn([n, k], (Kind::Float, Device::Cpu)) * 1.5;
    let labels = clean
        .softmax(1, Kind::Float)
        .multinomial(1, true)
        .squeeze_dim(1);
    // Distort: class k's logit scaled by 2 + k/2 and shifted by k − 2.
    let scale = Tensor::from_slice(&[2.0f32, 2.5, 3.0, 3.5, 4.0]);
    let shift = Tensor::from_slice(&[-2.0f32, -1.0, 0.0, 1.0, 2.0]);
    let logits = &clean * &scale + &shift;
    let data = serde_json::json!({
        "n": n, "k": k,
        "logits": Vec::<f32>::try_from(logits.view([-1])).unwrap(),
        "labels": Vec::<i64>::try_from(&labels).unwrap(),
    });
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data.to_string()).unwrap();
    let want: Value =
        serde_json::from_str(&python(VECTOR_SCALING, &[file.path().to_str().unwrap()])).unwrap();
    let Fitted::Vector {
        scale: a,
        shift: b,
        nll_before,
        nll_after,
        iterations,
    } = fit_vector_scaling(&logits, &labels).unwrap()
    else {
        unreachable!()
    };
    let nll = want["nll"].as_f64().unwrap();
    eprintln!(
        "VS: NLL {nll_before:.6} → {nll_after:.6} in {iterations} iterations; PyTorch {nll:.6}"
    );
    assert!((nll_after - nll).abs() < 1e-5, "{nll_after} vs {nll}");
    // a and b are found up to a common shift of b (softmax is shift-invariant): compare b − b̄.
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let bt: Vec<f64> = want["b"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let bm: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    let (mt, mm) = (mean(&bt), mean(&bm));
    for c in 0..k as usize {
        let at = want["a"][c].as_f64().unwrap();
        assert!(
            (f64::from(a[c]) - at).abs() < 0.01,
            "a[{c}] {} vs {at}",
            a[c]
        );
        assert!(((bm[c] - mm) - (bt[c] - mt)).abs() < 0.01, "b[{c}]");
    }
    let Fitted::Temperature { nll_after: ts, .. } = fit_temperature(&logits, &labels) else {
        unreachable!()
    };
    assert!(nll_after <= ts + 1e-9 && nll_after < nll_before);
}
