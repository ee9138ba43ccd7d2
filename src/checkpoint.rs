//! Checkpoints.
//!
//! mislas writes safetensors files (readable from Python with `safetensors.torch.load_file`):
//! every variable of the [`Network`] under its name (`model.*`, `classifier.*`, `lws_model.*`),
//! the SGD momentum buffers (`optim.*`), and the run's position as one-element tensors (`meta.*`):
//! stage, completed epochs, batches done in the next epoch, best top-1 and its ECE, the seed and
//! the partial epoch's meters. Every random stream of a run is derived from (seed, epoch, batch),
//! so these numbers are the whole RNG state: a stopped run resumes exactly where it stopped.
//!
//! Files are written to a temporary name beside the target, synced, then renamed over it, so a
//! failed write leaves the previous checkpoint intact.
//!
//! The reference release's `.pth.tar` files (`torch.save` of `state_dict_model`,
//! `state_dict_classifier`, `state_dict_lws_model` and, for Places-LT, `state_dict_block`, with
//! DataParallel's `module.` prefixes) load too, mapped to the same names.
use crate::config::Stage;
use crate::model::{pth, Network};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Version of the `meta.*` layout.
const FORMAT_VERSION: i64 = 1;

/// Where a run stands, as stored in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPosition {
    /// Stage that wrote the checkpoint.
    pub stage: Stage,
    /// Completed epochs.
    pub epoch: usize,
    /// Batches already trained in epoch `epoch` (0 at an epoch boundary).
    pub batch: usize,
    /// Best evaluation top-1 so far, %.
    pub best_top1: f64,
    /// ECE at the best top-1, %.
    pub best_ece: f64,
    /// The run's seed.
    pub seed: u64,
    /// The run's training batch size (with the seed, what makes a resumed run identical).
    pub batch_size: usize,
    /// Sum of batch losses × batch sizes over the partial epoch.
    pub epoch_loss_sum: f64,
    /// Correct top-1 training predictions over the partial epoch.
    pub epoch_correct: f64,
    /// Training images seen in the partial epoch.
    pub epoch_seen: f64,
}

/// Which program wrote a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// mislas (safetensors, with a [`RunPosition`]).
    Mislas,
    /// The reference PyTorch release (`torch.save` zip).
    Reference,
}

/// A loaded checkpoint, names normalised to the [`Network`]'s.
#[derive(Debug)]
pub struct Checkpoint {
    /// The file.
    pub path: PathBuf,
    /// Who wrote it.
    pub origin: Origin,
    /// Network variables by name (`model.conv1.weight`, …) on the CPU.
    pub tensors: BTreeMap<String, Tensor>,
    /// Optimizer state (`optim.*` names stripped of the prefix).
    pub optimizer: Vec<(String, Tensor)>,
    /// Run position; `None` for reference checkpoints.
    pub position: Option<RunPosition>,
}

/// Writes a checkpoint atomically (temporary file, fsync, rename).
///
/// # Errors
/// The temporary file cannot be written or renamed; the message names the file. The previous
/// file at `path`, if any, is left untouched.
pub fn save(
    path: &Path,
    net: &Network,
    optimizer: &[(String, Tensor)],
    pos: &RunPosition,
) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = net
        .vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().to_device(tch::Device::Cpu).contiguous()))
        .collect();
    for (k, t) in optimizer {
        named.push((
            format!("optim.{k}"),
            t.detach().to_device(tch::Device::Cpu).contiguous(),
        ));
    }
    let int = |v: i64| Tensor::from_slice(&[v]);
    let float = |v: f64| Tensor::from_slice(&[v]);
    let stage = match pos.stage {
        Stage::Stage1 => 1,
        Stage::Stage2 => 2,
    };
    named.extend([
        ("meta.format_version".to_owned(), int(FORMAT_VERSION)),
        ("meta.stage".to_owned(), int(stage)),
        ("meta.epoch".to_owned(), int(pos.epoch as i64)),
        ("meta.batch".to_owned(), int(pos.batch as i64)),
        ("meta.best_top1".to_owned(), float(pos.best_top1)),
        ("meta.best_ece".to_owned(), float(pos.best_ece)),
        ("meta.seed".to_owned(), int(pos.seed as i64)),
        ("meta.batch_size".to_owned(), int(pos.batch_size as i64)),
        ("meta.epoch_loss_sum".to_owned(), float(pos.epoch_loss_sum)),
        ("meta.epoch_correct".to_owned(), float(pos.epoch_correct)),
        ("meta.epoch_seen".to_owned(), float(pos.epoch_seen)),
    ]);
    named.sort_by(|a, b| a.0.cmp(&b.0));
    write_atomically(path, |tmp| {
        Tensor::write_safetensors(&named, tmp).map_err(anyhow::Error::from)
    })
}

/// Runs `write` on a temporary path beside `path`, syncs it, and renames it over `path`.
///
/// # Errors
/// Any failure; the temporary file is removed and `path` is untouched.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let file_name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir
        .unwrap_or(Path::new("."))
        .join(format!(".{}.tmp", file_name.to_string_lossy()));
    let result = (|| -> Result<()> {
        // Created here first so that a folder that cannot be written to says why in the
        // operating system's words ("Permission denied", "No space left on device").
        fs::File::create(&tmp)?;
        write(&tmp)?;
        fs::File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Some(d) = dir {
            // Make the rename durable; not every file system supports syncing a directory.
            let _ = fs::File::open(d).and_then(|f| f.sync_all());
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write checkpoint {}", path.display()))
}

/// Loads a checkpoint of mislas (safetensors) or of the reference release (`torch.save` zip).
///
/// # Errors
/// The file is missing, of another format, or damaged; the message names the file and what was
/// expected.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let mut magic = [0u8; 4];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    if &magic == b"PK\x03\x04" {
        load_reference(path)
    } else {
        load_mislas(path)
    }
}

fn load_mislas(path: &Path) -> Result<Checkpoint> {
    let named = Tensor::read_safetensors(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: expected a mislas checkpoint (safetensors) or a PyTorch .pth/.pth.tar file: {e}",
            path.display()
        )
    })?;
    let mut tensors = BTreeMap::new();
    let mut optimizer = Vec::new();
    let mut meta = BTreeMap::new();
    for (k, t) in named {
        if let Some(m) = k.strip_prefix("meta.") {
            meta.insert(m.to_owned(), t.double_value(&[0]));
        } else if let Some(o) = k.strip_prefix("optim.") {
            optimizer.push((o.to_owned(), t));
        } else {
            tensors.insert(k, t);
        }
    }
    let get = |k: &str| {
        meta.get(k).copied().with_context(|| {
            format!(
                "{}: not a mislas checkpoint (no meta.{k}); expected a file written by mislas",
                path.display()
            )
        })
    };
    let version = get("format_version")? as i64;
    if version != FORMAT_VERSION {
        bail!(
            "{}: checkpoint format version {version}, this mislas reads version {FORMAT_VERSION}",
            path.display()
        );
    }
    let stage = match get("stage")? as i64 {
        1 => Stage::Stage1,
        2 => Stage::Stage2,
        s => bail!("{}: meta.stage is {s}, expected 1 or 2", path.display()),
    };
    let position = RunPosition {
        stage,
        epoch: get("epoch")? as usize,
        batch: get("batch")? as usize,
        best_top1: get("best_top1")?,
        best_ece: get("best_ece")?,
        seed: get("seed")? as u64,
        batch_size: get("batch_size")? as usize,
        epoch_loss_sum: get("epoch_loss_sum")?,
        epoch_correct: get("epoch_correct")?,
        epoch_seen: get("epoch_seen")?,
    };
    Ok(Checkpoint {
        path: path.to_path_buf(),
        origin: Origin::Mislas,
        tensors,
        optimizer,
        position: Some(position),
    })
}

/// Maps a reference state-dict path to a [`Network`] variable name; `None` for entries that
/// have no counterpart (`num_batches_tracked`, epoch, best_acc1, …).
pub fn reference_name(key: &str) -> Option<String> {
    if key.ends_with("num_batches_tracked") {
        return None;
    }
    for (dict, prefix) in [
        ("state_dict_model.", "model."),
        ("state_dict_classifier.", "classifier."),
        ("state_dict_lws_model.", "lws_model."),
        ("state_dict_block.", "block."),
    ] {
        if let Some(rest) = key.strip_prefix(dict) {
            let rest = rest.strip_prefix("module.").unwrap_or(rest);
            return Some(format!("{prefix}{rest}"));
        }
    }
    None
}

fn load_reference(path: &Path) -> Result<Checkpoint> {
    let pth = pth::read_pth(path)?;
    let mut tensors = BTreeMap::new();
    for (k, t) in pth.tensors {
        if let Some(name) = reference_name(&k) {
            tensors.insert(name, t.to_kind(Kind::Float));
        }
    }
    if !tensors.keys().any(|k| k.starts_with("model.")) {
        bail!(
            "{}: no 'state_dict_model' in this PyTorch file: expected a MiSLAS checkpoint \
             with state_dict_model and state_dict_classifier",
            path.display()
        );
    }
    Ok(Checkpoint {
        path: path.to_path_buf(),
        origin: Origin::Reference,
        tensors,
        optimizer: Vec::new(),
        position: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;

    fn position() -> RunPosition {
        RunPosition {
            stage: Stage::Stage1,
            epoch: 3,
            batch: 7,
            best_top1: 61.25,
            best_ece: 12.5,
            seed: 42,
            batch_size: 128,
            epoch_loss_sum: 10.5,
            epoch_correct: 64.0,
            epoch_seen: 128.0,
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current.safetensors");
        tch::manual_seed(1);
        let mut net = Network::new("resnet32_fe", 3, 10, tch::Device::Cpu).unwrap();
        // A channels-last network is saved in the default layout, values unchanged.
        net.to_channels_last();
        let buf = Tensor::from_slice(&[1.0f32, 2.0]);
        save(
            &path,
            &net,
            &[("momentum_buffer.x".into(), buf)],
            &position(),
        )
        .unwrap();
        let ck = load(&path).unwrap();
        assert_eq!(ck.origin, Origin::Mislas);
        assert_eq!(ck.position, Some(position()));
        assert_eq!(ck.optimizer[0].0, "momentum_buffer.x");
        tch::manual_seed(2);
        let mut other = Network::new("resnet32_fe", 3, 10, tch::Device::Cpu).unwrap();
        other
            .load_parts(&ck.tensors, &[Part::Backbone, Part::Classifier, Part::Lws])
            .unwrap();
        for (k, v) in net.vs.variables() {
            let w = &other.vs.variables()[&k];
            assert!(v.equal(w), "{k} differs after the round trip");
        }
    }

    #[test]
    fn failed_write_keeps_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current.safetensors");
        let net = Network::new("resnet32_fe", 1, 10, tch::Device::Cpu).unwrap();
        save(&path, &net, &[], &position()).unwrap();
        let before = fs::read(&path).unwrap();
        // A directory where the temporary file must go makes the write fail.
        fs::create_dir(dir.path().join(".current.safetensors.tmp")).unwrap();
        let mut p = position();
        p.epoch = 4;
        let err = save(&path, &net, &[], &p).unwrap_err();
        assert!(
            format!("{err:#}").contains("current.safetensors"),
            "{err:#}"
        );
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[test]
    fn reference_names_map() {
        assert_eq!(
            reference_name("state_dict_model.module.layer1.0.conv1.weight").as_deref(),
            Some("model.layer1.0.conv1.weight")
        );
        assert_eq!(
            reference_name("state_dict_classifier.fc.bias").as_deref(),
            Some("classifier.fc.bias")
        );
        assert_eq!(
            reference_name("state_dict_lws_model.module.learned_norm").as_deref(),
            Some("lws_model.learned_norm")
        );
        assert_eq!(
            reference_name("state_dict_model.bn1.num_batches_tracked"),
            None
        );
        assert_eq!(
            reference_name("state_dict_block.module.conv2.weight").as_deref(),
            Some("block.conv2.weight")
        );
        assert_eq!(reference_name("best_acc1"), None);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pth.tar");
        fs::write(&path, b"hello, this is not a checkpoint").unwrap();
        let err = format!("{:#}", load(&path).unwrap_err());
        assert!(
            err.contains("x.pth.tar") && err.contains("expected"),
            "{err}"
        );
    }
}
