"""The holds of open tasks, per key, as admission counts them.

A task's hold outlives the call that submitted it, and the process: the tasks table keeps
it while the task is open (``store.tasks``). Each process keeps this copy, filled from the
table at start and read again for a key whenever the change feed says its tasks changed
(``key_tasks``); admission counts it beside the counters' own holds
(``Seeds.task_held_nano``), and the stream reconciler never sees it.

While its submit runs, a task is "covered": the counters hold its money for the call, so
it is left out here, and a read of the table that already sees the new row cannot count it
twice. Changes made here are journaled, and a read that began before a change is corrected
by it, so a read never undoes what it did not see.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable

JOURNAL = 100_000
"""Local changes remembered for reads in flight; a read takes milliseconds."""

Hold = tuple[int, str, int]
"""``(key_id, task_id, hold_nano)``."""


class TaskHolds:
    def __init__(self) -> None:
        self._holds: dict[int, dict[str, int]] = {}
        self._held: dict[int, int] = {}
        self._covered: set[str] = set()
        self._clock = 0
        self._journal: deque[tuple[int, int, str, int | None]] = deque(maxlen=JOURNAL)

    def held(self, key_id: int) -> int:
        """What the key's open tasks hold, covered ones left out."""
        return self._held.get(key_id, 0)

    def tasks(self, key_id: int) -> dict[str, int]:
        return dict(self._holds.get(key_id, {}))

    def mark(self) -> int:
        """Call before reading the table; pass the mark to :meth:`replace`."""
        return self._clock

    def cover(self, key_id: int, task_id: str) -> None:
        """A submit's counters hold this task's money for now."""
        if task_id not in self._covered:
            self._covered.add(task_id)
            self._held[key_id] = self.held(key_id) - self._holds.get(key_id, {}).get(task_id, 0)

    def uncover(self, key_id: int, task_id: str) -> None:
        """The counters let go of the submit's hold: the task's hold counts from here."""
        if task_id in self._covered:
            self._covered.discard(task_id)
            self._held[key_id] = self.held(key_id) + self._holds.get(key_id, {}).get(task_id, 0)

    def add(self, key_id: int, task_id: str, hold_nano: int) -> None:
        self._change(key_id, task_id, hold_nano)

    def remove(self, key_id: int, task_id: str) -> None:
        """The task ended (or never started): its hold is gone."""
        self._change(key_id, task_id, None)
        self._covered.discard(task_id)

    def replace(self, holds: Iterable[Hold], key_ids: Collection[int] | None, since: int) -> None:
        """What the table holds for ``key_ids`` (None: every key), read after ``since``."""
        fresh: dict[int, dict[str, int]] = {key_id: {} for key_id in key_ids or ()}
        for key_id, task_id, hold in holds:
            fresh.setdefault(key_id, {})[task_id] = hold
        if key_ids is None:
            fresh.update({key_id: {} for key_id in self._holds if key_id not in fresh})
        for seq, key_id, task_id, change in self._journal:
            if seq > since and key_id in fresh:
                _put(fresh[key_id], task_id, change)
        for key_id, tasks in fresh.items():
            if tasks:
                self._holds[key_id] = tasks
            else:
                self._holds.pop(key_id, None)
            self._total(key_id)

    def _change(self, key_id: int, task_id: str, hold: int | None) -> None:
        self._clock += 1
        self._journal.append((self._clock, key_id, task_id, hold))
        tasks = self._holds.setdefault(key_id, {})
        counted = task_id not in self._covered
        delta = -tasks.get(task_id, 0) if counted else 0
        _put(tasks, task_id, hold)
        if counted and hold is not None:
            delta += hold
        if not tasks:
            del self._holds[key_id]
        self._held[key_id] = self.held(key_id) + delta

    def _total(self, key_id: int) -> None:
        tasks = self._holds.get(key_id, {})
        total = sum(hold for task_id, hold in tasks.items() if task_id not in self._covered)
        if total:
            self._held[key_id] = total
        else:
            self._held.pop(key_id, None)


def _put(tasks: dict[str, int], task_id: str, hold: int | None) -> None:
    if hold is None:
        tasks.pop(task_id, None)
    else:
        tasks[task_id] = hold
