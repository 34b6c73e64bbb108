//! libtorch calls that tch does not wrap, compiled from `src/libtorch.cpp` by build.rs against
//! libtorch's own headers.

use tch::{Kind, TchError, Tensor};

unsafe extern "C" {
    fn reid_cuda_autocast_enter(bfloat16: i32) -> i32;
    fn reid_cuda_autocast_exit(was: i32) -> i32;
    fn reid_cuda_native_bfloat16() -> i32;
    fn reid_pin_memory(t: *const torch_sys::C_tensor) -> *mut torch_sys::C_tensor;
}

/// Runs `f` under CUDA autocast casting to `kind` (bfloat16 or float16) on this thread; the
/// earlier autocast state comes back afterwards, also when `f` panics.
pub fn cuda_autocast<T>(kind: Kind, f: impl FnOnce() -> T) -> Result<T, TchError> {
    struct Region(i32);
    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: leaves the region entered below; exceptions are caught in C++ (and a
            // failure to restore cannot be reported from a destructor).
            let _ = unsafe { reid_cuda_autocast_exit(self.0) };
        }
    }
    // SAFETY: thread-local libtorch settings; exceptions are caught in C++.
    let was = unsafe { reid_cuda_autocast_enter(i32::from(kind == Kind::BFloat16)) };
    if was < 0 {
        return Err(TchError::Torch(format!("cannot enter CUDA autocast to {kind:?}")));
    }
    let _region = Region(was);
    Ok(f())
}

/// Whether the current CUDA device runs bfloat16 natively (compute capability 8.0 or newer).
pub fn cuda_native_bfloat16() -> bool {
    // SAFETY: a libtorch query without arguments; exceptions are caught in C++.
    (unsafe { reid_cuda_native_bfloat16() }) == 1
}

/// A page-locked (pinned) copy of a CPU tensor, so that a non-blocking upload of it really
/// runs beside the host.
pub fn pin_memory(t: &Tensor) -> Result<Tensor, TchError> {
    // SAFETY: `t` is a live tensor for the call; the C++ side returns a new heap tensor or null,
    // and a non-null one is owned by the `Tensor` made from it.
    let pinned = unsafe { reid_pin_memory(t.as_ptr()) };
    if pinned.is_null() {
        return Err(TchError::Torch(format!(
            "cannot pin a {:?} {:?} tensor (pinned memory needs CUDA)",
            t.kind(),
            t.size()
        )));
    }
    // SAFETY: see above.
    Ok(unsafe { Tensor::from_ptr(pinned) })
}
