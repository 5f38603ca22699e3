"""Run claims: of the invocations alive on one store, exactly one trains a given run.

Two invocations of a spec on one store (two ``optlab run SPEC --resume`` at once, or a
``--resume`` started while the first invocation still runs) would otherwise both train the
runs that are not FINISHED yet. So an invocation claims a run before it trains it, and leaves
alone a run that another live invocation has claimed.

What a claim is
    A tag ``optlab.claim.<run key>`` (value ``claimed: NAME``, then ``released: NAME``) on
    the claiming invocation's parent run. That run says who owns the claim: its run id (the
    invocation id), its host and process (tags ``optlab.host``, ``optlab.pid``) and a
    heartbeat, the tag ``optlab.heartbeat`` (Unix time, seconds), which a thread of the
    invocation refreshes every :func:`heartbeat_every` seconds (5 s by default: one
    ``set_tag`` per invocation, however many runs it holds). A claim is written with
    ``set_tag`` (many with ``log_batch``, 100 a call) and released once the run has ended and
    is recorded (with ``optlab run``, in the same call as the next run's claim); a run that
    did not finish can then be trained by another invocation. While the invocation goes on,
    a release overwrites the tag (a ``delete_tag`` costs two to three ``set_tag`` on SQLite,
    and cannot be batched with the next claim). When it ends, its claims still in force are
    released in one call, then its claim tags are deleted, then its heartbeat, one
    ``delete_tag`` each: no invocation reads them any more (only the claims of RUNNING
    invocations are read, and the parent run ends next), and its child runs already say which
    runs it trained. A claim tag left on an ended parent run (its store was lost, or its
    process killed and taken over) is harmless for the same reason.

Live or stale
    A claim is live while its parent run is RUNNING, its heartbeat is younger than the
    staleness interval (``$OPTLAB_CLAIM_STALE_S``, default 60 s: :func:`stale_after`) and, when
    it was made on this host, its process exists (in this very process: its invocation is
    still going; ``optlab.run`` can be called again after a call that lost its store). A live
    claim is respected; a stale one is taken over: the process on this host is gone
    (``kill -9``), at once; one on another host, once it has not beaten for the staleness
    interval (the hosts' clocks are assumed to agree to within a few seconds). The invocation
    that takes a run over ends the stale invocation's parent run and its unfinished run of
    that key as KILLED, with the reason (not those of this process, which ``--resume`` never
    ends either).

Why exactly one invocation wins a run
    An invocation first writes its claim, then reads the claims of every RUNNING invocation
    of the experiment (one ``search_runs``), and trains the run only if no other live
    invocation claims it. Two invocations cannot both win: of their two claims, the one
    committed second was committed before its own invocation's search began, and that search
    sees the first claim (MLflow commits a write before it answers it, and a search reads what
    is committed: SQLite, the other SQL stores, and a tracking server in front of one). The
    clocks play no part in this, only the order in which the store commits.

    Two invocations that see each other's claim both withdraw theirs, wait a random
    0.05-0.5 s (longer when the store answers slowly) and look again: a live claim found then
    was made by an invocation still trying, which wins or settles it the same way, so they
    leave the run to it; if there is none, they claim again. After 12 such rounds (which
    random waits make improbable) a run is left to the invocation last seen claiming it.

    A run can also have been FINISHED by another invocation after this one read the store:
    a winner checks that before it trains (an invocation records the run's end before it
    removes its claim, so the winner sees one or the other). With ``--resume`` any FINISHED run
    of the key counts; without, only one that ended after this invocation started (a plain
    ``optlab run`` trains again what earlier invocations finished, as it always did).

What it costs
    Per run, with ``optlab run``: one write (this run's claim, and the previous run's release)
    and two searches (the claims of the RUNNING invocations; the key's FINISHED runs); their
    time is in benchmarks/README.md, "Measurements behind the code". With ``--jobs N`` the claims of
    all runs are written in batches and read with one search, and each release is one write.
    Plus the heartbeat, one write every 5 s; and when the invocation ends, one ``delete_tag``
    per run it claimed, and one for the heartbeat.

What it does not do
    An invocation paused (stopped, or cut off from the store) for longer than the staleness
    interval loses its claims while it may still train; its runs are then trained twice.
    ``--no-track`` runs use no store and claim nothing.

Its size (about 490 lines, a quarter of it this docstring) is the protocol's: claiming,
respecting and taking over, the heartbeat, and the reasons each step is safe.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optlab._errors import TrackingError
from optlab._tracking.resume import process_alive
from optlab._tracking.retry import seconds_setting
from optlab._tracking.tracker import (
    HOST_TAG,
    PARENT_TAG,
    PID_TAG,
    ROLE_TAG,
    RUN_KEY_TAG,
    Tracker,
)

__all__ = [
    "CLAIMED",
    "CLAIM_PREFIX",
    "DEFAULT_STALE_S",
    "HEARTBEAT_TAG",
    "RELEASED",
    "STALE_ENV",
    "Holder",
    "RunClaims",
    "Taken",
    "heartbeat_every",
    "stale_after",
]

CLAIM_PREFIX = "optlab.claim."
HEARTBEAT_TAG = "optlab.heartbeat"
STALE_ENV = "OPTLAB_CLAIM_STALE_S"
DEFAULT_STALE_S = 60.0
#: most heartbeat interval (seconds); shorter when the staleness interval is short
MAX_HEARTBEAT_S = 5.0
#: rounds of claim, collide, withdraw and wait before a contested run is left to the others
MAX_ROUNDS = 12
_TAGS_PER_BATCH = 100  # MLflow's limit per log_batch call
#: a claim tag's value: ``claimed: NAME`` while in force, ``released: NAME`` after
CLAIMED, RELEASED = "claimed: ", "released: "
#: parent runs of this process's invocations whose claims are in force (a claim of this
#: process's other parent runs is stale: that invocation has ended, however it ended)
_ACTIVE: set[str] = set()
_WAIT_S = (0.05, 0.5)  # random wait after a collision (longer when the store is slow)


def stale_after(value: float | None = None) -> float:
    """The staleness interval in seconds: ``value``, else ``$OPTLAB_CLAIM_STALE_S``, else 60.

    Raises
    ------
    TrackingError
        The value is not a finite number of seconds > 0.
    """
    what = (
        "how long an invocation may go without a heartbeat before another one takes over its runs"
    )
    return seconds_setting(value, "stale_s", STALE_ENV, DEFAULT_STALE_S, positive=True, what=what)


def heartbeat_every(stale_s: float) -> float:
    """How often an invocation refreshes its heartbeat: a sixth of the staleness interval, at
    most 5 s (so a live invocation misses several beats before it is deemed stale)."""
    return min(MAX_HEARTBEAT_S, stale_s / 6.0)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Holder:
    """An invocation that holds (or held) claims: its parent run, host, process, heartbeat."""

    run_id: str
    host: str
    pid: int | None
    heartbeat: float | None = None

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}, MLflow run {self.run_id}"

    @classmethod
    def of(cls, run: Any) -> Holder:
        tags = run.data.tags
        return cls(
            run_id=str(run.info.run_id),
            host=str(tags.get(HOST_TAG, "?")),
            pid=_int(tags.get(PID_TAG)),
            heartbeat=_float(tags.get(HEARTBEAT_TAG)),
        )

    def stale(self, stale_s: float, now: float | None = None) -> str | None:
        """Why this holder's claims are stale (``None``: they are live)."""
        here = self.host == socket.gethostname()
        if here and self.pid == os.getpid() and self.run_id not in _ACTIVE:
            return "its invocation in this process has ended"
        if here and self.pid is not None and not process_alive(self.pid):
            return "its process is gone"
        if self.heartbeat is None:
            return "it has no heartbeat"
        silent = (time.time() if now is None else now) - self.heartbeat
        if silent > stale_s:
            return f"no heartbeat for {silent:.0f} s"
        return None


@dataclass(frozen=True)
class Taken:
    """A run left to another invocation: it is training it, or FINISHED it meanwhile (then
    ``finished_run`` is that run's id)."""

    holder: Holder
    finished_run: str | None = None


@dataclass
class _Snapshot:
    """The claims of the other RUNNING invocations, as one search saw them."""

    live: dict[str, Holder]  # run key -> a live invocation that claims it
    stale: dict[str, list[tuple[Holder, str]]]  # run key -> stale claimants, and why


class RunClaims:
    """The claims of one invocation; use it as a context manager around its runs.

    Parameters
    ----------
    tracker : Tracker
        The invocation's tracker (its client, retries and experiment).
    parent_run_id : str
        The invocation's parent run: claims and heartbeat are its tags.
    since : float or None
        For a plain ``optlab run``: when it started (Unix time); a run another invocation
        FINISHED after that is not trained again. ``None`` (``--resume``): any FINISHED run of
        the key counts.
    stale_s : float, optional
        The staleness interval (default :func:`stale_after`).
    log : callable(str), optional
        Receives one line per run taken over from a stale invocation.
    """

    def __init__(
        self,
        tracker: Tracker,
        parent_run_id: str,
        *,
        since: float | None,
        stale_s: float | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.tracker = tracker
        self.parent_run_id = parent_run_id
        self.since = since
        self.stale_s = stale_after(stale_s)
        self.every = heartbeat_every(self.stale_s)
        self.log = log
        self.held: dict[str, str] = {}  # run key -> name: claimed, not released
        self._released: dict[str, str] = {}  # released, written with the next write
        self._tagged: set[str] = set()  # run keys with a claim tag (deleted at the end)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ended: set[str] = set()  # stale invocations ended here
        self._random = random.Random()

    # ------------------------------------------------------------------------ heartbeat
    def __enter__(self) -> RunClaims:
        # before any claim: a claim without a fresh heartbeat would look stale
        self._call("write the heartbeat", self._client.set_tag, *self._beat())
        _ACTIVE.add(self.parent_run_id)
        self._thread = threading.Thread(target=self._beating, name="optlab-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.discard(self.parent_run_id)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        # the runs released last, and those claimed but never run (interrupted, --fail-fast):
        # released at once, in one call (deleting the tags takes a call each), then deleted
        self._released.update(self.held)
        self.held.clear()
        if self.tracker.unreachable is None:
            with contextlib.suppress(TrackingError):
                self._write({})
                self._delete_tags()

    def _delete_tags(self) -> None:
        """Delete the invocation's claim tags, then its heartbeat: the heartbeat last, since a
        claim without one would look stale; not while a beat may still be written."""
        for key in sorted(self._tagged):
            self._delete(CLAIM_PREFIX + key)
            self._tagged.discard(key)
        if self._thread is None or not self._thread.is_alive():
            self._delete(HEARTBEAT_TAG)

    def _delete(self, tag: str) -> None:
        """Delete a tag of the parent run; one already gone is fine (a retried call whose
        first attempt was committed, or a claim whose write failed)."""
        from mlflow.exceptions import MlflowException

        try:
            self._call(f"delete the tag {tag}", self._client.delete_tag, self.parent_run_id, tag)
        except TrackingError as exc:
            cause = exc.__cause__
            if not (
                isinstance(cause, MlflowException) and cause.error_code == "RESOURCE_DOES_NOT_EXIST"
            ):
                raise

    def _beat(self) -> tuple[str, str, str]:
        return self.parent_run_id, HEARTBEAT_TAG, f"{time.time():.3f}"

    def _beating(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self._client.set_tag(*self._beat())
            except Exception as exc:  # the next beat tries again; a lost store ends the invocation
                if self.tracker.out_of_room(exc, "record the runs") is not None:
                    return  # no room: the run in progress fails at its next evaluation point

    # ------------------------------------------------------------------------ plumbing
    @property
    def _client(self) -> Any:
        return self.tracker.client

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.tracker.call(what, fn, *args, **kwargs)

    def _search(self, filter_string: str) -> list[Any]:
        return self.tracker.search_runs(filter_string)

    def _write(self, runs: Mapping[str, str]) -> None:
        """Claim ``runs`` (run key -> name), and write the releases not written yet, in one
        call (``set_tag`` for one tag, else ``log_batch``: 100 tags a call)."""
        from mlflow.entities import RunTag

        released = {k: n for k, n in self._released.items() if k not in runs}
        tags = [RunTag(CLAIM_PREFIX + k, f"{RELEASED}{n[:200]}") for k, n in released.items()]
        tags += [RunTag(CLAIM_PREFIX + k, f"{CLAIMED}{n[:200]}") for k, n in runs.items()]
        self._tagged.update(runs)  # before the write: a failed one may still have committed
        if len(tags) == 1:
            what, (tag,) = "write a run's claim", tags
            self._call(what, self._client.set_tag, self.parent_run_id, tag.key, tag.value)
        elif tags:
            for start in range(0, len(tags), _TAGS_PER_BATCH):
                chunk = tags[start : start + _TAGS_PER_BATCH]
                what = "write run claims"
                self._call(what, self._client.log_batch, self.parent_run_id, tags=chunk)
        self._released.clear()
        self.held.update(runs)

    def _withdraw(self, keys: Iterable[str]) -> None:
        """Release the claims of ``keys`` now."""
        for key in keys:
            if key in self.held:
                self._released[key] = self.held.pop(key)
        self._write({})

    def _snapshot(self) -> _Snapshot:
        now = time.time()
        snapshot = _Snapshot({}, {})
        runs = self._search(f"tags.`{ROLE_TAG}` = 'invocation' and attributes.status = 'RUNNING'")
        for run in runs:
            if run.info.run_id == self.parent_run_id:
                continue
            keys = [
                k[len(CLAIM_PREFIX) :]
                for k, v in run.data.tags.items()
                if k.startswith(CLAIM_PREFIX) and v.startswith(CLAIMED)
            ]
            if not keys:
                continue
            holder = Holder.of(run)
            why = holder.stale(self.stale_s, now)
            for key in keys:
                if why is None:
                    snapshot.live.setdefault(key, holder)
                else:
                    snapshot.stale.setdefault(key, []).append((holder, why))
        return snapshot

    def _finished(self, keys: list[str], since: float | None) -> dict[str, Taken]:
        """Keys among ``keys`` that another invocation FINISHED (after ``since``, if given)."""
        since_ms = None if since is None else int(since * 1000.0)
        recent = "" if since_ms is None else f" and attributes.end_time >= {since_ms}"
        if len(keys) <= 2:  # a few runs at most (a plain run trains the same keys again)
            runs = [
                run
                for key in keys
                for run in self._call(
                    "search runs",
                    self._client.search_runs,
                    [self.tracker.experiment_id],
                    filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}' and "
                    f"attributes.status = 'FINISHED'{recent}",
                    max_results=10,
                )
            ]
        else:
            runs = self._search(
                f"tags.`{ROLE_TAG}` = 'run' and attributes.status = 'FINISHED'{recent}"
            )
        wanted = set(keys)
        found: dict[str, Taken] = {}
        for run in runs:
            tags = run.data.tags
            key = tags.get(RUN_KEY_TAG)
            if key not in wanted or tags.get(ROLE_TAG) != "run" or key in found:
                continue
            parent = tags.get(PARENT_TAG, "")
            if parent == self.parent_run_id:
                continue
            if since_ms is not None and (run.info.end_time or 0) < since_ms:
                continue  # finished before this (plain) invocation started: trained again
            holder = Holder(parent, str(tags.get(HOST_TAG, "?")), _int(tags.get(PID_TAG)))
            found[key] = Taken(holder, finished_run=str(run.info.run_id))
        return found

    def _take_over(self, key: str, name: str, stale: list[tuple[Holder, str]]) -> None:
        """End what stale invocations left of run ``key``: their RUNNING run of that key and
        their parent run, as KILLED."""
        for holder, why in stale:
            if self.log is not None:
                self.log(f"{name}: taken over from an invocation that stopped ({holder}; {why})")
            if holder.host == socket.gethostname() and holder.pid == os.getpid():
                continue  # this process's runs are never ended here (as by mark_stale_running)
            reason = (
                f"taken over by invocation {self.parent_run_id} (pid {os.getpid()} on "
                f"{socket.gethostname()}): {why}"
            )
            left = self._search(
                f"tags.`{RUN_KEY_TAG}` = '{key}' and tags.`{PARENT_TAG}` = '{holder.run_id}' "
                "and attributes.status = 'RUNNING'"
            )
            for run in left:
                self.tracker.end_run(run.info.run_id, "KILLED", reason, "end a stale run")
            if holder.run_id not in self._ended:
                self._ended.add(holder.run_id)
                self.tracker.end_run(holder.run_id, "KILLED", reason, "end a stale invocation")

    # ------------------------------------------------------------------------ the protocol
    def acquire(self, runs: Mapping[str, str]) -> dict[str, Taken]:
        """Claim the runs ``runs`` (run key -> run name) for this invocation.

        Returns the runs it must not train, each with the invocation that has it (training it
        now, or FINISHED meanwhile); every other run of ``runs`` is now this invocation's, until
        :meth:`release`.
        """
        pending = dict(runs)
        taken: dict[str, Taken] = {}
        seen: dict[str, Holder] = {}
        for _ in range(MAX_ROUNDS):
            started = time.monotonic()
            self._write(pending)
            snapshot = self._snapshot()
            round_trip = time.monotonic() - started
            contested = [key for key in pending if key in snapshot.live]
            seen.update({key: snapshot.live[key] for key in contested})
            won = [key for key in pending if key not in snapshot.live]
            done = self._finished(won, self.since) if won else {}
            taken.update(done)
            self._withdraw(done)
            for key in won:
                if key not in done and key in snapshot.stale:
                    self._take_over(key, pending[key], snapshot.stale[key])
            if not contested:
                return taken
            # both sides may have seen each other: withdraw, wait a little, look again
            self._withdraw(contested)
            low, high = _WAIT_S
            time.sleep(self._random.uniform(low, max(high, 5 * round_trip)))
            again = self._snapshot()
            pending = {key: pending[key] for key in contested if key not in again.live}
            taken.update({key: Taken(again.live[key]) for key in contested if key in again.live})
            if not pending:
                return taken
        taken.update({key: Taken(seen[key]) for key in pending})
        return taken

    def release(self, key: str, *, later: bool = False) -> None:
        """Release the claim of run ``key``, once the run's end is recorded (another invocation
        may then train it again if it did not finish). With ``later``, the release is written
        with the next claim (one call for both: ``optlab run`` claims the next run at once)
        or when the invocation ends. A store that cannot be written any more is ignored here
        (the invocation's parent run ends anyway, and its claims with it)."""
        if key not in self.held:
            return
        self._released[key] = self.held.pop(key)
        if not later:
            with contextlib.suppress(TrackingError):
                self._write({})

    def finished_elsewhere(self, keys: Iterable[str]) -> dict[str, str]:
        """Run key -> id of a FINISHED run of that key made by another invocation (any time):
        for runs left to others, once they are done."""
        found = self._finished(list(keys), None)
        return {key: str(t.finished_run) for key, t in found.items()}
