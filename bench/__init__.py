"""camhub benchmarks: each scenario is a module runnable as `python -m bench.<name> [--smoke]`.

Every scenario measures camhub against a reference in the same run (e.g. `ffmpeg -c copy`), prints a
table, and writes `bench/results/<name>.json`. `python -m bench` runs them all and writes
`bench/results/latest.json` and `bench/results/latest.md`.
"""
