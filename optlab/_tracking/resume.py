"""What ``--resume`` asks of the store: the runs already FINISHED, and the runs left RUNNING
by a process that is gone (``kill -9``, a machine that went down), which are ended as KILLED."""

from __future__ import annotations

import os
import socket

from optlab._tracking.tracker import HOST_TAG, PID_TAG, ROLE_TAG, RUN_KEY_TAG, Tracker

__all__ = ["finished_runs", "mark_stale_running", "process_alive"]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def finished_runs(tracker: Tracker) -> dict[str, str]:
    """Run key -> MLflow run id of the experiment's FINISHED child runs (the latest run
    of each key)."""
    runs = tracker.search_runs(f"tags.`{ROLE_TAG}` = 'run' and attributes.status = 'FINISHED'")
    found: dict[str, tuple[int, str]] = {}
    for r in runs:
        key = r.data.tags.get(RUN_KEY_TAG)
        if key is not None and (key not in found or r.info.start_time > found[key][0]):
            found[key] = (int(r.info.start_time), str(r.info.run_id))
    return {key: run_id for key, (_, run_id) in found.items()}


def mark_stale_running(tracker: Tracker, *, other_hosts: bool = False) -> list[str]:
    """End as KILLED the experiment's runs left RUNNING by a process that is gone.

    A run is stale when it was started on this host by a process that no longer exists
    (with ``other_hosts``, every RUNNING run of another host counts as stale too). Runs of
    the current process are never touched. Returns the names of the runs ended.
    """
    host, me = socket.gethostname(), os.getpid()
    ended: list[str] = []
    for run in tracker.search_runs("attributes.status = 'RUNNING'"):
        tags = run.data.tags
        try:
            pid = int(tags.get(PID_TAG, ""))
        except ValueError:
            continue
        same_host = tags.get(HOST_TAG) == host
        if same_host and (pid == me or process_alive(pid)):
            continue
        if not same_host and not other_hosts:
            continue
        reason = f"process {pid} on {tags.get(HOST_TAG)} ended without finishing the run"
        tracker.end_run(run.info.run_id, "KILLED", reason, "end a stale run")
        ended.append(str(run.info.run_name))
    return ended
