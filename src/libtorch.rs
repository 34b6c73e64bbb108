//! libtorch calls that tch does not wrap, compiled from `src/libtorch.cpp` by build.rs against
//! libtorch's own headers.

use tch::{Kind, TchError, Tensor};

unsafe extern "C" {
    fn reid_set_cuda_autocast_dtype(bfloat16: i32) -> i32;
    fn reid_cuda_native_bfloat16() -> i32;
    fn reid_pin_memory(t: *const torch_sys::C_tensor) -> *mut torch_sys::C_tensor;
}

/// Sets the element type CUDA autocast casts to on this thread: bfloat16 or float16.
pub fn set_cuda_autocast_kind(kind: Kind) -> Result<(), TchError> {
    // SAFETY: sets one thread-local libtorch setting; exceptions are caught in C++.
    match unsafe { reid_set_cuda_autocast_dtype(i32::from(kind == Kind::BFloat16)) } {
        0 => Ok(()),
        _ => Err(TchError::Torch(format!("cannot set the CUDA autocast type to {kind:?}"))),
    }
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
