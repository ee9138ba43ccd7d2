//! One stage-1 backbone, the classifier-stage methods and calibration fixes side by side
//! (`mislas compare`), with seeded bootstrap error bars.
//!
//! * [`estimators`]: top-1, ECE (the reference's 15 equal-width bins), adaptive ECE, classwise
//!   ECE, MCE, NLL, Brier, per-class over-confidence, overall and per group of classes;
//! * [`bootstrap`]: 95 % intervals of top-1 and ECE (basic bootstrap by default, which accounts
//!   for the binned ECE's bias), paired across methods; [`coverage`] measures how often they
//!   hold the truth, by simulation;
//! * [`figure_intervals`]: intervals of adaptive ECE, NLL, Brier, OE and TACE on the
//!   bootstrap's resamples (for the shifted test priors);
//! * [`debiased_ece`]: Kumar et al.'s debiased ECE, reported beside the plug-in one.
//! * [`shift`]: shifted test priors (SADE's forward/uniform/backward subsets of the scored
//!   split), or [`sade_lists`] (SADE's list files of ImageNet-LT, Places-LT, iNaturalist 2018);
//!   [`test_priors`]: every method scored on them (with OE and TACE);
//!   [`prior`]: the prior-aware steps `la-q`, `em`, `bbse`; [`plots_prior`]: their figure.
pub mod bootstrap;
pub mod cache;
pub mod cli;
pub mod coverage;
pub mod debiased_ece;
pub mod estimators;
pub mod figure_intervals;
pub mod methods;
pub mod plots;
pub mod plots_prior;
pub mod posthoc;
pub mod prior;
pub mod progress;
pub mod report;
pub mod sade_lists;
pub mod shift;
pub mod split;
pub mod test_priors;

/// The values of a tensor as a vector of `T` (the tensor's kind must be `T`'s).
///
/// # Errors
/// The tensor cannot be read as `T` values: the message names `what`.
pub(crate) fn values<T>(t: &tch::Tensor, what: &str) -> anyhow::Result<Vec<T>>
where
    for<'a> Vec<T>: TryFrom<&'a tch::Tensor, Error = tch::TchError>,
{
    Vec::<T>::try_from(t).map_err(|e| anyhow::anyhow!("cannot read {what} ({e})"))
}

/// Joins a worker thread of a scoped pair.
///
/// # Errors
/// The worker panicked (a libtorch error): the message names `what` and the panic's text.
pub(crate) fn joined<T>(
    handle: std::thread::ScopedJoinHandle<'_, T>,
    what: &str,
) -> anyhow::Result<T> {
    handle.join().map_err(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "unknown error".into());
        anyhow::anyhow!("the {what} thread failed: {text}")
    })
}
