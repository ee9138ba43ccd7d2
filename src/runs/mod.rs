//! Runs in `saved/` as front ends see them, above the run folders of [`crate::run_dir`]: how a
//! run stands from its folder ([`status`]), and the trained methods of a stage-1 run — the
//! stage-2 runs found for it and the configurations that would train the missing ones
//! ([`stage2`]), and what the Methods view's Enter does with the checked methods on one or more
//! stage-1 backbones ([`plan`]). The UI, `compare` and the queue share them. A run's
//! configuration as a new run's ([`rerun`]); a run folder archived or deleted ([`archive`]).
pub mod archive;
pub mod plan;
pub mod rerun;
pub mod stage2;
pub mod status;
