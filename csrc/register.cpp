// Registers the sincfb_cpu operator library (called from sincfb/backends/cpu.py as
// torch.ops.sincfb_cpu.*). Mutated arguments are declared with (a!) so the dispatcher knows the
// fused kernels write into caller-allocated buffers.
#include <torch/library.h>

#include "ops.h"

TORCH_LIBRARY(sincfb_cpu, m) {
  m.def("fold_correlate(Tensor x, Tensor folded_filters) -> Tensor");
  m.def("fold_correlate_transposed(Tensor values, Tensor folded_filters) -> Tensor");
  m.def("fold_window_correlation(Tensor values, Tensor x) -> Tensor");
  m.def(
      "filterbank_forward(Tensor x, Tensor folded_filters, Tensor mean, Tensor rstd, "
      "Tensor weight, Tensor bias, Tensor(a!) out, Tensor(b!) mask_bits, "
      "Tensor(c!) bin_stats) -> ()");
  m.def(
      "filterbank_backward(Tensor bin_grad, Tensor x, Tensor scaled_filters, Tensor mask_bits, "
      "Tensor(a!) corr, Tensor(b!) grad_x, bool with_corr=True, bool with_dx=True) -> ()");
  m.def(
      "fft_filterbank_forward(Tensor spectrum, Tensor filters, int n, int n_fft, Tensor mean, "
      "Tensor var, Tensor weight, Tensor bias, float eps, int pool_bins, bool training, "
      "bool keep_saved=True) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "fft_filterbank_backward(Tensor signal, Tensor spectrum, Tensor filters, int n_fft, "
      "Tensor bin_grad, Tensor mask_bits, Tensor c, Tensor c3, Tensor c4, bool training, "
      "bool with_filters=True, bool with_dx=True) -> "
      "(Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(sincfb_cpu, CPU, m) {
  m.impl("fold_correlate", &sincfb_cpu::fold_correlate);
  m.impl("fold_correlate_transposed", &sincfb_cpu::fold_correlate_transposed);
  m.impl("fold_window_correlation", &sincfb_cpu::fold_window_correlation);
  m.impl("filterbank_forward", &sincfb_cpu::filterbank_forward);
  m.impl("filterbank_backward", &sincfb_cpu::filterbank_backward);
  m.impl("fft_filterbank_forward", &sincfb_cpu::fft_filterbank_forward);
  m.impl("fft_filterbank_backward", &sincfb_cpu::fft_filterbank_backward);
}
