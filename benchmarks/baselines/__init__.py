"""Reference implementations the benchmarks compare nnzero with."""
