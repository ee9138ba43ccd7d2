//! One stage-1 backbone, the classifier-stage methods and calibration fixes side by side
//! (`mislas compare`), with seeded bootstrap error bars.
//!
//! * [`estimators`]: top-1, ECE (the reference's 15 equal-width bins), adaptive ECE, classwise
//!   ECE, MCE, NLL, Brier, per-class over-confidence, overall and per group of classes;
//! * [`bootstrap`]: 95 % intervals of top-1 and ECE (basic bootstrap by default, which accounts
//!   for the binned ECE's bias), paired across methods; [`coverage`] measures how often they
//!   hold the truth, by simulation;
//! * [`debiased_ece`]: Kumar et al.'s debiased ECE, reported beside the plug-in one.
//! * [`shift`]: shifted test priors (SADE's forward/uniform/backward subsets of the scored
//!   split); [`test_priors`]: every method scored on them (with OE and TACE);
//!   [`prior`]: the prior-aware steps `la-q`, `em`, `bbse`; [`plots_prior`]: their figure.
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod coverage;
pub mod debiased_ece;
pub mod estimators;
pub mod methods;
pub mod plots;
pub mod plots_prior;
pub mod posthoc;
pub mod prior;
pub mod progress;
pub mod report;
pub mod shift;
pub mod split;
pub mod test_priors;
