"""Issue 5's speed figure: a 16-run sweep on digits with ``--jobs 2`` against ``--jobs 1``.

Both invocations are whole ``optlab run`` processes (start-up, worker start-up, tracking to a
fresh SQLite store in a temporary folder, the comparison at the end), timed alternately, best
of ``k``. Target: ``--jobs 2`` takes at most 0.6 of the time of ``--jobs 1`` on two cores.
``--quick`` runs a 4-run sweep (2 learning rates, one seed) once each way, untracked (it checks
that the figure is measured; MLflow's import and the figures would be most of its time).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks._common import Figure, new_store
from benchmarks.bench_startup import optlab_command, wall_time

__all__ = ["SWEEP", "run"]

#: 2 losses x 4 learning rates x 2 seeds = 16 runs; each trains for a fraction of a second
#: (``--quick``: 2 losses x 2 learning rates x 1 seed)
SWEEP = """\
name: bench_parallel
data: {{name: digits}}
loss: {{name: softmax}}
regularizer: {{name: l2, strength: 0.0001}}
optimizer: {{name: sgd, lr: 0.01, batch_size: 32, epochs: {epochs}, momentum: 0.9}}
variants:
  softmax: {{}}
  svm: {{loss: {{name: svm}}}}
sweep:
  grid:
    optimizer.lr: {lrs}
seeds: {seeds}
"""


def run(quick: bool = False) -> list[Figure]:
    """The ``--jobs 2`` / ``--jobs 1`` wall-time ratio of a 16-run sweep."""
    k = 1 if quick else 3
    epochs = 2 if quick else 30
    lrs, seeds = ([0.001, 0.01], [0]) if quick else ([0.001, 0.003, 0.01, 0.03], [0, 1])
    n_runs = 2 * len(lrs) * len(seeds)
    optlab = optlab_command()
    seconds: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        spec = Path(tmp) / "sweep.yaml"
        spec.write_text(SWEEP.format(epochs=epochs, lrs=lrs, seeds=seeds))
        for jobs in (1, 2):
            argv = [*optlab, "run", str(spec), "--json", "--jobs", str(jobs)]
            if quick:
                argv.append("--no-track")
            else:
                argv += ["--tracking-uri", new_store(Path(tmp) / f"jobs{jobs}.db", empty=False)]
            seconds[jobs] = wall_time(argv, k)
    tracked = "untracked" if quick else "tracked"
    return [
        Figure(
            "parallel.jobs2_vs_jobs1",
            f"{n_runs}-run digits sweep ({epochs} epochs each, {tracked}): "
            "--jobs 2 / --jobs 1 wall time",
            seconds[2] / seconds[1],
            "x",
            0.6,
            "<=",
            note=f"whole `optlab run` processes, best of {k}",
            detail={"jobs1_s": seconds[1], "jobs2_s": seconds[2], "epochs": epochs, "runs": n_runs},
        )
    ]
