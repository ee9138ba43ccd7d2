//! A configuration against this machine and this build: CUDA devices that are not there,
//! `amp` on the CPU, and data parallel without c10d (or NCCL on CUDA).
use crate::config::{parse_device_spec, Config, DeviceSpec, FieldIssue};
use std::sync::OnceLock;

/// Checks the configuration against a machine with `cuda_device_count` CUDA devices (pass
/// [`machine_cuda_devices`] for this one): a `device cuda:N` the machine does not have, and
/// `amp` where `device auto` means the CPU.
pub fn check_machine(cfg: &Config, cuda_device_count: usize) -> Vec<FieldIssue> {
    let mut v = Vec::new();
    match parse_device_spec(&cfg.device) {
        Ok(DeviceSpec::Cuda(n)) if n >= cuda_device_count => {
            let message = if cuda_device_count == 0 {
                format!(
                    "'{}' asks for CUDA, but this machine has no CUDA device: use auto or cpu",
                    cfg.device
                )
            } else {
                format!(
                    "'{}' is not on this machine: it has {cuda_device_count} CUDA device{}, \
                     cuda:0 to cuda:{}",
                    cfg.device,
                    if cuda_device_count == 1 { "" } else { "s" },
                    cuda_device_count - 1
                )
            };
            v.push(FieldIssue {
                key: "device",
                message,
            });
        }
        Ok(DeviceSpec::Auto) if cfg.amp && cuda_device_count == 0 => v.push(FieldIssue {
            key: "amp",
            message: "mixed precision needs a CUDA device, and this machine has none \
                      (device auto is the CPU here): set amp false"
                .into(),
        }),
        _ => {}
    }
    v.extend(check_data_parallel(cfg, cuda_device_count));
    v
}

/// `gpus` against this machine and this build: processes on CUDA need as many devices,
/// and more than one process needs c10d built in.
fn check_data_parallel(cfg: &Config, cuda_device_count: usize) -> Option<FieldIssue> {
    if cfg.gpus <= 1 {
        return None;
    }
    let on_cuda = match parse_device_spec(&cfg.device) {
        Ok(DeviceSpec::Cpu) | Err(_) => false,
        Ok(DeviceSpec::Auto) => cuda_device_count > 0,
        Ok(DeviceSpec::Cuda(_)) => true,
    };
    let message = if let Err(why) = super::c10d::support() {
        why.to_owned()
    } else if on_cuda && cfg.gpus > cuda_device_count {
        format!(
            "{} processes need as many CUDA devices, and this machine has {cuda_device_count}",
            cfg.gpus
        )
    } else if let Some(why) = (!on_cuda)
        .then(|| cpu_ranks_issue(cfg.gpus, cpu_cores()))
        .flatten()
    {
        why
    } else if on_cuda && !super::c10d::has_nccl() {
        "this mislas was built without NCCL (CUDA's headers were missing at build time: run \
         scripts/setup.sh, then rebuild), so it runs one process per CUDA machine"
            .to_owned()
    } else {
        return None;
    };
    Some(FieldIssue {
        key: "gpus",
        message,
    })
}

/// The cores this process may use (1 when unknown).
pub fn cpu_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `gpus` CPU processes (Gloo) on a machine of `cores` cores: more processes than cores is
/// refused (each rank gets one libtorch thread at least, so they would fight over the cores
/// and train slower than fewer ranks: issue 18, `gpus 64` on 2 cores passed silently).
pub(super) fn cpu_ranks_issue(gpus: usize, cores: usize) -> Option<String> {
    (gpus > cores).then(|| {
        format!(
            "{gpus} CPU processes on a machine with {cores} core{}: each rank needs a core of \
             its own; use gpus {} or fewer",
            if cores == 1 { "" } else { "s" },
            cores.max(1)
        )
    })
}

/// The CUDA devices of this machine: libtorch's count when CUDA is available, else 0 (asked
/// once).
pub fn machine_cuda_devices() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        if tch::Cuda::is_available() {
            usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
        } else {
            0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's `config/cifar10/cifar10_imb001_stage2_mislas.yaml`.
    const REFERENCE: &str = "name: cifar10_imb001_stage2_mislas\nprint_freq: 40\nworkers: 16\nlog_dir: 'logs'\nmodel_dir: 'ckps'\ndataset: 'cifar10'\ndata_path: './data/cifar10'\nnum_classes: 10\nimb_factor: 0.01\nbackbone: 'resnet32_fe'\nresume: 'Path/to/Stage1_checkpoint.pth.tar'\nhead_class_idx:\n  - 0\n  - 3\nmed_class_idx:\n  - 3\n  - 7\ntail_class_idx:\n  - 7\n  - 10\ndeterministic: False\ndistributed: False\ngpu: null\nworld_size: -1\nrank: -1\ndist_url: 'tcp://224.66.41.62:23456'\ndist_backend: 'nccl'\nmultiprocessing_distributed: False\nmode: 'stage2'\nsmooth_head: 0.3\nsmooth_tail: 0.0\nshift_bn: False\nlr_factor: 0.5\nlr: 0.1\nbatch_size: 128\nweight_decay: 2e-4\nnum_epochs: 10\nmomentum: 0.9\nmixup: False\nalpha: null\n";

    fn reference() -> Config {
        Config::from_yaml_str(REFERENCE, "r").unwrap().config
    }

    #[test]
    fn machine_check_without_cuda() {
        let mut c = reference();
        assert!(check_machine(&c, 0).is_empty());
        c.device = "cuda:7".into();
        let issues = check_machine(&c, 0);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "device");
        assert!(issues[0].message.contains("no CUDA device"), "{issues:?}");
        c.device = "cuda".into();
        assert_eq!(check_machine(&c, 0)[0].key, "device");
        // amp with device auto: the CPU here.
        c.device = "auto".into();
        c.amp = true;
        let issues = check_machine(&c, 0);
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].key, "amp");
        assert!(issues[0].message.contains("CUDA"), "{issues:?}");
        // device cpu with amp is validate's rule, not the machine's.
        c.device = "cpu".into();
        assert!(check_machine(&c, 0).is_empty());
        assert!(c.validate().iter().any(|i| i.key == "amp"));
    }

    #[test]
    fn more_cpu_ranks_than_cores_are_refused() {
        assert_eq!(cpu_ranks_issue(2, 2), None);
        assert_eq!(
            cpu_ranks_issue(64, 2).as_deref(),
            Some("64 CPU processes on a machine with 2 cores: each rank needs a core of its own; use gpus 2 or fewer")
        );
        let mut c = reference();
        c.device = "cpu".into();
        c.gpus = cpu_cores() + 1;
        let issues = check_machine(&c, 0);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].key, "gpus");
        // On CUDA the count is the devices', not the cores'.
        c.device = "cuda".into();
        c.gpus = 2;
        assert!(check_machine(&c, 2).is_empty());
    }

    #[test]
    fn machine_check_with_two_gpus() {
        let mut c = reference();
        c.amp = true;
        for (device, ok) in [
            ("auto", true),
            ("cuda", true),
            ("cuda:1", true),
            ("cuda:2", false),
        ] {
            c.device = device.into();
            let issues = check_machine(&c, 2);
            assert_eq!(issues.is_empty(), ok, "{device}: {issues:?}");
        }
        c.device = "cuda:7".into();
        let issues = check_machine(&c, 2);
        assert_eq!(issues[0].key, "device");
        assert_eq!(
            issues[0].message,
            "'cuda:7' is not on this machine: it has 2 CUDA devices, cuda:0 to cuda:1"
        );
    }
}
