"""What the tests and the benchmarks both use, and nothing else imports: scratch environments
(throwaway copies of a described environment, `scratch.py`) and load from wrk (`wrk.py`).

It may import the product; the product never imports it, and it never imports `tests/` or
`benchmarks/` (tests/unit/test_layers.py holds it to that).
"""
