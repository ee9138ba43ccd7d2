//! Archiving or deleting a run folder of `saved/`: archiving moves it, whole, to
//! `saved/.archive/` (which no listing of runs reads: it holds no `config.yaml` of its own), where
//! it can be moved back by hand; deleting removes it for good. Neither touches a run whose
//! process lives (its `run.lock` is held, see [`crate::live::is_alive`]), nor a folder that is
//! not a run folder directly under `saved/`.
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The folder of `saved/` archived runs are moved to.
pub const ARCHIVE: &str = ".archive";

/// Checks that `dir` is a run folder directly under `saved_root` whose process does not live.
///
/// # Errors
/// `dir` is not in `saved_root`, holds no `config.yaml`, or its run is live; the message names
/// the folder and what to do.
fn check_removable(saved_root: &Path, dir: &Path) -> Result<()> {
    let parent = dir.parent().and_then(|p| p.canonicalize().ok());
    let saved = saved_root.canonicalize().ok();
    if parent.is_none() || parent != saved {
        bail!(
            "{} is not a run folder of {}: nothing was moved or deleted",
            dir.display(),
            saved_root.display()
        );
    }
    if !dir.join("config.yaml").is_file() {
        bail!(
            "{} holds no config.yaml: not a run folder, left as it is",
            dir.display()
        );
    }
    if crate::live::is_alive(dir) == Some(true) {
        bail!(
            "{} is running: stop it first (a attaches to it, s stops it), then archive it",
            dir.display()
        );
    }
    Ok(())
}

/// Moves the run folder `dir` of `saved_root` to `saved_root/.archive/<its name>` (`_2`, `_3`,
/// … when that is taken, so no archived run is overwritten); returns where it went.
///
/// # Errors
/// See [`check_removable`]; the archive folder cannot be created or the folder moved (named).
pub fn archive_run(saved_root: &Path, dir: &Path) -> Result<PathBuf> {
    check_removable(saved_root, dir)?;
    let archive = saved_root.join(ARCHIVE);
    fs::create_dir_all(&archive).with_context(|| format!("cannot create {}", archive.display()))?;
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    let mut n = 1;
    let target = loop {
        let t = match n {
            1 => archive.join(&*name),
            _ => archive.join(format!("{name}_{n}")),
        };
        if !t.exists() {
            break t;
        }
        n += 1;
    };
    fs::rename(dir, &target)
        .with_context(|| format!("cannot move {} to {}", dir.display(), target.display()))?;
    Ok(target)
}

/// Deletes the run folder `dir` of `saved_root`, with its checkpoints, for good.
///
/// # Errors
/// See [`check_removable`]; a file cannot be removed (named; what was not removed stays).
pub fn delete_run(saved_root: &Path, dir: &Path) -> Result<()> {
    check_removable(saved_root, dir)?;
    fs::remove_dir_all(dir).with_context(|| format!("cannot delete {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(saved: &Path, name: &str) -> PathBuf {
        let d = saved.join(name);
        fs::create_dir_all(d.join("ckps")).unwrap();
        fs::write(d.join("config.yaml"), "name: x\n").unwrap();
        fs::write(d.join("ckps/current.safetensors"), "weights").unwrap();
        d
    }

    #[test]
    fn archiving_moves_the_whole_folder_and_never_overwrites() {
        let t = tempfile::tempdir().unwrap();
        let saved = t.path().join("saved");
        let a = run(&saved, "fm_s1_202612070101");
        let to = archive_run(&saved, &a).unwrap();
        assert_eq!(to, saved.join(".archive/fm_s1_202612070101"));
        assert!(!a.exists());
        assert_eq!(
            fs::read_to_string(to.join("ckps/current.safetensors")).unwrap(),
            "weights"
        );
        // A second run of that name archived beside it, not over it.
        let b = run(&saved, "fm_s1_202612070101");
        let to2 = archive_run(&saved, &b).unwrap();
        assert_eq!(to2, saved.join(".archive/fm_s1_202612070101_2"));
        assert!(to.join("config.yaml").is_file());
        // The listing of runs no longer has them.
        assert!(crate::run_dir::list_runs(&saved).is_empty());
    }

    #[test]
    fn deleting_removes_the_folder_and_refuses_what_is_not_a_run_of_saved() {
        let t = tempfile::tempdir().unwrap();
        let saved = t.path().join("saved");
        let a = run(&saved, "a");
        delete_run(&saved, &a).unwrap();
        assert!(!a.exists());
        // Outside saved/, or not a run folder: refused, untouched.
        let outside = run(t.path(), "elsewhere");
        let e = delete_run(&saved, &outside).unwrap_err().to_string();
        assert!(e.contains("not a run folder of"), "{e}");
        assert!(outside.join("config.yaml").is_file());
        let plain = saved.join("notes");
        fs::create_dir_all(&plain).unwrap();
        let e = archive_run(&saved, &plain).unwrap_err().to_string();
        assert!(e.contains("holds no config.yaml"), "{e}");
        assert!(plain.is_dir());
    }

    #[test]
    fn a_live_run_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let saved = t.path().join("saved");
        let a = run(&saved, "live");
        // What a running process holds: its run.lock, exclusively.
        let lock = fs::File::create(a.join(crate::live::LOCK)).unwrap();
        lock.lock().unwrap();
        for e in [
            archive_run(&saved, &a).unwrap_err(),
            delete_run(&saved, &a).unwrap_err(),
        ] {
            assert!(e.to_string().contains("is running: stop it first"), "{e}");
        }
        assert!(a.join("ckps/current.safetensors").is_file());
        drop(lock);
        archive_run(&saved, &a).unwrap();
    }
}
