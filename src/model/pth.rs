//! Reading checkpoints written by PyTorch's `torch.save`, such as the reference's
//! `ckps/model_best.pth.tar`, without Python.
//!
//! The format (PyTorch ≥ 1.6, `torch/serialization.py`) is a zip archive with one top folder
//! (named after the file; its name varies) that holds
//! * `data.pkl`: a pickle of the saved object, in which every tensor is the call
//!   `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
//!   backward_hooks)` and every storage the persistent id
//!   `('storage', torch.<Type>Storage, key, location, numel)`;
//! * `data/<key>`: the raw bytes of each storage, in the byte order named by `byteorder`.
//!
//! The pickle's opcodes are decoded and run by `repugnant-pickle` (with its reference
//! resolution left to this module); the resulting value tree is walked here: nested dicts and
//! `collections.OrderedDict`s (the reference's state dicts), lists and tuples, tensors and
//! `nn.Parameter`s, and Python or NumPy numbers. Every tensor is copied out to a contiguous CPU
//! tensor of its saved dtype, whatever device it was saved from.
use anyhow::{anyhow, bail, Context, Result};
use repugnant_pickle::eval::PickleMemo;
use repugnant_pickle::ops::PickleOp;
use repugnant_pickle::{evaluate, parse_ops, SequenceType, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;
use tch::{Device, Kind, Tensor};
use zip::ZipArchive;

/// A PyTorch checkpoint flattened to dotted key paths: "state_dict_model.module.conv1.weight".
///
/// Dictionary keys (strings, or integers written in decimal) and list or tuple indices are
/// joined with `.`; a bare tensor saved on its own has the empty key.
#[derive(Debug, Default)]
pub struct PthCheckpoint {
    /// Every tensor in pickle order (the order of the saved dictionaries), each a contiguous
    /// CPU tensor with the saved shape and dtype (float32/64, float16, bfloat16, int64/32/16/8,
    /// uint8 or bool). 0-d tensors such as the reference's `best_acc1` are here too.
    pub tensors: Vec<(String, Tensor)>,
    /// Python `int`/`float`/`bool` values and NumPy scalars (bool, int8–64, uint8–64,
    /// float32/64) at any depth, e.g. `epoch` and `its_ece`; booleans as 0 or 1.
    pub numbers: BTreeMap<String, f64>,
}

impl PthCheckpoint {
    /// The tensor saved under `key`, if any.
    pub fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|(k, _)| k == key).map(|(_, t)| t)
    }
}

/// Reads a checkpoint written by `torch.save` (the zip format, PyTorch ≥ 1.6).
///
/// # Errors
/// Each message starts with the file and says what was expected: the file cannot be read; it
/// is in PyTorch's legacy (pre-1.6, non-zip) format; it is not a zip archive or is truncated;
/// the archive has no `<folder>/data.pkl` or stores big-endian data; the pickle is truncated
/// or malformed; a tensor has an unsupported dtype or encoding (complex, quantised, sparse),
/// its storage is missing from the archive or shorter than the pickle says, or its offset,
/// size and stride reach outside its storage.
pub fn read_pth(path: &Path) -> Result<PthCheckpoint> {
    read_archive(path).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// Deepest nesting of containers (and memo references) followed before giving up.
const MAX_DEPTH: usize = 128;

fn read_archive(path: &Path) -> Result<PthCheckpoint> {
    let mut file = File::open(path).context("cannot open the checkpoint")?;
    let mut magic = Vec::with_capacity(4);
    (&mut file).take(4).read_to_end(&mut magic)?;
    if !magic.starts_with(b"PK\x03\x04") {
        if magic.first() == Some(&0x80) {
            bail!(
                "this is PyTorch's legacy (pre-1.6, non-zip) checkpoint format, which mislas \
                 does not read; re-save it in Python with \
                 torch.save(torch.load(path), path, _use_new_zipfile_serialization=True)"
            );
        }
        bail!("not a PyTorch checkpoint: expected the zip archive that torch.save writes");
    }
    file.rewind()?;
    let mut zip = ZipArchive::new(BufReader::new(file)).context(
        "cannot read the zip archive that torch.save writes (is the file truncated or damaged?)",
    )?;
    let prefix = zip
        .file_names()
        .find_map(|n| {
            n.strip_suffix("data.pkl")
                .filter(|folder| folder.ends_with('/') && folder.matches('/').count() == 1)
        })
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow!("no <folder>/data.pkl in the zip archive: not written by torch.save")
        })?;
    let pkl_name = format!("{prefix}data.pkl");
    if let Ok(mut entry) = zip.by_name(&format!("{prefix}byteorder")) {
        let mut order = String::new();
        entry.read_to_string(&mut order)?;
        let order = order.trim();
        if order != "little" {
            bail!("the storages are {order}-endian; only little-endian checkpoints are supported");
        }
    }
    let mut pkl = Vec::new();
    zip.by_name(&pkl_name)?
        .read_to_end(&mut pkl)
        .with_context(|| format!("cannot read {pkl_name}"))?;

    let (_, ops) = parse_ops::<()>(&pkl)
        .map_err(|_| anyhow!("{pkl_name} is not a pickle (bad opcode or truncated)"))?;
    if !ops.contains(&PickleOp::STOP) {
        bail!("{pkl_name} ends before the pickle's STOP opcode: truncated or damaged");
    }
    let ops = with_explicit_memo(ops);
    let (stack, memo) =
        evaluate(&ops, false).map_err(|e| anyhow!("{pkl_name} is not a valid pickle: {e}"))?;
    let root = stack
        .last()
        .ok_or_else(|| anyhow!("{pkl_name} holds no object"))?;

    let mut walker = Walker {
        memo: &memo,
        zip,
        prefix,
        storages: HashMap::new(),
        out: PthCheckpoint::default(),
    };
    walker.walk(String::new(), root, 0)?;
    Ok(walker.out)
}

/// Prepares protocol-4 opcodes for `repugnant-pickle`'s evaluator: drops `FRAME` (framing
/// only, which the evaluator would push as a value) and rewrites `MEMOIZE` as the
/// `LONG_BINPUT` it stands for, so that later mutations of a memoised dict reach the memo.
fn with_explicit_memo(ops: Vec<PickleOp<'_>>) -> Vec<PickleOp<'_>> {
    let mut memo_ids = HashSet::new();
    ops.into_iter()
        .filter(|op| !matches!(op, PickleOp::FRAME(_)))
        .map(|op| match op {
            PickleOp::MEMOIZE => {
                let id = memo_ids.len() as u32;
                memo_ids.insert(id);
                PickleOp::LONG_BINPUT(id)
            }
            PickleOp::BINPUT(id) => {
                memo_ids.insert(u32::from(id));
                op
            }
            PickleOp::LONG_BINPUT(id) => {
                memo_ids.insert(id);
                op
            }
            PickleOp::PUT(id) => {
                if let Ok(id) = id.trim().parse() {
                    memo_ids.insert(id);
                }
                op
            }
            _ => op,
        })
        .collect()
}

/// A pickled scalar.
#[derive(Debug, Clone, Copy)]
enum Atom<'a> {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    Bytes(&'a [u8]),
}

impl Atom<'_> {
    fn number(self) -> Option<f64> {
        match self {
            Atom::Bool(b) => Some(f64::from(u8::from(b))),
            Atom::Int(i) => Some(i as f64),
            Atom::Float(f) => Some(f),
            _ => None,
        }
    }
}

/// Decodes the scalar opcodes of protocols 2–5 (and the text integers of protocol 0).
fn atom_of_op<'a>(op: &PickleOp<'a>) -> Option<Atom<'a>> {
    Some(match *op {
        PickleOp::NEWTRUE | PickleOp::INT("01") => Atom::Bool(true),
        PickleOp::NEWFALSE | PickleOp::INT("00") => Atom::Bool(false),
        PickleOp::BININT(i) => Atom::Int(i64::from(i)),
        PickleOp::BININT1(i) => Atom::Int(i64::from(i)),
        PickleOp::BININT2(i) => Atom::Int(i64::from(i)),
        PickleOp::INT(s) | PickleOp::LONG(s) => {
            Atom::Int(s.trim().trim_end_matches('L').parse().ok()?)
        }
        PickleOp::LONG1(b) | PickleOp::LONG4(b) => long_le(b),
        // Pickle stores BINFLOAT big-endian; repugnant-pickle 0.0.1 reads the bytes as
        // little-endian, so its value comes byte-swapped.
        PickleOp::BINFLOAT(f) => Atom::Float(f64::from_bits(f.to_bits().swap_bytes())),
        PickleOp::FLOAT(s) => Atom::Float(s.trim().parse().ok()?),
        PickleOp::BINUNICODE(s) | PickleOp::BINUNICODE8(s) | PickleOp::SHORT_BINUNICODE(s) => {
            Atom::Str(s)
        }
        PickleOp::BINSTRING(b) | PickleOp::SHORT_BINSTRING(b) => match std::str::from_utf8(b) {
            Ok(s) => Atom::Str(s),
            Err(_) => Atom::Bytes(b),
        },
        PickleOp::BINBYTES(b)
        | PickleOp::SHORT_BINBYTES(b)
        | PickleOp::BINBYTES8(b)
        | PickleOp::BYTEARRAY8(b) => Atom::Bytes(b),
        _ => return None,
    })
}

/// A `LONG1`/`LONG4` integer: little-endian two's complement of any length; beyond 64 bits
/// it becomes the nearest float.
fn long_le(bytes: &[u8]) -> Atom<'static> {
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    if bytes.len() <= 8 {
        let mut buf = [if negative { 0xff } else { 0 }; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        return Atom::Int(i64::from_le_bytes(buf));
    }
    let magnitude = bytes
        .iter()
        .rev()
        .fold(0.0, |acc, &b| acc * 256.0 + f64::from(b));
    let offset = if negative {
        256f64.powi(bytes.len() as i32)
    } else {
        0.0
    };
    Atom::Float(magnitude - offset)
}

/// The value of a NumPy scalar of dtype code `code` (`f8`, `i8`, `b1`, …) from its raw bytes;
/// `None` for codes outside bool, int8–64, uint8–64 and float32/64.
fn numpy_number(code: &str, mut raw: Vec<u8>, big_endian: bool) -> Option<f64> {
    if big_endian {
        raw.reverse();
    }
    Some(match code {
        "f8" => f64::from_le_bytes(raw.try_into().ok()?),
        "f4" => f64::from(f32::from_le_bytes(raw.try_into().ok()?)),
        "i8" => i64::from_le_bytes(raw.try_into().ok()?) as f64,
        "i4" => f64::from(i32::from_le_bytes(raw.try_into().ok()?)),
        "i2" => f64::from(i16::from_le_bytes(raw.try_into().ok()?)),
        "i1" => f64::from(i8::from_le_bytes(raw.try_into().ok()?)),
        "u8" => u64::from_le_bytes(raw.try_into().ok()?) as f64,
        "u4" => f64::from(u32::from_le_bytes(raw.try_into().ok()?)),
        "u2" => f64::from(u16::from_le_bytes(raw.try_into().ok()?)),
        "u1" => f64::from(u8::from_le_bytes(raw.try_into().ok()?)),
        "b1" => f64::from(u8::from(u8::from_le_bytes(raw.try_into().ok()?) != 0)),
        _ => return None,
    })
}

/// The dtype of a `torch.<Type>Storage` class name.
fn storage_kind(class: &str) -> Option<Kind> {
    Some(match class {
        "FloatStorage" => Kind::Float,
        "DoubleStorage" => Kind::Double,
        "HalfStorage" => Kind::Half,
        "BFloat16Storage" => Kind::BFloat16,
        "LongStorage" => Kind::Int64,
        "IntStorage" => Kind::Int,
        "ShortStorage" => Kind::Int16,
        "CharStorage" => Kind::Int8,
        "ByteStorage" => Kind::Uint8,
        "BoolStorage" => Kind::Bool,
        _ => return None,
    })
}

/// Joins a key path and one more component.
fn join(prefix: &str, part: &str) -> String {
    if prefix.is_empty() {
        part.to_owned()
    } else {
        format!("{prefix}.{part}")
    }
}

/// What a (resolved) pickled value is, as far as a checkpoint is concerned.
enum Node<'p, 'a> {
    /// A dict or `OrderedDict`: key-value pairs in insertion order.
    Dict(Vec<(&'p Value<'a>, &'p Value<'a>)>),
    /// A list or tuple.
    Items(&'p [Value<'a>]),
    /// `module.name(*args)`.
    Call(&'a str, &'a str, &'p [Value<'a>]),
    Atom(Atom<'a>),
    /// Anything else (sets, classes, objects of other types): skipped.
    Other,
}

/// Walks the evaluated pickle, loading storages from the archive as tensors need them.
struct Walker<'p, 'a, R> {
    memo: &'p PickleMemo<'a>,
    zip: ZipArchive<R>,
    /// The archive's top folder with its trailing `/`.
    prefix: String,
    /// Storages read so far, by key: shared by all tensors that view them.
    storages: HashMap<String, (Kind, Tensor)>,
    out: PthCheckpoint,
}

impl<'p, 'a, R: Read + Seek> Walker<'p, 'a, R> {
    /// Follows memo references.
    fn resolve(&self, mut v: &'p Value<'a>) -> Result<&'p Value<'a>> {
        let memo: &'p PickleMemo<'a> = self.memo;
        for _ in 0..MAX_DEPTH {
            match v {
                Value::Ref(id) => {
                    v = memo
                        .0
                        .get(id)
                        .ok_or_else(|| anyhow!("data.pkl refers to memo entry {id}, never set"))?;
                }
                _ => return Ok(v),
            }
        }
        bail!("data.pkl has a cycle of memo references")
    }

    fn atom(&self, v: &'p Value<'a>) -> Result<Option<Atom<'a>>> {
        Ok(match self.resolve(v)? {
            Value::Raw(op) => atom_of_op(op),
            Value::String(s) => Some(Atom::Str(s)),
            Value::Bytes(b) => Some(Atom::Bytes(b)),
            Value::Int(i) => Some(Atom::Int(*i)),
            Value::Float(f) => Some(Atom::Float(*f)),
            Value::Bool(b) => Some(Atom::Bool(*b)),
            _ => None,
        })
    }

    fn int(&self, v: &'p Value<'a>, what: &str) -> Result<i64> {
        match self.atom(v)? {
            Some(Atom::Int(i)) => Ok(i),
            other => bail!("expected an integer {what}, found {other:?}"),
        }
    }

    fn str(&self, v: &'p Value<'a>, what: &str) -> Result<&'a str> {
        match self.atom(v)? {
            Some(Atom::Str(s)) => Ok(s),
            other => bail!("expected a string {what}, found {other:?}"),
        }
    }

    /// The items of a tuple or list.
    fn items(&self, v: &'p Value<'a>, what: &str) -> Result<&'p [Value<'a>]> {
        match self.resolve(v)? {
            Value::Seq(SequenceType::Tuple | SequenceType::List, items) => Ok(items),
            _ => bail!("expected a tuple {what}"),
        }
    }

    fn ints(&self, v: &'p Value<'a>, what: &str) -> Result<Vec<i64>> {
        self.items(v, what)?
            .iter()
            .map(|x| self.int(x, what))
            .collect()
    }

    /// `(module, name)` of a global: `GLOBAL` or protocol 4's `STACK_GLOBAL`.
    fn global_name(&self, v: &'p Value<'a>) -> Result<Option<(&'a str, &'a str)>> {
        Ok(match self.resolve(v)? {
            Value::Raw(op) => match op.as_ref() {
                PickleOp::GLOBAL(module, name) => Some((*module, *name)),
                _ => None,
            },
            Value::Global(target, args) if args.is_empty() => match self.resolve(target)? {
                Value::Seq(SequenceType::Tuple, parts) if parts.len() == 2 => {
                    Some((self.str(&parts[1], "module")?, self.str(&parts[0], "name")?))
                }
                _ => None,
            },
            _ => None,
        })
    }

    /// The key-value pairs that `SETITEM`, `SETITEMS` and `DICT` left in a dict's items: each
    /// item is a `(key, value)` pair or, from `SETITEMS`, a tuple of such pairs.
    fn dict_pairs(&self, items: &'p [Value<'a>]) -> Result<Vec<(&'p Value<'a>, &'p Value<'a>)>> {
        let is_pair =
            |v: &Value<'_>| matches!(v, Value::Seq(SequenceType::Tuple, p) if p.len() == 2);
        let mut pairs = Vec::new();
        for item in items {
            match item {
                Value::Seq(SequenceType::Tuple, kv) if kv.len() == 2 && !is_pair(&kv[0]) => {
                    pairs.push((&kv[0], &kv[1]));
                }
                Value::Seq(SequenceType::Tuple, group) if group.iter().all(is_pair) => {
                    for kv in group {
                        if let Value::Seq(_, kv) = kv {
                            pairs.push((&kv[0], &kv[1]));
                        }
                    }
                }
                _ => bail!("data.pkl has a malformed dictionary"),
            }
        }
        Ok(pairs)
    }

    fn classify(&self, v: &'p Value<'a>) -> Result<Node<'p, 'a>> {
        let v = self.resolve(v)?;
        Ok(match v {
            Value::Seq(SequenceType::Dict, items) => Node::Dict(self.dict_pairs(items)?),
            Value::Seq(SequenceType::List | SequenceType::Tuple, items) => Node::Items(items),
            // An object with state set by BUILD (a state dict's `_metadata`): its items only.
            Value::Build(target, _state) => self.classify(target)?,
            Value::Global(target, args) => match (self.global_name(target)?, args.split_first()) {
                (Some(("collections", "OrderedDict")), Some((_ctor_args, items))) => {
                    Node::Dict(self.dict_pairs(items)?)
                }
                (Some((module, name)), Some((call_args, _))) => {
                    Node::Call(module, name, self.items(call_args, "of call arguments")?)
                }
                _ => Node::Other,
            },
            _ => match self.atom(v)? {
                Some(atom) => Node::Atom(atom),
                None => Node::Other,
            },
        })
    }

    fn walk(&mut self, key: String, v: &'p Value<'a>, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            bail!("'{key}' is nested deeper than {MAX_DEPTH} levels");
        }
        match self.classify(v)? {
            Node::Dict(pairs) => {
                for (k, v) in pairs {
                    let part = match self.atom(k)? {
                        Some(Atom::Str(s)) => s.to_owned(),
                        Some(Atom::Int(i)) => i.to_string(),
                        other => bail!(
                            "a dictionary key under '{key}' is {other:?}, not a string or integer"
                        ),
                    };
                    self.walk(join(&key, &part), v, depth + 1)?;
                }
            }
            Node::Items(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(join(&key, &i.to_string()), item, depth + 1)?;
                }
            }
            Node::Atom(atom) => {
                if let Some(x) = atom.number() {
                    self.out.numbers.insert(key, x);
                }
            }
            Node::Call("torch._utils", "_rebuild_tensor_v2", args) => {
                let tensor = self
                    .tensor(args)
                    .with_context(|| format!("tensor '{key}'"))?;
                self.out.tensors.push((key, tensor));
            }
            Node::Call(
                "torch._utils",
                "_rebuild_parameter" | "_rebuild_parameter_with_state",
                [data, ..],
            ) => self.walk(key, data, depth + 1)?,
            Node::Call("numpy.core.multiarray" | "numpy._core.multiarray", "scalar", args) => {
                if let Some(x) = self.numpy_scalar(args)? {
                    self.out.numbers.insert(key, x);
                }
            }
            Node::Call(module, name, _)
                if module.starts_with("torch") && name.starts_with("_rebuild") =>
            {
                bail!(
                    "'{key}' is saved as {module}.{name}, which mislas does not read \
                     (supported: dense tensors and nn.Parameter)"
                );
            }
            Node::Call(..) | Node::Other => {}
        }
        Ok(())
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, …)`.
    fn tensor(&mut self, args: &'p [Value<'a>]) -> Result<Tensor> {
        let [storage, offset, size, stride, ..] = args else {
            bail!("expected _rebuild_tensor_v2(storage, offset, size, stride, …)");
        };
        let pid = match self.resolve(storage)? {
            Value::PersId(pid) => self.items(pid, "as the storage's persistent id")?,
            _ => bail!("expected a storage persistent id as the first argument"),
        };
        let [tag, class, storage_key, _location, numel] = pid else {
            bail!("expected the persistent id ('storage', type, key, location, numel)");
        };
        if self.str(tag, "tag")? != "storage" {
            bail!("expected a persistent id tagged 'storage'");
        }
        let kind = match self.global_name(class)? {
            Some(("torch", name)) => storage_kind(name).ok_or_else(|| {
                anyhow!(
                    "unsupported dtype torch.{name} (supported: float32/64, float16, bfloat16, \
                     int64/32/16/8, uint8, bool)"
                )
            })?,
            other => bail!("expected a torch.<Type>Storage class, found {other:?}"),
        };
        let storage_key = self.str(storage_key, "storage key")?;
        let numel = self.int(numel, "storage size")?;
        let offset = self.int(offset, "storage offset")?;
        let size = self.ints(size, "size")?;
        let stride = self.ints(stride, "stride")?;

        if size.len() != stride.len() || offset < 0 || size.iter().chain(&stride).any(|&x| x < 0) {
            bail!("invalid layout: offset {offset}, size {size:?}, stride {stride:?}");
        }
        let reach: i128 = if size.contains(&0) {
            0
        } else {
            i128::from(offset)
                + size
                    .iter()
                    .zip(&stride)
                    .map(|(&n, &s)| i128::from(n - 1) * i128::from(s))
                    .sum::<i128>()
                + 1
        };
        if reach > i128::from(numel) {
            bail!(
                "offset {offset}, size {size:?} and stride {stride:?} reach element {reach} of \
                 storage '{storage_key}', which has {numel}"
            );
        }
        let storage = self.storage(storage_key, kind, numel)?;
        let view = storage.f_as_strided(size.as_slice(), stride.as_slice(), offset)?;
        let mut tensor = Tensor::f_empty(size.as_slice(), (kind, Device::Cpu))?;
        tensor.f_copy_(&view)?;
        Ok(tensor)
    }

    /// Storage `key` as a 1-D tensor of `numel` elements of `kind`, read once per archive.
    fn storage(&mut self, key: &str, kind: Kind, numel: i64) -> Result<Tensor> {
        if let Some((cached_kind, t)) = self.storages.get(key) {
            if *cached_kind != kind || t.numel() as i64 != numel {
                bail!("storage '{key}' is used with two different dtypes or sizes");
            }
            return Ok(t.shallow_clone());
        }
        let name = format!("{}data/{key}", self.prefix);
        let mut entry = self
            .zip
            .by_name(&name)
            .map_err(|_| anyhow!("storage {name} is missing from the archive"))?;
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read storage {name}"))?;
        let want = usize::try_from(numel)? * kind.elt_size_in_bytes();
        if bytes.len() < want {
            bail!(
                "storage {name} holds {} bytes; {numel} elements of {kind:?} need {want}",
                bytes.len()
            );
        }
        let t = Tensor::f_from_data_size(&bytes[..want], &[numel], kind)?;
        self.storages
            .insert(key.to_owned(), (kind, t.shallow_clone()));
        Ok(t)
    }

    /// `numpy.core.multiarray.scalar(dtype, raw_bytes)`; `None` for dtypes it does not decode.
    fn numpy_scalar(&self, args: &'p [Value<'a>]) -> Result<Option<f64>> {
        let [dtype, data] = args else {
            return Ok(None);
        };
        // numpy.dtype('f8', False, True), with BUILD state (3, '<', …) giving the byte order.
        let (ctor, state) = match self.resolve(dtype)? {
            Value::Build(ctor, state) => (&**ctor, Some(&**state)),
            other => (other, None),
        };
        let code = match self.classify(ctor)? {
            Node::Call("numpy", "dtype", [code, ..]) => self.str(code, "NumPy dtype")?,
            _ => return Ok(None),
        };
        let big_endian = match state {
            Some(state) => match self.items(state, "NumPy dtype state")? {
                [_, order, ..] => self
                    .atom(order)?
                    .is_some_and(|a| matches!(a, Atom::Str(">"))),
                _ => false,
            },
            None => false,
        };
        let raw = match self.classify(data)? {
            Node::Atom(Atom::Bytes(b)) => b.to_vec(),
            // Protocol 2 has no bytes opcode: bytes come as _codecs.encode(text, 'latin1').
            Node::Call("_codecs", "encode", [text, _encoding]) => self
                .str(text, "latin-1 text")?
                .chars()
                .map(|c| u8::try_from(c).map_err(|_| anyhow!("NumPy scalar bytes not latin-1")))
                .collect::<Result<_>>()?,
            _ => return Ok(None),
        };
        Ok(numpy_number(code, raw, big_endian))
    }
}
