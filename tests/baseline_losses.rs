//! The long-tail baselines' stage-1 losses and weight balancing's class-balanced loss against
//! PyTorch in the venv, each as its authors' public code computes it: per-sample values (the
//! `reduction='none'` terms), the batch loss and its gradient with respect to the logits, on
//! fixed logits and targets; and their composition with mixup, λ·L(y_a) + (1 − λ)·L(y_b).
mod common;

use mislas::config::{ClassifierKind, Config, Reweight, StageOneLossName};
use mislas::engine::recipe::wb::class_balanced_bce;
use mislas::method::loss::StageOneLoss;
use mislas::method::mixup::MixedBatch;
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

/// Training counts of K = 5 classes, head to tail.
const COUNTS: [usize; 5] = [500, 200, 80, 20, 5];
/// Logits `[6, 5]`; for LDAM they are s·cos with s = 30, so they stay within ±30.
const LOGITS: [f64; 30] = [
    2.0, -1.0, 0.5, 0.0, -0.5, //
    -3.0, 4.5, 1.0, -2.0, 0.25, //
    0.1, 0.2, -0.3, 0.4, -0.5, //
    6.0, -4.0, 2.5, 8.0, -7.5, //
    -1.5, 0.0, 1.5, -2.5, 3.5, //
    12.0, -9.0, 3.0, 0.7, -0.2,
];
const TARGETS: [i64; 6] = [0, 1, 2, 3, 4, 2];
/// Mixup partners y_b = y_a[perm] and λ.
const TARGETS_B: [i64; 6] = [4, 2, 0, 2, 3, 1];
const LAM: f64 = 0.3;

/// The authors' formulas (their code, float64): LDAM-DRW's `LDAMLoss`, `FocalLoss` and
/// `per_cls_weights` (kaidic/LDAM-DRW), Ren's `logits + spc.log()`, Menon's
/// `logits + tau * log(base_probs)`, and weight balancing's `CB_loss(..., "softmax", ...)`.
const SCRIPT: &str = r#"
import json, sys
import numpy as np, torch, torch.nn.functional as F
s = json.loads(sys.argv[1])
counts = s["counts"]; K = len(counts)
z = torch.tensor(s["logits"], dtype=torch.float64).view(-1, K).requires_grad_()
ya = torch.tensor(s["targets"]); yb = torch.tensor(s["targets_b"])

def cb_weights(beta):
    effective_num = 1.0 - np.power(beta, counts)
    w = (1.0 - beta) / np.array(effective_num)
    return torch.tensor(w / np.sum(w) * K, dtype=torch.float64)

rw = s["reweight"]
if rw == "none":
    weight = None
elif rw == "cb":
    weight = cb_weights(s["beta"])
else:  # DRW: betas = [0, beta] indexed by epoch >= drw_epoch (cifar_train.py: epoch // 160)
    weight = cb_weights([0.0, s["beta"]][int(s["epoch"] >= s["drw_epoch"])])

def crit(x, y, red):
    name = s["loss"]
    if name == "ce":
        return F.cross_entropy(x, y, weight=weight, reduction=red)
    if name == "balanced_softmax":
        spc = torch.tensor(counts, dtype=torch.float64)
        return F.cross_entropy(x + spc.log(), y, reduction=red)
    if name == "logit_adjusted":
        base_probs = torch.tensor(counts, dtype=torch.float64) / sum(counts)
        return F.cross_entropy(x + s["tau"] * torch.log(base_probs), y, reduction=red)
    if name == "ldam":
        m_list = 1.0 / np.sqrt(np.sqrt(counts))
        m_list = torch.tensor(m_list * (0.5 / np.max(m_list)), dtype=torch.float64)
        cos = x / 30.0  # NormedLinear's output; LDAMLoss scales by s = 30
        index = torch.zeros_like(cos, dtype=torch.uint8)
        index.scatter_(1, y.view(-1, 1), 1)
        batch_m = torch.matmul(m_list[None, :], index.double().transpose(0, 1)).view((-1, 1))
        output = torch.where(index.bool(), cos - batch_m, cos)
        return F.cross_entropy(30.0 * output, y, weight=weight, reduction=red)
    if name == "focal":
        ce = F.cross_entropy(x, y, reduction="none", weight=weight)
        loss = (1 - torch.exp(-ce)) ** s["gamma"] * ce
        return loss if red == "none" else loss.mean()
    if name == "wb":
        w = cb_weights(s["beta"])
        onehot = F.one_hot(y, K).double()
        w = (w.unsqueeze(0).repeat(onehot.shape[0], 1) * onehot).sum(1).unsqueeze(1).repeat(1, K)
        pred = x.softmax(dim=1)
        if red == "none":
            return F.binary_cross_entropy(pred, onehot, weight=w, reduction="none").mean(1)
        return F.binary_cross_entropy(input=pred, target=onehot, weight=w)

per_sample = crit(z, ya, "none")
if s["mixup"]:
    loss = s["lam"] * crit(z, ya, "mean") + (1 - s["lam"]) * crit(z, yb, "mean")
else:
    loss = crit(z, ya, "mean")
loss.backward()
print(json.dumps({"per_sample": per_sample.tolist(), "loss": loss.item(),
                  "grad": z.grad.view(-1).tolist()}))
"#;

/// One configuration of the loss keys.
#[derive(Debug, Clone, Copy)]
struct Case {
    loss: StageOneLossName,
    reweight: Reweight,
    epoch: usize,
}

fn config(c: Case) -> Config {
    Config {
        loss: c.loss,
        reweight: c.reweight,
        la_tau: 1.5,
        focal_gamma: 2.0,
        cb_beta: 0.999,
        drw_epoch: 3,
        num_epochs: 10,
        classifier: if c.loss == StageOneLossName::Ldam {
            ClassifierKind::Normed
        } else {
            ClassifierKind::Linear
        },
        ..Config::default()
    }
}

/// PyTorch's per-sample values, loss and gradient of `name` under `c`'s settings.
fn pytorch(name: &str, c: Case, mixup: bool) -> (Vec<f64>, f64, Vec<f64>) {
    let spec = json!({
        "counts": COUNTS, "logits": LOGITS, "targets": TARGETS, "targets_b": TARGETS_B,
        "loss": name, "reweight": c.reweight.to_string(), "epoch": c.epoch, "drw_epoch": 3,
        "beta": 0.999, "tau": 1.5, "gamma": 2.0, "mixup": mixup, "lam": LAM,
    });
    let out: Value = serde_json::from_str(&common::python(SCRIPT, &[&spec.to_string()])).unwrap();
    let list = |k: &str| -> Vec<f64> {
        out[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    (
        list("per_sample"),
        out["loss"].as_f64().unwrap(),
        list("grad"),
    )
}

fn logits() -> Tensor {
    Tensor::from_slice(&LOGITS)
        .view([6, 5])
        .to_kind(Kind::Double)
        .set_requires_grad(true)
}

fn targets(t: &[i64]) -> Tensor {
    Tensor::from_slice(t).to_device(Device::Cpu)
}

fn vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.detach().view([-1])).unwrap()
}

fn assert_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-9 * (1.0 + w.abs()),
            "{what}[{i}]: mislas {g}, PyTorch {w}\nmislas {got:?}\nPyTorch {want:?}"
        );
    }
}

/// mislas's per-sample values, batch loss and gradient of `c` (with mixup when `mixup`).
fn mislas(c: Case, mixup: bool) -> (Vec<f64>, f64, Vec<f64>) {
    let loss = StageOneLoss::for_config(&config(c), &COUNTS).unwrap();
    let z = logits();
    let per_sample = vec(&loss.per_sample(&z, &targets(&TARGETS), c.epoch));
    let batch = MixedBatch {
        images: Tensor::zeros([6, 1], (Kind::Float, Device::Cpu)),
        targets_a: targets(&TARGETS),
        targets_b: targets(if mixup { &TARGETS_B } else { &TARGETS }),
        lam: if mixup { LAM } else { 1.0 },
    };
    let total = batch.loss_with(|y| loss.batch_loss(&z, y, c.epoch));
    total.backward();
    (per_sample, total.double_value(&[]), vec(&z.grad()))
}

fn check(name: &str, c: Case, mixup: bool) {
    let (ps, l, g) = mislas(c, mixup);
    let (want_ps, want_l, want_g) = pytorch(name, c, mixup);
    let what = format!("{name} {c:?} mixup {mixup}");
    assert_close(&format!("{what} per-sample"), &ps, &want_ps);
    assert_close(&format!("{what} loss"), &[l], &[want_l]);
    assert_close(&format!("{what} gradient"), &g, &want_g);
}

fn case(loss: StageOneLossName, reweight: Reweight, epoch: usize) -> Case {
    Case {
        loss,
        reweight,
        epoch,
    }
}

#[test]
fn each_loss_matches_its_authors_code_in_pytorch() {
    use StageOneLossName::*;
    for (name, loss) in [
        ("ce", Ce),
        ("balanced_softmax", BalancedSoftmax),
        ("logit_adjusted", LogitAdjusted),
        ("ldam", Ldam),
        ("focal", Focal),
    ] {
        check(name, case(loss, Reweight::None, 0), false);
    }
}

#[test]
fn class_balanced_and_deferred_weights_match_ldam_drw_code() {
    use StageOneLossName::*;
    for (name, loss) in [("ce", Ce), ("focal", Focal), ("ldam", Ldam)] {
        check(name, case(loss, Reweight::Cb, 0), false);
        // DRW: unweighted at epoch 2, weighted from drw_epoch 3 on.
        for epoch in [2, 3, 9] {
            check(name, case(loss, Reweight::Drw, epoch), false);
        }
    }
    // The switch changes the loss: epoch 2 equals plain LDAM, epoch 3 does not.
    let plain = mislas(case(Ldam, Reweight::None, 0), false).1;
    assert_eq!(mislas(case(Ldam, Reweight::Drw, 2), false).1, plain);
    assert!((mislas(case(Ldam, Reweight::Drw, 3), false).1 - plain).abs() > 1e-3);
}

#[test]
fn losses_compose_with_mixup_as_the_reference_criterion() {
    use StageOneLossName::*;
    for (name, loss, reweight) in [
        ("ce", Ce, Reweight::None),
        ("balanced_softmax", BalancedSoftmax, Reweight::None),
        ("logit_adjusted", LogitAdjusted, Reweight::None),
        ("ldam", Ldam, Reweight::Drw),
        ("focal", Focal, Reweight::Cb),
    ] {
        check(name, case(loss, reweight, 5), true);
    }
}

/// Weight balancing's classifier loss: `CB_loss(labels, logits, counts, K, "softmax", β, …)`.
#[test]
fn weight_balancing_loss_matches_its_code() {
    let c = case(StageOneLossName::Ce, Reweight::Cb, 0);
    let (_, want_l, want_g) = pytorch("wb", c, false);
    let weights =
        mislas::method::loss::class_balanced::effective_number_weights(&COUNTS, 0.999).unwrap();
    let z = logits();
    let l = class_balanced_bce(&z, &targets(&TARGETS), &weights);
    l.backward();
    assert_close("wb loss", &[l.double_value(&[])], &[want_l]);
    assert_close("wb gradient", &vec(&z.grad()), &want_g);
}
