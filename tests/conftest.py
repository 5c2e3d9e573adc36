"""Test-session setup shared by every test package."""
import os

# OpenMP threads that spin while waiting for work stall each other on a loaded 2-core machine (a
# compact ResNet-18 forward went from 13 ms to 660 ms); passive waiting keeps the suite's time
# steady. Must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# backend='auto' follows its static rule in tests: timing the candidates (its default on large
# problems) would make which backend a test runs depend on the machine's load. The calibration
# tests set SINCFB_AUTO themselves.
os.environ.setdefault("SINCFB_AUTO", "static")

# Without a GPU, Triton kernels run on the CPU through Triton's interpreter (DESIGN.md §5). The
# variable must be set before triton is first imported, i.e. before sincfb is.
if "TRITON_INTERPRET" not in os.environ:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"
