"""Long runs and speed/quality measurements (not part of the test suite).

Run each from the repository root as a module, ``python -m benchmarks.<name> --help``, with
synthcohort installed (``pip install -e .``); results go to ``benchmarks/results/``.
"""
