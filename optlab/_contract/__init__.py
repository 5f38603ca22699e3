"""The plugin contract: what a component implements, what it is given, how it registers.

The lowest layer of optlab (only :mod:`optlab._errors` is below it); every other layer builds
on it. Its public names are re-exported by :mod:`optlab`.

::

    components.py      loss, regularizer, dataset and monitor interfaces; their records
    optimizer.py       the optimizer interface, minibatch params, MAX_STEPS
    objective.py       Objective: the training objective an optimizer minimizes
    backend.py         Backend: the numerical work of training (numpy/BLAS); choosing one
    batches.py         minibatch order and gathering, one batch ahead
    fastpath.py        the full-batch pass in cache-sized blocks
    blas_threads.py    BLAS thread control
    records.py         what observers are told: RunInfo, EpochReport, RunResult, ...
    hookspecs.py       the pluggy hook specifications and ``hookimpl``
    registry.py        Registry: the registered components by kind and name
    plugin_manager.py  loading plugins (entry points), guarding their hooks
"""
