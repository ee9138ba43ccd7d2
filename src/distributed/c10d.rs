//! PyTorch's c10d process group, reached through `src/distributed/c10d.cc` (compiled by `build.rs`).
//!
//! A [`ProcessGroup`] is what `torch.distributed.init_process_group` makes: a `TCPStore`
//! rendezvous served by rank 0 and a `ProcessGroupGloo` (CPU tensors) or `ProcessGroupNCCL`
//! (CUDA tensors) connecting the ranks. Every C++ exception comes back as an `Err` with its
//! text; every collective and store wait is bounded by the group's timeout.
use anyhow::{bail, Result};
use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;
use tch::Tensor;

/// The collective backend, as `torch.distributed`'s `backend` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors.
    Gloo,
    /// NCCL: CUDA tensors, one GPU per rank.
    Nccl,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        })
    }
}

/// Whether this build of mislas can start more than one process (gloo's headers were found
/// when it was built), and if not, why.
pub fn support() -> Result<(), &'static str> {
    if cfg!(mislas_c10d) {
        Ok(())
    } else {
        Err(
            "this mislas was built without PyTorch's c10d (gloo's headers were missing: install \
             Debian's libgloo-dev, e.g. with scripts/setup.sh, then rebuild)",
        )
    }
}

/// Whether this build has NCCL (CUDA's headers were found when it was built).
pub fn has_nccl() -> bool {
    // SAFETY: a pure function of the build.
    unsafe { ffi::mislas_c10d_has_nccl() != 0 }
}

/// One rank's membership of a process group.
#[derive(Debug)]
pub struct ProcessGroup {
    handle: *mut c_void,
    rank: usize,
    world_size: usize,
    timeout: Duration,
}

// SAFETY: c10d's stores and process groups are used from any thread (PyTorch calls them from
// the Python thread and DDP's autograd hooks); mislas calls one group from one thread at a time.
unsafe impl Send for ProcessGroup {}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `handle` came from `mislas_c10d_new` and is freed once.
        unsafe { ffi::mislas_c10d_free(self.handle) };
    }
}

impl ProcessGroup {
    /// Joins a group of `world_size` ranks as `rank`: rank 0 serves the rendezvous store on
    /// `host:port` (and binds the port: a port in use is an error), the others connect to it;
    /// `check` then runs with the store alone (the ranks can compare what they were asked to
    /// run before anything else), then `backend` connects every pair of ranks. Blocks until
    /// all ranks arrived, at most `timeout`, which also bounds every later collective.
    ///
    /// # Errors
    /// c10d's error text: the port is in use, a rank did not arrive within `timeout`, NCCL is
    /// not built in, this build has no c10d; or `check`'s error.
    pub fn join(
        host: &str,
        port: u16,
        rank: usize,
        world_size: usize,
        backend: Backend,
        timeout: Duration,
        check: impl FnOnce(&ProcessGroup) -> Result<()>,
    ) -> Result<Self> {
        support().map_err(anyhow::Error::msg)?;
        if backend == Backend::Nccl && !has_nccl() {
            bail!(
                "NCCL was asked for, but this mislas was built without it (CUDA's headers for \
                 NCCL were missing at build time: run scripts/setup.sh, which installs the \
                 nvidia-cuda-cccl and nvidia-cuda-crt wheels, then rebuild)"
            );
        }
        let group = Self::rendezvous(host, port, rank, world_size, timeout)?;
        check(&group)?;
        group.connect(host, backend)?;
        Ok(group)
    }

    /// The TCPStore half of [`ProcessGroup::join`]: rank 0 serves it, the others connect.
    fn rendezvous(
        host: &str,
        port: u16,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self> {
        let c_host = CString::new(host)?;
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: sets libc10's log level (a plain int), then valid C strings and out-pointer;
        // the returned handle is owned by `Self`.
        let handle = unsafe {
            ffi::mislas_c10d_quiet();
            ffi::mislas_c10d_new(
                c_host.as_ptr(),
                port,
                rank as i32,
                world_size as i32,
                timeout.as_millis() as i64,
                &mut err,
            )
        };
        check_rc(i32::from(handle.is_null()), err)?;
        Ok(ProcessGroup {
            handle,
            rank,
            world_size,
            timeout,
        })
    }

    /// The backend half of [`ProcessGroup::join`]: Gloo (on `host`'s interface) or NCCL.
    fn connect(&self, host: &str, backend: Backend) -> Result<()> {
        let c_host = CString::new(host)?;
        let backend_id = match backend {
            Backend::Gloo => 0,
            Backend::Nccl => 1,
        };
        let mut err = std::ptr::null_mut();
        // SAFETY: `handle` is open; valid C string.
        let rc = unsafe {
            ffi::mislas_c10d_connect(
                self.handle,
                c_host.as_ptr(),
                self.rank as i32,
                self.world_size as i32,
                backend_id,
                &mut err,
            )
        };
        check_rc(rc, err)
    }

    /// This process's rank, `0..world_size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The bound of every collective and store wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The C++ group, for the overlapped all-reduce ([`super::overlap`]).
    pub(super) fn raw(&self) -> *mut c_void {
        self.handle
    }

    /// Sums each tensor in place over the ranks (`dist.all_reduce(t, SUM)`); tensors must be
    /// contiguous, of the same shape and dtype on every rank.
    ///
    /// # Errors
    /// A lost rank or a timeout (c10d's text).
    pub fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<()> {
        let mut ptrs = pointers(tensors);
        let mut err = std::ptr::null_mut();
        // SAFETY: live tensors, `handle` is open.
        let rc = unsafe {
            ffi::mislas_c10d_all_reduce_sum(self.handle, ptrs.as_mut_ptr(), ptrs.len(), &mut err)
        };
        check_rc(rc, err)
    }

    /// Copies each tensor of `root` into the same tensor of every rank (`dist.broadcast`).
    ///
    /// # Errors
    /// A lost rank or a timeout.
    pub fn broadcast(&self, tensors: &mut [Tensor], root: usize) -> Result<()> {
        let mut ptrs = pointers(tensors);
        let mut err = std::ptr::null_mut();
        // SAFETY: live tensors, `handle` is open.
        let rc = unsafe {
            ffi::mislas_c10d_broadcast(
                self.handle,
                ptrs.as_mut_ptr(),
                ptrs.len(),
                root as i32,
                &mut err,
            )
        };
        check_rc(rc, err)
    }

    /// `input` of every rank, in rank order (`dist.all_gather`); `input` must have the same
    /// shape and dtype on every rank.
    ///
    /// # Errors
    /// A lost rank or a timeout.
    pub fn all_gather(&self, input: &Tensor) -> Result<Vec<Tensor>> {
        let mut input = input.contiguous();
        let mut outputs: Vec<Tensor> = (0..self.world_size).map(|_| input.empty_like()).collect();
        let mut ptrs = pointers(&mut outputs);
        let mut err = std::ptr::null_mut();
        // SAFETY: live tensors, `handle` is open, `ptrs` holds world-size outputs.
        let rc = unsafe {
            ffi::mislas_c10d_all_gather(
                self.handle,
                input.as_mut_ptr().cast(),
                ptrs.as_mut_ptr(),
                ptrs.len(),
                &mut err,
            )
        };
        check_rc(rc, err)?;
        Ok(outputs)
    }

    /// Sets `key` to `value` in the rendezvous store.
    ///
    /// # Errors
    /// The store (rank 0's process) cannot be reached.
    pub fn store_set(&self, key: &str, value: &[u8]) -> Result<()> {
        let c_key = CString::new(key)?;
        let mut err = std::ptr::null_mut();
        // SAFETY: valid key and value buffer, `handle` is open.
        let rc = unsafe {
            ffi::mislas_c10d_store_set(
                self.handle,
                c_key.as_ptr(),
                value.as_ptr(),
                value.len(),
                &mut err,
            )
        };
        check_rc(rc, err)
    }

    /// Whether `key` is in the rendezvous store now.
    ///
    /// # Errors
    /// The store (rank 0's process) cannot be reached.
    pub fn store_has(&self, key: &str) -> Result<bool> {
        let c_key = CString::new(key)?;
        let mut err = std::ptr::null_mut();
        let mut present = 0i32;
        // SAFETY: valid key and out-pointers, `handle` is open.
        let rc = unsafe {
            ffi::mislas_c10d_store_check(self.handle, c_key.as_ptr(), &mut present, &mut err)
        };
        check_rc(rc, err)?;
        Ok(present != 0)
    }

    /// Waits at most `wait` for `key` in the rendezvous store and returns its value.
    ///
    /// # Errors
    /// The key did not appear in time, or the store cannot be reached.
    pub fn store_get(&self, key: &str, wait: Duration) -> Result<Vec<u8>> {
        let c_key = CString::new(key)?;
        let mut err = std::ptr::null_mut();
        let mut value: *mut u8 = std::ptr::null_mut();
        let mut len = 0usize;
        // SAFETY: valid key and out-pointers; the value buffer is malloc'ed by the callee.
        let rc = unsafe {
            ffi::mislas_c10d_store_get(
                self.handle,
                c_key.as_ptr(),
                wait.as_millis() as i64,
                &mut value,
                &mut len,
                &mut err,
            )
        };
        check_rc(rc, err)?;
        // SAFETY: on success `value` holds `len` bytes allocated with malloc.
        let bytes = unsafe { std::slice::from_raw_parts(value, len).to_vec() };
        // SAFETY: allocated by malloc in the C++ side.
        unsafe { libc_free(value.cast()) };
        Ok(bytes)
    }
}

fn pointers(tensors: &mut [Tensor]) -> Vec<*mut c_void> {
    tensors.iter_mut().map(|t| t.as_mut_ptr().cast()).collect()
}

/// Turns a C return code and error text into a `Result`, freeing the text.
fn check_rc(rc: i32, err: *mut c_char) -> Result<()> {
    if rc == 0 {
        return Ok(());
    }
    if err.is_null() {
        bail!("c10d failed without a message");
    }
    // SAFETY: `err` is a NUL-terminated string malloc'ed by the C++ side.
    let text = unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: freed once, by the allocator that made it.
    unsafe { libc_free(err.cast()) };
    bail!("{}", first_lines(&text))
}

/// c10d's messages end with a C++ backtrace; the first lines say what happened.
pub(super) fn first_lines(text: &str) -> String {
    let cut = text
        .find("\nException raised from")
        .or_else(|| text.find("\nframe #"))
        .unwrap_or(text.len());
    text[..cut].trim().to_owned()
}

extern "C" {
    #[link_name = "free"]
    fn libc_free(p: *mut c_void);
}

#[cfg(mislas_c10d)]
mod ffi {
    use std::ffi::{c_char, c_void};
    extern "C" {
        pub fn mislas_c10d_has_nccl() -> i32;
        pub fn mislas_c10d_quiet();
        pub fn mislas_c10d_new(
            host: *const c_char,
            port: u16,
            rank: i32,
            world_size: i32,
            timeout_ms: i64,
            err: *mut *mut c_char,
        ) -> *mut c_void;
        pub fn mislas_c10d_connect(
            g: *mut c_void,
            host: *const c_char,
            rank: i32,
            world_size: i32,
            backend: i32,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_free(g: *mut c_void);
        pub fn mislas_c10d_all_reduce_sum(
            g: *mut c_void,
            tensors: *mut *mut c_void,
            n: usize,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_broadcast(
            g: *mut c_void,
            tensors: *mut *mut c_void,
            n: usize,
            root: i32,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_all_gather(
            g: *mut c_void,
            input: *mut c_void,
            outputs: *mut *mut c_void,
            world_size: usize,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_store_set(
            g: *mut c_void,
            key: *const c_char,
            value: *const u8,
            len: usize,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_store_check(
            g: *mut c_void,
            key: *const c_char,
            present: *mut i32,
            err: *mut *mut c_char,
        ) -> i32;
        pub fn mislas_c10d_store_get(
            g: *mut c_void,
            key: *const c_char,
            timeout_ms: i64,
            value: *mut *mut u8,
            len: *mut usize,
            err: *mut *mut c_char,
        ) -> i32;
    }
}

/// A build without c10d: the same functions, each failing (never reached: [`ProcessGroup::join`]
/// asks [`support`] first).
#[cfg(not(mislas_c10d))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    use std::ffi::{c_char, c_void};
    pub unsafe fn mislas_c10d_has_nccl() -> i32 {
        0
    }
    pub unsafe fn mislas_c10d_quiet() {}
    pub unsafe fn mislas_c10d_new(
        _: *const c_char,
        _: u16,
        _: i32,
        _: i32,
        _: i64,
        _: *mut *mut c_char,
    ) -> *mut c_void {
        std::ptr::null_mut()
    }
    pub unsafe fn mislas_c10d_connect(
        _: *mut c_void,
        _: *const c_char,
        _: i32,
        _: i32,
        _: i32,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_free(_: *mut c_void) {}
    pub unsafe fn mislas_c10d_all_reduce_sum(
        _: *mut c_void,
        _: *mut *mut c_void,
        _: usize,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_broadcast(
        _: *mut c_void,
        _: *mut *mut c_void,
        _: usize,
        _: i32,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_all_gather(
        _: *mut c_void,
        _: *mut c_void,
        _: *mut *mut c_void,
        _: usize,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_store_set(
        _: *mut c_void,
        _: *const c_char,
        _: *const u8,
        _: usize,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_store_check(
        _: *mut c_void,
        _: *const c_char,
        _: *mut i32,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
    pub unsafe fn mislas_c10d_store_get(
        _: *mut c_void,
        _: *const c_char,
        _: i64,
        _: *mut *mut u8,
        _: *mut usize,
        _: *mut *mut c_char,
    ) -> i32 {
        1
    }
}
