"""Benchmarks of adcreative-async, each runnable with one command (see ``benchmarks/README.md``)."""
