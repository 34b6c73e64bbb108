// Two libtorch calls that tch does not wrap, for mixed-precision training (src/train/amp.rs):
// the element type CUDA autocast casts to, and whether the current CUDA device runs bfloat16
// natively (compute capability 8.0 or newer). Both return -1 when libtorch throws.
#include <ATen/autocast_mode.h>
#include <ATen/detail/CUDAHooksInterface.h>

extern "C" int reid_set_cuda_autocast_dtype(int bfloat16) {
  try {
    at::autocast::set_autocast_dtype(at::kCUDA, bfloat16 ? at::kBFloat16 : at::kHalf);
    return 0;
  } catch (...) {
    return -1;
  }
}

extern "C" int reid_cuda_native_bfloat16() {
  try {
    return at::detail::getCUDAHooks().supportsBFloat16ConvolutionWithCuDNNv8() ? 1 : 0;
  } catch (...) {
    return -1;
  }
}
