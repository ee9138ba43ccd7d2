//! One stage-1 backbone, the classifier-stage methods and calibration fixes side by side
//! (`mislas compare`), with seeded bootstrap error bars.
//!
//! * [`estimators`]: top-1, ECE (the reference's 15 equal-width bins), adaptive ECE, classwise
//!   ECE, MCE, NLL, Brier, per-class over-confidence, overall and per group of classes;
//! * [`bootstrap`]: 95 % percentile intervals of top-1 and ECE, paired across methods.
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod estimators;
pub mod methods;
pub mod plots;
pub mod plots_prior;
pub mod posthoc;
pub mod prior;
pub mod report;
pub mod shift;
pub mod split;
pub mod test_priors;
