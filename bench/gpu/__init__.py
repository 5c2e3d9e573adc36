"""GPU-only helpers of the benchmark (run by bench/gpu_check.sh on a lent GPU)."""
