//! Data-parallel training on PyTorch's c10d with Gloo, two ranks on 127.0.0.1 (the CPU
//! tests): a step of two ranks equals a one-process step that accumulates the same two halves.
use mislas::dist::c10d::{Backend, ProcessGroup};
use mislas::dist::Replicas;
use mislas::engine::recipe::mixup::MixupCrossEntropy;
use mislas::engine::step::{train_step, train_step_synced, GradientSync, StepOptions, TrainBatch};
use mislas::method::sgd::Sgd;
use mislas::model::{Network, Part};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::time::Duration;
use tch::{Device, Tensor};

const STEPS: usize = 3;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Eight 1×12×12 images and their labels, the same in every thread (not from torch's global
/// generator, which the threads share).
fn batch() -> (Tensor, Tensor) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let pixels: Vec<f32> = (0..8 * 144).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::from_slice(&pixels).view([8, 1, 12, 12]);
    (x, Tensor::from_slice(&[0i64, 1, 2, 3, 3, 2, 1, 0]))
}

fn sgd_of(net: &Network) -> Sgd {
    let mut params = net.part_parameters(Part::Backbone);
    params.extend(net.part_parameters(Part::Classifier));
    Sgd::new(vec![params], 0.1, 0.9, 5e-4)
}

fn parameters(net: &Network) -> BTreeMap<String, Tensor> {
    net.vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

fn state(net: &Network) -> BTreeMap<String, Tensor> {
    net.vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

const TRAIN: StepOptions = StepOptions {
    backbone_train: true,
    accum_steps: 1,
    autocast: false,
};

/// One rank: joins, takes rank 0's weights, trains STEPS steps on its half of the batch
/// (positions ≡ rank mod 2, as the sampler's split gives), returns (initial state, parameters).
fn rank(rank: usize, port: u16) -> (BTreeMap<String, Tensor>, BTreeMap<String, Tensor>) {
    let group = ProcessGroup::join(
        "127.0.0.1",
        port,
        rank,
        2,
        Backend::Gloo,
        Duration::from_secs(60),
    )
    .expect("joins the group");
    let replicas = Replicas::new(group, Vec::new());
    // Different initial weights on each rank: the broadcast must make them rank 0's.
    tch::manual_seed(rank as i64 + 10);
    let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
    replicas.broadcast_state(&net).unwrap();
    let initial = state(&net);
    let mut sgd = sgd_of(&net);
    let (x, y) = batch();
    let mine = Tensor::from_slice(&[rank as i64, rank as i64 + 2, rank as i64 + 4, rank as i64 + 6]);
    let (x, y) = (x.index_select(0, &mine), y.index_select(0, &mine));
    let method = MixupCrossEntropy { alpha: None };
    for step in 0..STEPS {
        replicas.broadcast_buffers(&net).unwrap();
        let b = TrainBatch {
            images: &x,
            labels: &y,
            mixup_seed: step as u64,
        };
        let sync: &dyn GradientSync = &replicas;
        let out = train_step_synced(&net, &mut sgd, None, &method, b, TRAIN, Some(sync)).unwrap();
        assert_eq!(out.images, 8, "the figures are the global batch's");
        assert!(out.applied);
    }
    (initial, parameters(&net))
}

#[test]
fn two_ranks_take_the_step_of_one_process_accumulating_their_halves() {
    let port = free_port();
    let r1 = std::thread::spawn(move || rank(1, port));
    let (initial, rank0) = rank(0, port);
    let (initial1, rank1) = r1.join().unwrap();
    for (k, t) in &initial {
        assert!(t.equal(&initial1[k]), "{k}: rank 1 did not start from rank 0's weights");
    }

    // One process: the same initial weights, the batch ordered as [rank 0's half, rank 1's
    // half], two micro-batches (each half's BatchNorm statistics, half the weight each).
    let net = Network::new("resnet32_fe", 1, 4, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (k, mut t) in net.vs.variables() {
            t.copy_(&initial[&k]);
        }
    });
    let mut sgd = sgd_of(&net);
    let (x, y) = batch();
    let order = Tensor::from_slice(&[0i64, 2, 4, 6, 1, 3, 5, 7]);
    let (x, y) = (x.index_select(0, &order), y.index_select(0, &order));
    let opts = StepOptions {
        accum_steps: 2,
        ..TRAIN
    };
    let method = MixupCrossEntropy { alpha: None };
    for step in 0..STEPS {
        let b = TrainBatch {
            images: &x,
            labels: &y,
            mixup_seed: step as u64,
        };
        assert!(train_step(&net, &mut sgd, None, &method, b, opts).applied);
    }
    let single = parameters(&net);
    let mut moved = 0.0f64;
    for (k, t) in &single {
        let d0 = (t - &rank0[k]).abs().max().double_value(&[]);
        let d1 = (&rank0[k] - &rank1[k]).abs().max().double_value(&[]);
        assert!(d0 < 1e-5, "{k}: 2 ranks and 1 process differ by {d0}");
        assert!(d1 < 1e-6, "{k}: the ranks differ by {d1}");
        moved = moved.max((t - &initial[k]).abs().max().double_value(&[]));
    }
    assert!(moved > 1e-3, "the steps moved the weights ({moved})");
    assert_eq!(single.len(), rank0.len());
}
