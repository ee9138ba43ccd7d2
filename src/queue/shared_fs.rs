//! Whether a run folder is on a file system every node of a multi-node Slurm job sees (issue
//! 22, "Bad input": "a run folder not on a shared file system for a multi-node run (say so
//! before submitting)").
//!
//! What is checked, from this machine only (the nodes cannot be asked before the job runs):
//! the folder (or its nearest existing parent) is resolved to its real path; a path under
//! `/tmp`, `/var/tmp`, `/dev/shm` or `/run` is node-local whatever its file system; otherwise
//! the mount holding it (the longest mount point of `/proc/mounts` that is a prefix of the
//! path) is read for its file-system type: network and cluster file systems ([`SHARED`]) are
//! shared, others (`ext4`, `xfs`, `overlay`, `tmpfs`, …) are local, and a type this list does
//! not know is said to be unknown.
use std::path::{Path, PathBuf};

/// File-system types of `/proc/mounts` that nodes share: NFS, Lustre, GPFS (Spectrum Scale),
/// BeeGFS, CephFS, GlusterFS, SMB, Panasas, WekaFS, OrangeFS/PVFS2, Quobyte, CVFS (StorNext).
pub const SHARED: &[&str] = &[
    "nfs",
    "nfs4",
    "lustre",
    "gpfs",
    "beegfs",
    "ceph",
    "fuse.ceph-fuse",
    "glusterfs",
    "fuse.glusterfs",
    "cifs",
    "smb3",
    "panfs",
    "wekafs",
    "pvfs2",
    "orangefs",
    "fuse.quobyte",
    "cvfs",
];

/// Folders that are node-local on every cluster, whatever their file system.
const NODE_LOCAL: &[&str] = &["/tmp", "/var/tmp", "/dev/shm", "/run"];

/// Where a folder lives, as far as this machine can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On a shared file system: the mount point and its type.
    Shared(String, String),
    /// Under a node-local folder (`/tmp`, …): that folder.
    NodeLocalFolder(String),
    /// On a local file system: the mount point and its type.
    Local(String, String),
    /// On a file system of a type not known to be shared or local: the mount point and type.
    Unknown(String, String),
}

/// Classifies the real path `path` against the text of `/proc/mounts` (`DEVICE MOUNTPOINT
/// TYPE …` per line, spaces in paths written `\040`).
pub fn classify(path: &Path, mounts: &str) -> Place {
    for d in NODE_LOCAL {
        if path.starts_with(d) {
            return Place::NodeLocalFolder((*d).to_owned());
        }
    }
    let mut best: Option<(&str, &str)> = None;
    let mount_points: Vec<(String, &str)> = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            Some((point.replace("\\040", " "), kind))
        })
        .collect();
    for (point, kind) in &mount_points {
        if path.starts_with(point) && best.is_none_or(|(b, _)| point.len() >= b.len()) {
            best = Some((point, kind));
        }
    }
    let (point, kind) = best.unwrap_or(("/", "unknown"));
    let (point, kind) = (point.to_owned(), kind.to_owned());
    if SHARED.contains(&kind.as_str()) {
        return Place::Shared(point, kind);
    }
    let local = [
        "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "overlay", "tmpfs", "ramfs", "f2fs", "vfat",
        "exfat", "ntfs", "ntfs3", "reiserfs", "jfs", "devtmpfs", "squashfs", "9p",
    ];
    if local.contains(&kind.as_str()) {
        Place::Local(point, kind)
    } else {
        Place::Unknown(point, kind)
    }
}

/// The nearest existing folder of `path` (itself or a parent), resolved to its real path.
fn real_path(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut p = abs.as_path();
    loop {
        if let Ok(r) = p.canonicalize() {
            return r;
        }
        match p.parent() {
            Some(up) => p = up,
            None => return abs,
        }
    }
}

/// The warning for a run over `nodes` nodes whose run folder is `run_dir`, or `None` when its
/// file system is shared. Says what was checked.
pub fn warning(run_dir: &Path, nodes: u32) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let real = real_path(run_dir);
    let whose = format!(
        "the run spans {nodes} nodes, but its run folder {} ({})",
        run_dir.display(),
        real.display()
    );
    let after = "the ranks on the other nodes cannot read its checkpoints, and a requeued job \
                 that lands on another node cannot resume it: put --saved on a shared file \
                 system (NFS, Lustre, GPFS, BeeGFS, CephFS)";
    match classify(&real, &mounts) {
        Place::Shared(..) => None,
        Place::NodeLocalFolder(d) => Some(format!(
            "{whose} is under {d}, which is local to each node; {after}"
        )),
        Place::Local(point, kind) => Some(format!(
            "{whose} is on a local file system ({point} is {kind} in /proc/mounts); {after}"
        )),
        Place::Unknown(point, kind) => Some(format!(
            "{whose} is on {point}, of type {kind} in /proc/mounts, not known to be shared \
             between nodes; if it is not, {after}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "overlay / overlay rw,relatime 0 0\n\
        server:/export /home nfs4 rw,vers=4.2 0 0\n\
        /dev/sda1 /home/local ext4 rw 0 0\n\
        lus@o2ib:/scratch /scratch lustre rw,flock 0 0\n\
        tmpfs /dev/shm tmpfs rw 0 0\n\
        fs /my\\040data weird rw 0 0\n";

    #[test]
    fn the_longest_mount_point_decides_and_node_local_folders_are_local() {
        let c = |p: &str| classify(Path::new(p), MOUNTS);
        assert_eq!(
            c("/home/u/saved"),
            Place::Shared("/home".into(), "nfs4".into())
        );
        assert_eq!(
            c("/scratch/u/saved"),
            Place::Shared("/scratch".into(), "lustre".into())
        );
        // A local disk mounted under the shared home: the longer mount point wins.
        assert_eq!(
            c("/home/local/saved"),
            Place::Local("/home/local".into(), "ext4".into())
        );
        assert_eq!(c("/opt/saved"), Place::Local("/".into(), "overlay".into()));
        // `/home2` is not under `/home` (components, not characters).
        assert_eq!(c("/home2/x"), Place::Local("/".into(), "overlay".into()));
        assert_eq!(c("/tmp/x"), Place::NodeLocalFolder("/tmp".into()));
        assert_eq!(
            c("/my data/x"),
            Place::Unknown("/my data".into(), "weird".into())
        );
    }

    #[test]
    fn a_folder_under_tmp_is_warned_about_with_what_was_checked() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let run = dir.path().join("saved/not_yet_made_q3");
        let w = warning(&run, 2).unwrap();
        assert!(
            w.contains("spans 2 nodes") && w.contains("under /tmp") && w.contains("shared file"),
            "{w}"
        );
        assert!(w.contains(&run.display().to_string()), "{w}");
    }
}
