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

def run(s):
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
  return {"per_sample": per_sample.tolist(), "loss": loss.item(), "grad": z.grad.view(-1).tolist()}

print(json.dumps([run(s) for s in json.loads(sys.argv[1])]))
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

/// Per-sample values `[B]`, batch loss and gradient `[B·K]`.
type Figures = (Vec<f64>, f64, Vec<f64>);

/// PyTorch's figures of each `(name, case, mixup)`, from one Python process.
fn pytorch(cases: &[(&str, Case, bool)]) -> Vec<Figures> {
    let specs: Vec<Value> = cases
        .iter()
        .map(|(name, c, mixup)| {
            json!({
                "counts": COUNTS, "logits": LOGITS, "targets": TARGETS, "targets_b": TARGETS_B,
                "loss": name, "reweight": c.reweight.to_string(), "epoch": c.epoch,
                "drw_epoch": 3, "beta": 0.999, "tau": 1.5, "gamma": 2.0, "mixup": mixup,
                "lam": LAM,
            })
        })
        .collect();
    let arg = Value::Array(specs).to_string();
    let out: Value = serde_json::from_str(&common::python(SCRIPT, &[&arg])).unwrap();
    let list = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    out.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                list(&r["per_sample"]),
                r["loss"].as_f64().unwrap(),
                list(&r["grad"]),
            )
        })
        .collect()
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
fn mislas(c: Case, mixup: bool) -> Figures {
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

/// mislas against PyTorch on every `(name, case, mixup)`.
fn check(cases: &[(&str, Case, bool)]) {
    for ((name, c, mixup), want) in cases.iter().zip(pytorch(cases)) {
        let (ps, l, g) = mislas(*c, *mixup);
        let what = format!("{name} {c:?} mixup {mixup}");
        assert_close(&format!("{what} per-sample"), &ps, &want.0);
        assert_close(&format!("{what} loss"), &[l], &[want.1]);
        assert_close(&format!("{what} gradient"), &g, &want.2);
    }
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
    check(&[
        ("ce", case(Ce, Reweight::None, 0), false),
        (
            "balanced_softmax",
            case(BalancedSoftmax, Reweight::None, 0),
            false,
        ),
        (
            "logit_adjusted",
            case(LogitAdjusted, Reweight::None, 0),
            false,
        ),
        ("ldam", case(Ldam, Reweight::None, 0), false),
        ("focal", case(Focal, Reweight::None, 0), false),
    ]);
}

#[test]
fn class_balanced_and_deferred_weights_match_ldam_drw_code() {
    use StageOneLossName::*;
    let mut cases = Vec::new();
    for (name, loss) in [("ce", Ce), ("focal", Focal), ("ldam", Ldam)] {
        cases.push((name, case(loss, Reweight::Cb, 0), false));
        // DRW: unweighted at epoch 2, weighted from drw_epoch 3 on.
        for epoch in [2, 3, 9] {
            cases.push((name, case(loss, Reweight::Drw, epoch), false));
        }
    }
    check(&cases);
    // The switch changes the loss: epoch 2 equals plain LDAM, epoch 3 does not.
    let plain = mislas(case(Ldam, Reweight::None, 0), false).1;
    assert_eq!(mislas(case(Ldam, Reweight::Drw, 2), false).1, plain);
    assert!((mislas(case(Ldam, Reweight::Drw, 3), false).1 - plain).abs() > 1e-3);
}

#[test]
fn losses_compose_with_mixup_as_the_reference_criterion() {
    use StageOneLossName::*;
    check(&[
        ("ce", case(Ce, Reweight::None, 5), true),
        (
            "balanced_softmax",
            case(BalancedSoftmax, Reweight::None, 5),
            true,
        ),
        (
            "logit_adjusted",
            case(LogitAdjusted, Reweight::None, 5),
            true,
        ),
        ("ldam", case(Ldam, Reweight::Drw, 5), true),
        ("focal", case(Focal, Reweight::Cb, 5), true),
    ]);
}

/// Weight balancing's classifier loss: `CB_loss(labels, logits, counts, K, "softmax", β, …)`.
#[test]
fn weight_balancing_loss_matches_its_code() {
    let c = case(StageOneLossName::Ce, Reweight::Cb, 0);
    let (_, want_l, want_g) = pytorch(&[("wb", c, false)]).remove(0);
    let weights =
        mislas::method::loss::class_balanced::effective_number_weights(&COUNTS, 0.999).unwrap();
    let z = logits();
    let l = class_balanced_bce(&z, &targets(&TARGETS), &weights);
    l.backward();
    assert_close("wb loss", &[l.double_value(&[])], &[want_l]);
    assert_close("wb gradient", &vec(&z.grad()), &want_g);
}
