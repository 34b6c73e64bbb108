//! Process-wide settings for heavy tensor work.

unsafe extern "C" {
    /// glibc's `mallopt(3)`.
    fn mallopt(param: i32, value: i32) -> i32;
}

const M_TRIM_THRESHOLD: i32 = -1;
const M_MMAP_MAX: i32 = -4;

/// Keeps freed memory in the process instead of returning it to the kernel. Network activations
/// are large (tens of MB per batch) and reallocated on every forward pass; glibc would serve each
/// with a fresh `mmap` and pay page faults on every use. With mmap disabled and no trimming, the
/// heap settles at the peak of one batch and stays there (flat RSS), and batched CPU inference
/// runs up to 2× faster (BENCHMARKS.md). Call once, before other threads start.
pub fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; both values are valid for glibc.
    unsafe {
        mallopt(M_MMAP_MAX, 0);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// The message of a caught panic (`panic!` with a literal or a formatted string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Waits for the device's queued work (no-op on the CPU), so that a clock read after it counts
/// that work.
pub fn synchronize(device: tch::Device) {
    if let tch::Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}
