//! `mislas`: the MiSLAS recipe ("Improving Calibration for Long-Tailed Recognition",
//! Zhong et al., CVPR 2021) on libtorch.
//!
//! The engine (data, models, methods, metrics, runs) knows nothing of any front end; the
//! terminal UI and the headless CLI consume the same [`events::Event`]s and send
//! [`events::Control`]s over crossbeam channels.
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod dist;
pub mod engine;
pub mod events;
pub mod headless;
pub mod live;
pub mod method;
pub mod metrics;
pub mod model;
pub mod presets;
pub mod queue;
pub mod run_dir;
pub mod seeds;
pub mod tui;
pub mod wire;
