//! Stochastic gradient descent with momentum and weight decay, step for step as PyTorch's
//! `torch.optim.SGD(params, lr, momentum, weight_decay)` (dampening 0, no Nesterov), the
//! optimizer of both stages of the reference, with parameter groups and a state that a
//! checkpoint can hold.
use std::collections::HashSet;
use tch::Tensor;

/// Prefix of the momentum buffers' names in [`Sgd::state`].
pub const BUFFER_PREFIX: &str = "momentum_buffer.";

/// Parameters that share a learning rate (a `param_group` of PyTorch).
#[derive(Debug)]
struct Group {
    params: Vec<(String, Tensor)>,
    lr: f64,
}

/// SGD with momentum μ and L2 weight decay λ over parameter groups. For each parameter p with
/// a gradient g, with its group's learning rate lr:
///
/// d = g + λ·p; buf = d on its first step, else buf = μ·buf + d; p ← p − lr·buf
///
/// (`torch.optim.SGD`'s single-tensor path with dampening 0; with μ = 0 no buffer is kept and
/// p ← p − lr·d). Updates are in place under `no_grad`. The results agree with PyTorch's to
/// rounding: PyTorch fuses `add(x, alpha=…)`, tch rounds the product first.
#[derive(Debug)]
pub struct Sgd {
    groups: Vec<Group>,
    momentum: f64,
    weight_decay: f64,
    /// One slot per parameter, in group order; `None` until the parameter's first step.
    buffers: Vec<Vec<Option<Tensor>>>,
}

impl Sgd {
    /// An optimizer over parameter groups, every group starting at learning rate `lr` (as the
    /// reference's `torch.optim.SGD([{params: classifier}, {params: lws}], config.lr, …)`;
    /// the schedule then sets each group's rate with [`Sgd::set_lr`]).
    ///
    /// * `groups`: named parameters per group — leaf tensors that require grad, e.g. shallow
    ///   clones of a `VarStore`'s variables (they share storage, so updates reach the model).
    ///   The names label the momentum buffers in [`Sgd::state`].
    /// * `momentum` μ ∈ [0, 1), `weight_decay` λ ≥ 0 (the configuration validates both).
    ///
    /// # Panics
    /// If a parameter name appears twice (the state could not tell the buffers apart).
    pub fn new(
        groups: Vec<Vec<(String, Tensor)>>,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Self {
        let mut names = HashSet::new();
        for (name, _) in groups.iter().flatten() {
            assert!(
                names.insert(name.clone()),
                "SGD: parameter '{name}' is listed twice"
            );
        }
        let buffers = groups
            .iter()
            .map(|g| g.iter().map(|_| None).collect())
            .collect();
        let groups = groups
            .into_iter()
            .map(|params| Group { params, lr })
            .collect();
        Sgd {
            groups,
            momentum,
            weight_decay,
            buffers,
        }
    }

    /// Number of parameter groups.
    pub fn num_groups(&self) -> usize {
        self.groups.len()
    }

    /// Learning rate of group `group`.
    ///
    /// # Panics
    /// If `group` ≥ [`Sgd::num_groups`].
    pub fn lr(&self, group: usize) -> f64 {
        self.groups[group].lr
    }

    /// Sets the learning rate of group `group` (the schedule calls this once per epoch).
    ///
    /// # Panics
    /// If `group` ≥ [`Sgd::num_groups`].
    pub fn set_lr(&mut self, group: usize, lr: f64) {
        self.groups[group].lr = lr;
    }

    /// One update of every parameter that has a gradient (parameters whose `grad` is undefined
    /// are skipped, as PyTorch skips `grad is None`).
    ///
    /// # Panics
    /// On a libtorch error, e.g. a gradient on another device than its parameter.
    pub fn step(&mut self) {
        let (mu, wd) = (self.momentum, self.weight_decay);
        tch::no_grad(|| {
            for (group, bufs) in self.groups.iter_mut().zip(&mut self.buffers) {
                let lr = group.lr;
                for ((_, p), slot) in group.params.iter_mut().zip(bufs.iter_mut()) {
                    let g = p.grad();
                    if !g.defined() {
                        continue;
                    }
                    let d = if wd != 0.0 { g + &*p * wd } else { g };
                    let update = if mu == 0.0 {
                        d
                    } else {
                        match slot {
                            Some(buf) => {
                                *buf *= mu;
                                *buf += &d;
                                buf.shallow_clone()
                            }
                            None => slot.insert(d.detach_copy()).shallow_clone(),
                        }
                    };
                    *p -= update * lr;
                }
            }
        })
    }

    /// Zeroes the gradient of every parameter that has one (PyTorch's
    /// `zero_grad(set_to_none=False)`; tch cannot reset a gradient to `None`, so a parameter
    /// left out of the next backward pass still takes weight decay and momentum steps).
    pub fn zero_grad(&mut self) {
        for g in &mut self.groups {
            for (_, p) in &mut g.params {
                p.zero_grad();
            }
        }
    }

    /// Every parameter, in group order: shallow clones of the live tensors (what a
    /// data-parallel step hooks its gradient all-reduce on).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .flat_map(|g| &g.params)
            .map(|(_, p)| p.shallow_clone())
            .collect()
    }

    /// The gradients of the parameters that have one, in group order: tensors that share their
    /// storage with the live gradients, so in-place changes (unscaling, clipping) reach the
    /// next [`Sgd::step`].
    pub fn gradients(&self) -> Vec<Tensor> {
        self.groups
            .iter()
            .flat_map(|g| &g.params)
            .map(|(_, p)| p.grad())
            .filter(Tensor::defined)
            .collect()
    }

    /// The optimizer state as named tensors for a checkpoint: `momentum_buffer.<param name>`
    /// for every parameter that has a buffer (none before the first step, or with μ = 0).
    /// The tensors are shallow clones of the live buffers: save them before the next step.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.groups
            .iter()
            .zip(&self.buffers)
            .flat_map(|(g, bufs)| g.params.iter().zip(bufs))
            .filter_map(|((name, _), buf)| {
                buf.as_ref()
                    .map(|b| (format!("{BUFFER_PREFIX}{name}"), b.shallow_clone()))
            })
            .collect()
    }

    /// Restores a state written by [`Sgd::state`]. An empty `named` resets the optimizer to
    /// before its first step; otherwise every parameter needs its buffer, each copied onto its
    /// parameter's device and dtype.
    ///
    /// # Errors
    /// A message naming the first entry that is not a known parameter's buffer (or any entry
    /// when μ = 0), a parameter whose buffer is missing, or a buffer whose shape differs from
    /// its parameter's; on error the state is unchanged.
    pub fn load_state(&mut self, named: &[(String, Tensor)]) -> Result<(), String> {
        if named.is_empty() {
            self.buffers.iter_mut().flatten().for_each(|b| *b = None);
            return Ok(());
        }
        if self.momentum == 0.0 {
            return Err(format!(
                "optimizer state: this SGD has no momentum, yet the state holds '{}'",
                named[0].0
            ));
        }
        let params: Vec<&(String, Tensor)> = self.groups.iter().flat_map(|g| &g.params).collect();
        for (key, _) in named {
            let known = key
                .strip_prefix(BUFFER_PREFIX)
                .is_some_and(|n| params.iter().any(|(name, _)| name == n));
            if !known {
                return Err(format!(
                    "optimizer state: '{key}' is not the momentum buffer of a parameter"
                ));
            }
        }
        let mut loaded = Vec::with_capacity(params.len());
        for (name, p) in params {
            let key = format!("{BUFFER_PREFIX}{name}");
            let (_, t) = named
                .iter()
                .find(|(k, _)| *k == key)
                .ok_or_else(|| format!("optimizer state: no '{key}'"))?;
            if t.size() != p.size() {
                return Err(format!(
                    "optimizer state: '{key}' has shape {:?}, its parameter {:?}",
                    t.size(),
                    p.size()
                ));
            }
            let buf = t
                .f_to_device(p.device())
                .and_then(|t| t.f_to_kind(p.kind()))
                .and_then(|t| t.f_detach_copy())
                .map_err(|e| format!("optimizer state: '{key}': {e}"))?;
            loaded.push(buf);
        }
        let mut loaded = loaded.into_iter();
        for slot in self.buffers.iter_mut().flatten() {
            *slot = loaded.next();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Reduction};

    fn t64(v: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    /// A linear classifier W [2, 3], b [2] in float64, as in the PyTorch script below.
    fn model() -> (Tensor, Tensor) {
        let w = t64(&[0.2, -0.1, 0.4, -0.3, 0.25, 0.05], &[2, 3]).set_requires_grad(true);
        let b = t64(&[0.1, -0.2], &[2]).set_requires_grad(true);
        (w, b)
    }

    /// Cross-entropy of step `step` (0-based): the batch X scaled by step + 1.
    fn backward(w: &Tensor, b: &Tensor, step: usize) {
        let x = t64(
            &[
                1.0, -2.0, 0.5, 0.3, 0.8, -1.0, -0.7, 0.1, 2.0, 1.5, 0.0, -0.4,
            ],
            &[4, 3],
        );
        let y = Tensor::from_slice(&[0i64, 1, 1, 0]);
        let z = (x * (step + 1) as f64).matmul(&w.tr()) + b;
        z.cross_entropy_loss::<Tensor>(&y, None, Reduction::Mean, -100, 0.0)
            .backward();
    }

    /// Group 0: the weight at lr 0.1; group 1: the bias at 0.05; μ 0.9, λ 0.01.
    fn optimizer(w: &Tensor, b: &Tensor) -> Sgd {
        let groups = vec![
            vec![("fc.weight".to_owned(), w.shallow_clone())],
            vec![("fc.bias".to_owned(), b.shallow_clone())],
        ];
        let mut opt = Sgd::new(groups, 0.1, 0.9, 0.01);
        opt.set_lr(1, 0.05);
        opt
    }

    fn assert_values(t: &Tensor, want: &[f64]) {
        let got = Vec::<f64>::try_from(&t.detach().view([-1])).unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    /// PyTorch 2.11, float64:
    /// ```python
    /// opt = torch.optim.SGD([{"params": [W]}, {"params": [b], "lr": 0.05}], lr=0.1,
    ///                       momentum=0.9, weight_decay=0.01)
    /// for step in range(3):
    ///     opt.zero_grad()
    ///     F.cross_entropy((X * (step + 1)) @ W.T + b, y).backward()
    ///     opt.step()
    /// ```
    const W1: [f64; 6] = [
        0.22245196193934558,
        -0.11851305781408833,
        0.3776259866936918,
        -0.32235196193934557,
        0.2683630578140883,
        0.07192401330630822,
    ];
    const B1: [f64; 2] = [0.0917069611549462, -0.1916569611549462];
    const W3: [f64; 6] = [
        0.34180928373510877,
        -0.212964738046653,
        0.1993059851761723,
        -0.4412487636351088,
        0.362123957896653,
        0.24817167437382764,
    ];
    const B3: [f64; 2] = [0.04936822701922669, -0.1490878470067267];
    /// `opt.state[W]["momentum_buffer"]` after the three steps.
    const BUF_W3: [f64; 6] = [
        -0.6773805715446065,
        0.5679628068243351,
        1.070256245990589,
        0.6746743705446068,
        -0.5639035053243354,
        -1.0580783414905888,
    ];

    #[test]
    fn matches_pytorch_sgd_with_two_groups() {
        let (w, b) = model();
        let mut opt = optimizer(&w, &b);
        for step in 0..3 {
            opt.zero_grad();
            backward(&w, &b, step);
            opt.step();
            if step == 0 {
                assert_values(&w, &W1);
                assert_values(&b, &B1);
            }
        }
        assert_values(&w, &W3);
        assert_values(&b, &B3);
        let state = opt.state();
        let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["momentum_buffer.fc.weight", "momentum_buffer.fc.bias"]
        );
        assert_values(&state[0].1, &BUF_W3);
        assert_eq!((opt.num_groups(), opt.lr(0), opt.lr(1)), (2, 0.1, 0.05));
    }

    /// Two steps, state and parameters copied into a fresh optimizer, third step there: the
    /// result is PyTorch's three-step result.
    #[test]
    fn state_round_trip_continues_the_run() {
        let (w, b) = model();
        let mut opt = optimizer(&w, &b);
        for step in 0..2 {
            opt.zero_grad();
            backward(&w, &b, step);
            opt.step();
        }
        let saved: Vec<(String, Tensor)> = opt
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.copy()))
            .collect();
        let w2 = w.detach().copy().set_requires_grad(true);
        let b2 = b.detach().copy().set_requires_grad(true);
        let mut resumed = optimizer(&w2, &b2);
        resumed.load_state(&saved).unwrap();
        backward(&w2, &b2, 2);
        resumed.step();
        assert_values(&w2, &W3);
        assert_values(&b2, &B3);
        // Loading an empty state restarts the momentum.
        resumed.load_state(&[]).unwrap();
        assert!(resumed.state().is_empty());
    }

    #[test]
    fn load_state_names_the_bad_entry() {
        let (w, b) = model();
        let mut opt = optimizer(&w, &b);
        let buf = |shape: &[i64]| Tensor::zeros(shape, (Kind::Double, Device::Cpu));
        let weight = ("momentum_buffer.fc.weight".to_owned(), buf(&[2, 3]));
        let bias = ("momentum_buffer.fc.bias".to_owned(), buf(&[2]));

        let e = opt
            .load_state(&[(weight.0.clone(), buf(&[2, 3]))])
            .unwrap_err();
        assert!(e.contains("momentum_buffer.fc.bias"), "{e}");
        let e = opt
            .load_state(&[
                (weight.0.clone(), buf(&[3, 2])),
                (bias.0.clone(), bias.1.shallow_clone()),
            ])
            .unwrap_err();
        assert!(
            e.contains("momentum_buffer.fc.weight") && e.contains("[3, 2]"),
            "{e}"
        );
        let e = opt
            .load_state(&[
                (weight.0.clone(), weight.1.shallow_clone()),
                ("momentum_buffer.fc2.bias".to_owned(), buf(&[2])),
            ])
            .unwrap_err();
        assert!(e.contains("fc2.bias"), "{e}");
        assert!(
            opt.state().is_empty(),
            "a failed load leaves the state unchanged"
        );
        opt.load_state(&[weight, bias]).unwrap();
        assert_eq!(opt.state().len(), 2);
    }

    /// By hand, μ = 0, λ = 0.5, lr 0.1, loss = Σ 3·p: g = 3, p ← p − 0.1·(3 + 0.5·p); from
    /// p = [1, −2]: [1 − 0.35, −2 − 0.2] = [0.65, −2.2]. No buffer is kept.
    #[test]
    fn without_momentum_is_plain_decayed_gradient_descent() {
        let p = t64(&[1.0, -2.0], &[2]).set_requires_grad(true);
        let mut opt = Sgd::new(
            vec![vec![("p".to_owned(), p.shallow_clone())]],
            0.1,
            0.0,
            0.5,
        );
        (&p * 3.0).sum(Kind::Double).backward();
        opt.step();
        assert_values(&p, &[0.65, -2.2]);
        assert!(opt.state().is_empty());
        opt.set_lr(0, 0.0);
        opt.step();
        assert_values(&p, &[0.65, -2.2]);
        assert!(opt
            .load_state(&[("momentum_buffer.p".to_owned(), p.detach().copy())])
            .is_err());
    }

    /// A parameter without gradient is left alone (PyTorch skips `grad is None`).
    #[test]
    fn parameters_without_gradient_are_skipped() {
        let p = t64(&[1.0], &[1]).set_requires_grad(true);
        let mut opt = Sgd::new(
            vec![vec![("p".to_owned(), p.shallow_clone())]],
            0.1,
            0.9,
            0.5,
        );
        opt.step();
        assert_values(&p, &[1.0]);
        assert!(opt.state().is_empty());
    }

    #[test]
    #[should_panic(expected = "listed twice")]
    fn duplicate_names_panic() {
        let p = || Tensor::zeros([1], (Kind::Float, Device::Cpu));
        Sgd::new(
            vec![vec![("a".to_owned(), p())], vec![("a".to_owned(), p())]],
            0.1,
            0.9,
            0.0,
        );
    }
}
