"""Training one run: data, the run itself, its checks and its monitor.

::

    data.py       loading a dataset through its plugin, cached per process; measuring it
    prepare.py    validating raw data, converting and preprocessing it into its splits
    splits.py     stratified, seeded split sizes and indices
    preflight.py  what can be refused before anything trains (sizes, data reachable)
    describe.py   what a run is for observers and the store: RunInfo, key, params, tags
    runner.py     execute: one run from its RunSpec to its RunResult
    checks.py     gradient and initial-loss checks
    monitor.py    the run's monitor: evaluation points, divergence, stopping
    landscape.py  loss-landscape slices through a learned W
"""
