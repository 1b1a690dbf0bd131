"""knflow's benchmarks: `python -m bench [--quick]`. See bench/__main__.py and bench/PROFILE.md."""
