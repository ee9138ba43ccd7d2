//! The gradient all-reduce overlapped with the backward pass, as PyTorch DDP's `Reducer`
//! (`torch/csrc/distributed/c10d/reducer.cpp`) does it, through `src/distributed/c10d.cc`.
//!
//! The parameters are split into buckets in reverse order ([`reverse_buckets`]: the order in
//! which a backward pass produces their gradients when the forward pass uses them in
//! parameter order), the first bucket at most 1 MiB, the others at most 25 MiB — DDP's buckets
//! after its first iteration (`dist._DEFAULT_FIRST_BUCKET_BYTES`, `bucket_cap_mb=25`; DDP
//! rebuilds them in the order the gradients arrived). A hook on each parameter (autograd's
//! post-accumulate-grad hook, C++ side of `Tensor.register_post_accumulate_grad_hook`) marks
//! it ready; a bucket whose parameters are all ready starts its asynchronous all-reduce as soon
//! as every earlier bucket has started (so every rank starts the same collectives in the same
//! order, as the Reducer's `next_bucket_`). After the backward pass
//! [`OverlappedAllReduce::finish`] starts what the hooks did not, waits, divides by the world
//! size and writes the gradients.
//!
//! | | DDP's Reducer | here |
//! |---|---|---|
//! | buckets | ready order after iteration 1 (one bucket before), 1 MiB then 25 MiB | reverse parameter order from the start, 1 MiB then 25 MiB |
//! | readiness | `AccumulateGrad` post-hook per parameter | post-accumulate-grad hook per parameter |
//! | average | multiplies by 1/N while copying into the bucket, then sums | sums, then divides by N (the non-overlapped path's order: equal buckets give bit-identical gradients) |
//! | `no_sync` (accumulation) | skips the all-reduce of the earlier micro-batches | armed only for the last micro-batch's backward pass |
//! | unused parameters | `find_unused_parameters` | a bucket left incomplete starts after the backward pass |
use super::c10d::ProcessGroup;
use anyhow::{bail, Result};
use std::ffi::{c_char, c_void, CStr};
use tch::Tensor;

/// DDP's cap of the first bucket (`dist._DEFAULT_FIRST_BUCKET_BYTES`), bytes: a small bucket
/// that is ready early, so that the first all-reduce starts early in the backward pass.
pub const FIRST_BUCKET_BYTES: usize = 1024 * 1024;

/// Groups `tensors` into buckets in **reverse** order: the first bucket holds at most
/// `first_cap_bytes`, every later one at most `cap_bytes`; a change of dtype or device starts a
/// new bucket, and a tensor larger than its cap is a bucket alone. Buckets list tensor indices
/// in the order they are flattened (descending).
pub fn reverse_buckets(
    tensors: &[Tensor],
    first_cap_bytes: usize,
    cap_bytes: usize,
) -> Vec<Vec<usize>> {
    super::replicas::buckets_in_order(
        tensors,
        (0..tensors.len()).rev(),
        first_cap_bytes,
        cap_bytes,
    )
}

/// What the hooks did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OverlapStats {
    /// Buckets of the plan.
    pub buckets: usize,
    /// Buckets whose all-reduce started inside the last backward pass (the others started
    /// after it).
    pub launched_in_backward: usize,
    /// Seconds spent inside the hooks (flattening buckets, starting their all-reduce) since
    /// the last [`OverlappedAllReduce::stats`].
    pub hook_seconds: f64,
}

/// The gradient hooks and buckets of one set of parameters on one process group.
#[derive(Debug)]
pub struct OverlappedAllReduce {
    handle: *mut c_void,
}

// SAFETY: the C++ state is guarded by its own mutex; the handle is used from one thread at a
// time (the training thread), the hooks from autograd's.
unsafe impl Send for OverlappedAllReduce {}

impl Drop for OverlappedAllReduce {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `mislas_c10d_overlap_new` and is freed once.
        unsafe { ffi::mislas_c10d_overlap_free(self.handle) };
    }
}

impl OverlappedAllReduce {
    /// Registers a hook on each of `params` (leaf tensors that require grad: an SGD's
    /// parameters), split into `plan`'s buckets (parameter indices, every parameter once; e.g.
    /// [`reverse_buckets`]). The hooks stay until this is dropped; it keeps its own reference
    /// to `group`'s backend.
    ///
    /// # Errors
    /// A plan that misses or repeats a parameter, a parameter that is not a leaf requiring
    /// grad (c10d.cc's text).
    pub fn new(group: &ProcessGroup, params: &[Tensor], plan: &[Vec<usize>]) -> Result<Self> {
        let mut ptrs: Vec<*mut c_void> = params.iter().map(|t| t.as_ptr() as *mut c_void).collect();
        let order: Vec<usize> = plan.iter().flatten().copied().collect();
        let lens: Vec<usize> = plan.iter().map(Vec::len).collect();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: live tensors (the callee copies them), plan arrays of the stated lengths,
        // an open group.
        let handle = unsafe {
            ffi::mislas_c10d_overlap_new(
                group.raw(),
                ptrs.as_mut_ptr(),
                ptrs.len(),
                order.as_ptr(),
                lens.as_ptr(),
                lens.len(),
                &mut err,
            )
        };
        if handle.is_null() {
            bail!("{}", take_error(err));
        }
        Ok(OverlappedAllReduce { handle })
    }

    /// Whether `params` are this overlap's parameters (the same tensors, in the same order).
    pub fn matches(&self, params: &[Tensor]) -> bool {
        let mut ptrs: Vec<*mut c_void> = params.iter().map(|t| t.as_ptr() as *mut c_void).collect();
        // SAFETY: live tensors, an open handle.
        unsafe { ffi::mislas_c10d_overlap_matches(self.handle, ptrs.as_mut_ptr(), ptrs.len()) != 0 }
    }

    /// Call just before the (last) backward pass of a step: from then on each complete
    /// bucket starts its all-reduce.
    ///
    /// # Errors
    /// c10d.cc's text (none expected).
    pub fn arm(&self) -> Result<()> {
        let mut err = std::ptr::null_mut();
        // SAFETY: an open handle.
        let rc = unsafe { ffi::mislas_c10d_overlap_arm(self.handle, &mut err) };
        check(rc, err)
    }

    /// After the backward pass: starts the buckets the hooks did not, waits for every
    /// bucket, divides the sums by `world_size` and writes them into the parameters'
    /// gradients (each bucket: flatten, sum over the ranks, divide, copy back — the
    /// operations of [`super::Replicas`]'s all-reduce after the backward pass). Without a
    /// preceding [`OverlappedAllReduce::arm`] every bucket starts here.
    ///
    /// # Errors
    /// A lost rank or a timeout (c10d's text, from a hook or from the wait).
    pub fn finish(&self, world_size: usize) -> Result<()> {
        let mut err = std::ptr::null_mut();
        // SAFETY: an open handle.
        let rc =
            unsafe { ffi::mislas_c10d_overlap_finish(self.handle, world_size as f64, &mut err) };
        check(rc, err)
    }

    /// What the hooks did in the last backward pass, and the time inside them since the last
    /// call.
    pub fn stats(&self) -> OverlapStats {
        let (mut buckets, mut launched, mut seconds) = (0usize, 0usize, 0.0f64);
        // SAFETY: an open handle, valid out-pointers.
        unsafe {
            ffi::mislas_c10d_overlap_stats(self.handle, &mut buckets, &mut launched, &mut seconds)
        };
        OverlapStats {
            buckets,
            launched_in_backward: launched,
            hook_seconds: seconds,
        }
    }
}

fn check(rc: i32, err: *mut c_char) -> Result<()> {
    match rc {
        0 => Ok(()),
        _ => bail!("{}", take_error(err)),
    }
}

/// The text of a C++ error (freed here), its C++ backtrace cut.
fn take_error(err: *mut c_char) -> String {
    if err.is_null() {
        return "c10d failed without a message".to_owned();
    }
    // SAFETY: a NUL-terminated string malloc'ed by the C++ side.
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { libc::free(err.cast()) };
    super::c10d::first_lines(&text)
}

#[cfg(mislas_c10d)]
mod ffi {
    use std::ffi::{c_char, c_void};
    extern "C" {
        pub fn mislas_c10d_overlap_new(
            g: *mut c_void,
            params: *mut *mut c_void,
            n: usize,
            plan: *const usize,
            bucket_lens: *const usize,
            n_buckets: usize,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        pub fn mislas_c10d_overlap_matches(
            h: *mut c_void,
            params: *mut *mut c_void,
            n: usize,
        ) -> i32;
        pub fn mislas_c10d_overlap_arm(h: *mut c_void, err: *mut *mut c_char) -> i32;
        pub fn mislas_c10d_overlap_finish(
            h: *mut c_void,
            world_size: f64,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_overlap_stats(
            h: *mut c_void,
            buckets: *mut usize,
            launched_by_hooks: *mut usize,
            hook_seconds: *mut f64,
        );
        pub fn mislas_c10d_overlap_free(h: *mut c_void);
    }
}

/// A build without c10d: never reached (there is no [`ProcessGroup`] to overlap on).
#[cfg(not(mislas_c10d))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    use std::ffi::{c_char, c_void};
    pub unsafe fn mislas_c10d_overlap_new(
        _: *mut c_void,
        _: *mut *mut c_void,
        _: usize,
        _: *const usize,
        _: *const usize,
        _: usize,
        _: *mut *mut c_char,
    ) -> *mut c_void {
        std::ptr::null_mut()
    }
    pub unsafe fn mislas_c10d_overlap_matches(
        _: *mut c_void,
        _: *mut *mut c_void,
        _: usize,
    ) -> i32 {
        0
    }
    pub unsafe fn mislas_c10d_overlap_arm(_: *mut c_void, _: *mut *mut c_char) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_overlap_finish(_: *mut c_void, _: f64, _: *mut *mut c_char) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_overlap_stats(
        _: *mut c_void,
        _: *mut usize,
        _: *mut usize,
        _: *mut f64,
    ) {
    }
    pub unsafe fn mislas_c10d_overlap_free(_: *mut c_void) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn reverse_buckets_start_small_and_go_backwards() {
        let f = |n: i64| Tensor::zeros([n], (Kind::Float, Device::Cpu));
        let l = |n: i64| Tensor::zeros([n], (Kind::Int64, Device::Cpu));
        // 40, 40, 120, 16, 16, 4 bytes; first cap 40, then 80.
        let ts = [f(10), f(10), f(30), l(2), l(2), f(1)];
        // Backwards: 5 (4 B, float) alone by dtype; 4 + 3 (int64, 32 B) within 80; 2 (120 B)
        // alone; 1 + 0 (80 B).
        assert_eq!(
            reverse_buckets(&ts, 40, 80),
            vec![vec![5], vec![4, 3], vec![2], vec![1, 0]]
        );
        // The first cap holds only the first bucket: 4 + 40 > 40 here.
        let ts = [f(10), f(10), f(10), f(1)];
        assert_eq!(
            reverse_buckets(&ts, 40, 80),
            vec![vec![3], vec![2, 1], vec![0]]
        );
        // Cap 0: every tensor alone, as the forward-order buckets with cap 0.
        assert_eq!(
            reverse_buckets(&ts, 0, 0),
            vec![vec![3], vec![2], vec![1], vec![0]]
        );
    }
}
