"""Test-session setup shared by every test package."""
import os

# Without a GPU, Triton kernels run on the CPU through Triton's interpreter (DESIGN.md §5). The
# variable must be set before triton is first imported, i.e. before sincfb is.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
