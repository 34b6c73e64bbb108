// libtorch calls that tch does not wrap (safe wrappers in src/libtorch.rs). Every function
// catches libtorch's exceptions and reports them as its return value.
#include <ATen/Tensor.h>
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

// Enters CUDA autocast on this thread, casting to bfloat16 (1) or float16 (0): returns whether
// it was on before (1 or 0), -1 on failure. (tch's `autocast` calls the deprecated CUDA-only
// functions, which warn on every call.)
extern "C" int reid_cuda_autocast_enter(int bfloat16) {
  try {
    bool was = at::autocast::is_autocast_enabled(at::kCUDA);
    at::autocast::set_autocast_dtype(at::kCUDA, bfloat16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::increment_nesting();
    return was ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// Leaves what `reid_cuda_autocast_enter` entered, restoring the state `was` it returned; the
// cast cache is cleared when the outermost autocast region ends. 0 on success, -1 on failure.
extern "C" int reid_cuda_autocast_exit(int was) {
  try {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(at::kCUDA, was == 1);
    return 0;
  } catch (...) {
    return -1;
  }
}

// Whether the current CUDA device runs bfloat16 natively (compute capability 8.0 or newer):
// 1 or 0, -1 on failure.
extern "C" int reid_cuda_native_bfloat16() {
  try {
    return at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}

// A page-locked copy of a CPU tensor (`Tensor::pin_memory()` without the deprecated device
// argument, which tch passes and libtorch warns about on every call); null on failure.
extern "C" at::Tensor *reid_pin_memory(const at::Tensor *t) {
  try {
    return new at::Tensor(t->pin_memory());
  } catch (...) {
    return nullptr;
  }
}
