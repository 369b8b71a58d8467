"""Tolerances shared by the parity tests."""

# The parity fixtures were recorded on an Intel Xeon; on other CPUs (an AVX2 AMD EPYC) the GEMM and
# FFT kernels round differently, by up to 3e-5 on the recorded values. Codes must still be identical.
CROSS_CPU_ATOL = 5e-5
