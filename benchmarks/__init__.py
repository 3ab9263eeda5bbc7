"""nnzero benchmarks: python -m benchmarks --help"""
