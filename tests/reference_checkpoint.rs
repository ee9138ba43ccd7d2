//! `read_pth` against files written by PyTorch itself (the venv's `torch.save`): a checkpoint
//! shaped like the reference's `model_best.pth.tar`, the same object at pickle protocol 4, and
//! broken or foreign files.
//!
//! Python also writes what it saved, flattened to the same dotted keys, as JSON (each value as
//! the bits of its float64, so that nothing is lost to decimal); every tensor (key order,
//! dtype, shape, values) and every number must match it exactly.
mod common;

use common::python;
use mislas::model::pth::{read_pth, PthCheckpoint};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Device, Kind, Tensor};

/// Writes the fixtures into the folder given as argv[1].
const FIXTURES_PY: &str = r#"
import collections, json, os, sys, zipfile
import numpy as np
import torch
from torch import nn

out = sys.argv[1]
torch.manual_seed(0)


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn1(self.conv1(x))


class LearnableWeightScaling(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.learned_norm = nn.Parameter(torch.ones(1, num_classes))


model = nn.DataParallel(Backbone())
for _ in range(2):  # moves the running statistics; num_batches_tracked becomes 2
    model(torch.randn(2, 3, 6, 6))
classifier = nn.DataParallel(nn.Linear(4, 3))
lws_model = nn.DataParallel(LearnableWeightScaling(3))
with torch.no_grad():
    lws_model.module.learned_norm.mul_(torch.tensor([[0.5, 1.0, 2.0]]))

base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
shared = {'x': torch.arange(2.0), 'n': 5}  # pickled once, then referenced through the memo
checkpoint = {
    'epoch': 200,
    'state_dict_model': model.state_dict(),
    'state_dict_classifier': classifier.state_dict(),
    'state_dict_lws_model': lws_model.state_dict(),
    'best_acc1': torch.tensor(81.25),
    'its_ece': 3.125,
    'extras': {
        'base': base,
        'transposed': base.t(),
        'window': base.view(-1)[5:9],
        'every_other_column': base[:, ::2],
        'empty': base[:, :0],
        'half': torch.arange(6, dtype=torch.float16).reshape(2, 3) / 4,
        'bfloat16': torch.arange(4, dtype=torch.bfloat16) - 1.5,
        'float64': torch.arange(5, dtype=torch.float64) / 3,
        'int32': torch.arange(-3, 3, dtype=torch.int32),
        'int16': torch.arange(-2, 2, dtype=torch.int16),
        'int8': torch.arange(-2, 2, dtype=torch.int8),
        'uint8': torch.arange(250, 256, dtype=torch.uint8),
        'bool': torch.tensor([True, False, True]),
        'int64': torch.tensor([2 ** 40, -2 ** 40, 7]),
        'parameter': nn.Parameter(torch.full((2,), 0.25)),
        'np_ece': np.float64(2.75),
        'np_count': np.int64(-7),
        'np_float32': np.float32(0.5),
        'np_uint8': np.uint8(200),
        'np_bool': np.bool_(True),
        'flag': True,
        'big': 2 ** 38,
        'negative_big': -2 ** 38,
        'huge': 2 ** 70,
        'name': 'resnet32_fe',
        'nothing': None,
        'mixed': [1, 2.5, torch.arange(3)],
        7: (torch.zeros(2, 2), -1),
        'shared_a': shared,
        'shared_b': shared,
        'tied_a': base,
    },
}


def flatten(obj, prefix, tensors, numbers):
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        if isinstance(obj, torch.Tensor):
            t = obj.detach()
            values = t.double().flatten().numpy()
            tensors.append({'key': prefix, 'dtype': str(t.dtype), 'shape': list(t.shape),
                            'bits': values.view(np.uint64).tolist()})
        elif isinstance(obj, (bool, int, float, np.number, np.bool_)):
            numbers[prefix] = int(np.float64(float(obj)).view(np.uint64))
        return
    for k, v in items:
        flatten(v, f'{prefix}.{k}' if prefix else str(k), tensors, numbers)


tensors, numbers = [], {}
flatten(checkpoint, '', tensors, numbers)
with open(os.path.join(out, 'expected.json'), 'w') as f:
    json.dump({'tensors': tensors, 'numbers': numbers}, f)

ckpt = os.path.join(out, 'model_best.pth.tar')
torch.save(checkpoint, ckpt)
torch.save(checkpoint, os.path.join(out, 'protocol4.pth'), pickle_protocol=4)

# Broken and foreign files.
with open(ckpt, 'rb') as f:
    data = f.read()
with open(os.path.join(out, 'truncated.pth.tar'), 'wb') as f:
    f.write(data[: len(data) // 2])
with open(os.path.join(out, 'notes.txt'), 'w') as f:
    f.write('epoch: 200\nbest_acc1: 81.25\n')
torch.save({'w': torch.ones(2)}, os.path.join(out, 'legacy.pth'),
           _use_new_zipfile_serialization=False)
torch.save({'w': torch.ones(2, dtype=torch.complex64)}, os.path.join(out, 'complex.pth'))
with zipfile.ZipFile(os.path.join(out, 'plain.zip'), 'w') as z:
    z.writestr('hello/readme.txt', 'not a checkpoint')
torch.save({'a': torch.ones(2), 'b': torch.zeros(3)}, os.path.join(out, 'whole.pth'))
with zipfile.ZipFile(os.path.join(out, 'whole.pth')) as src, \
        zipfile.ZipFile(os.path.join(out, 'missing_storage.pth'), 'w') as dst:
    for info in src.infolist():
        if not info.filename.endswith('/data/1'):
            dst.writestr(info, src.read(info.filename))
"#;

/// The fixture folder, written once per test run by Python.
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("reference_checkpoint");
        std::fs::create_dir_all(&dir).unwrap();
        python(FIXTURES_PY, &[dir.to_str().unwrap()]);
        dir
    })
}

fn kind_of(dtype: &str) -> Kind {
    match dtype {
        "torch.float32" => Kind::Float,
        "torch.float64" => Kind::Double,
        "torch.float16" => Kind::Half,
        "torch.bfloat16" => Kind::BFloat16,
        "torch.int64" => Kind::Int64,
        "torch.int32" => Kind::Int,
        "torch.int16" => Kind::Int16,
        "torch.int8" => Kind::Int8,
        "torch.uint8" => Kind::Uint8,
        "torch.bool" => Kind::Bool,
        other => panic!("fixture dtype {other} not mapped"),
    }
}

fn values(t: &Tensor) -> Vec<f64> {
    Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// Every tensor and number of `got` is what Python saved, in the same order.
fn assert_matches_python(got: &PthCheckpoint) {
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
            .unwrap();
    let want = expected["tensors"].as_array().unwrap();
    let got_keys: Vec<&str> = got.tensors.iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = want.iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(got_keys, want_keys);
    for ((key, t), w) in got.tensors.iter().zip(want) {
        assert_eq!(t.kind(), kind_of(w["dtype"].as_str().unwrap()), "{key}");
        let shape: Vec<i64> = serde_json::from_value(w["shape"].clone()).unwrap();
        assert_eq!(t.size(), shape, "{key}");
        assert_eq!(t.device(), Device::Cpu, "{key}");
        assert!(t.is_contiguous(), "{key}");
        let want_bits: Vec<u64> = serde_json::from_value(w["bits"].clone()).unwrap();
        let want_values: Vec<f64> = want_bits.into_iter().map(f64::from_bits).collect();
        assert_eq!(values(t), want_values, "{key}");
    }
    let want_bits: BTreeMap<String, u64> =
        serde_json::from_value(expected["numbers"].clone()).unwrap();
    let want_numbers: BTreeMap<String, f64> = want_bits
        .into_iter()
        .map(|(k, bits)| (k, f64::from_bits(bits)))
        .collect();
    assert_eq!(got.numbers, want_numbers);
}

#[test]
fn reference_shaped_checkpoint_reads_exactly() {
    let ck = read_pth(&fixtures().join("model_best.pth.tar")).unwrap();
    assert_matches_python(&ck);

    // The reference's layout, spelled out.
    let keys: Vec<&str> = ck.tensors.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys[..8],
        [
            "state_dict_model.module.conv1.weight",
            "state_dict_model.module.bn1.weight",
            "state_dict_model.module.bn1.bias",
            "state_dict_model.module.bn1.running_mean",
            "state_dict_model.module.bn1.running_var",
            "state_dict_model.module.bn1.num_batches_tracked",
            "state_dict_classifier.module.weight",
            "state_dict_classifier.module.bias",
        ]
    );
    let tracked = ck
        .tensor("state_dict_model.module.bn1.num_batches_tracked")
        .unwrap();
    assert_eq!((tracked.kind(), tracked.dim()), (Kind::Int64, 0));
    assert_eq!(tracked.int64_value(&[]), 2);
    let best = ck.tensor("best_acc1").unwrap();
    assert_eq!((best.kind(), best.dim()), (Kind::Float, 0));
    assert_eq!(best.double_value(&[]), 81.25);
    let lws = ck
        .tensor("state_dict_lws_model.module.learned_norm")
        .unwrap();
    assert_eq!(values(lws), [0.5, 1.0, 2.0]);
    assert_eq!(ck.numbers["epoch"], 200.0);
    assert_eq!(ck.numbers["its_ece"], 3.125);
    assert!(
        !ck.numbers.contains_key("best_acc1"),
        "0-d tensors stay tensors"
    );

    // Views, recomputed here rather than taken from Python.
    let base = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]);
    let extra = |k: &str| ck.tensor(&format!("extras.{k}")).unwrap();
    assert!(extra("base").equal(&base));
    assert!(extra("transposed").equal(&base.tr()));
    assert!(extra("window").equal(&base.view([-1]).narrow(0, 5, 4)));
    assert!(extra("every_other_column").equal(&base.slice(1, 0, 4, 2)));
    assert_eq!(extra("empty").size(), [3, 0]);
    assert_eq!(
        values(extra("int64")),
        [2f64.powi(40), -(2f64.powi(40)), 7.0]
    );
    // Views of one storage are independent copies.
    let mut window = extra("window").shallow_clone();
    let _ = window.fill_(-1.0);
    assert!(extra("base").equal(&base));

    // NumPy scalars (the reference's its_ece is a numpy.float64), long integers, nesting.
    for (key, want) in [
        ("extras.np_ece", 2.75),
        ("extras.np_count", -7.0),
        ("extras.np_float32", 0.5),
        ("extras.np_uint8", 200.0),
        ("extras.np_bool", 1.0),
        ("extras.flag", 1.0),
        ("extras.big", 2f64.powi(38)),
        ("extras.negative_big", -(2f64.powi(38))),
        ("extras.huge", 2f64.powi(70)),
        ("extras.mixed.0", 1.0),
        ("extras.mixed.1", 2.5),
        ("extras.7.1", -1.0),
    ] {
        assert_eq!(ck.numbers.get(key), Some(&want), "{key}");
    }
    assert!(ck.tensor("extras.mixed.2").is_some());
    assert!(ck.tensor("extras.7.0").is_some());
    // Objects pickled once and referenced again (memo references).
    assert!(extra("tied_a").equal(&base));
    assert!(extra("shared_b.x").equal(extra("shared_a.x")));
    assert_eq!(ck.numbers["extras.shared_b.n"], 5.0);
}

#[test]
fn pickle_protocol_4_reads_the_same() {
    let ck = read_pth(&fixtures().join("protocol4.pth")).unwrap();
    assert_matches_python(&ck);
}

/// The error for `file` starts with its path and contains `needle`.
fn assert_error(file: &str, needle: &str) {
    let path = fixtures().join(file);
    let err = match read_pth(&path) {
        Ok(_) => panic!("{file} was read without error"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.starts_with(&path.display().to_string()),
        "{file}: the message should start with the file: {err}"
    );
    assert!(
        err.contains(needle),
        "{file}: expected '{needle}' in: {err}"
    );
}

#[test]
fn broken_and_foreign_files_are_explained() {
    assert_error("truncated.pth.tar", "truncated or damaged");
    assert_error("notes.txt", "not a PyTorch checkpoint");
    assert_error("legacy.pth", "_use_new_zipfile_serialization=True");
    assert_error("complex.pth", "unsupported dtype torch.ComplexFloatStorage");
    assert_error("complex.pth", "tensor 'w'");
    assert_error("plain.zip", "no <folder>/data.pkl");
    assert_error("missing_storage.pth", "whole/data/1 is missing");
    assert_error("does_not_exist.pth", "cannot open");
    // The intact original of the last one reads.
    let whole = read_pth(&fixtures().join("whole.pth")).unwrap();
    assert_eq!(whole.tensors.len(), 2);
}
