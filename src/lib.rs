#![warn(missing_docs)]
//! `mislas`: the MiSLAS recipe ("Improving Calibration for Long-Tailed Recognition",
//! Zhong et al., CVPR 2021) on libtorch.
//!
//! The engine (data, models, methods, metrics, runs) knows nothing of any front end; the
//! terminal UI and the headless CLI consume the same [`events::Event`]s and send
//! [`events::Control`]s over crossbeam channels.
//!
//! # Layers
//!
//! Modules, ground first; none imports a module above it (`tests/layers.rs` checks the
//! `crate::` paths):
//!
//! 1. [`config`]: the key table, loading, validation;
//! 2. [`data`], [`model`], [`metrics`], [`events`], [`wire`] (the run's wire: `Job`, `Link`,
//!    `RunHandle`, `Flow`, `Poll`): facts and contracts;
//! 3. [`method`], [`checkpoint`], [`run_dir`], [`distributed`], [`presets`]: the parts the engine
//!    assembles;
//! 4. [`engine`]: trainer, set-up, step, evaluation, recipes and the method catalogue;
//! 5. [`compare`], [`live`], [`headless`], [`bench`], [`seeds`], [`export`], [`runs`] (how a
//!    run stands, its trained methods), [`hooks`] (the command run when a run ends):
//!    front-end-side work on runs;
//! 6. [`queue`]: the SQLite queue, sweeps, the scheduler;
//! 7. [`tui`]: the terminal UI; then the binary's `main`.
pub mod bench;
pub mod checkpoint;
pub mod compare;
pub mod config;
pub mod data;
pub mod distributed;
pub mod engine;
pub mod events;
pub mod export;
pub mod headless;
pub mod hooks;
pub mod live;
pub mod method;
pub mod metrics;
pub mod model;
pub mod presets;
pub mod queue;
pub mod run_dir;
pub mod runs;
pub mod seeds;
pub mod tui;
pub mod wire;
