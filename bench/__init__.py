"""Benchmarks (not tests): each `bench/*_bench.py` has a `main(argv)`; `make bench` runs all."""
