"""Benchmarks of whole models (`flexitts bench ...`); each writes a JSON and a markdown report atomically."""
