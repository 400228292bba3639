"""ragloom benchmarks: each module ``benchmarks/NAME.py`` has ``main(argv) -> None``; run ``python -m benchmarks NAME``.

Benchmarks are not tests: they print figures (ragloom beside its peer, as a ratio, in one run) and are never
asserted. Peers are installed from ``benchmarks/requirements.txt``, not by ragloom.
"""
