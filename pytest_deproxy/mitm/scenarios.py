"""Scenario directories: names, and the store that loads and indexes their interactions.

Layout: ``<scenarios_path>/<scenario>/<Service>/<interaction>.yaml``, one interaction per file
(read by :mod:`.interactions`). Rules kept here: a scenario or service name is one plain,
portable path component (:func:`check_name`), so no name reaches outside the scenarios
directory; a service's interactions are tried in INSPIRE-MITMProxy's order, its file names
sorted plainly (``sorted()``: ``robotupload.yaml`` before ``robotupload2.yaml``, and
``interaction_10`` before ``interaction_2``), so a directory written for the original
replays the same here; a lookup never reads the disk unless a file changed, its cost does
not grow with the number of files (an index by method and URL picks the candidates, and
the check for files edited in place is paced: see :meth:`ServiceInteractions.is_stale`),
and a file broken by an edit keeps failing loudly rather than falling back to what it said
before. A
top-level key a file holds that the format does not know is logged and listed in
:attr:`ScenarioStore.warnings`, once per file and key.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..redaction import holds_marker
from .interactions import TOP_LEVEL_KEYS, Interaction, load_interaction

log = logging.getLogger("pytest_deproxy.mitm")

# Files edited in place are all checked once a second (see ServiceInteractions.is_stale),
# at most MAX_CHECKS_PER_SECOND of them each second: a scenario of more files than that is
# checked once in files / MAX_CHECKS_PER_SECOND seconds, so that a lookup's cost does not
# grow with the number of files.
FULL_RESCAN_SECONDS = 1.0
MAX_CHECKS_PER_SECOND = 1000
# NAME_MAX is 255 bytes on common file systems; half of it leaves room for the temporary
# names recording uses and for paths built from the name.
MAX_NAME_LENGTH = 128

_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.@+ -]*[A-Za-z0-9_.@+-])?")


def check_name(name: str, what: str) -> str:
    """A scenario or service name that is one plain, portable path component.

    1 to 128 ASCII letters, digits, spaces and ``_ . @ + -``; it starts with a letter or a
    digit and does not end with a space (``a scenario`` is fine; ``..``, ``a/b``, a newline
    or NUL are not).
    """
    if (
        not isinstance(name, str)
        or len(name) > MAX_NAME_LENGTH
        or not _NAME.fullmatch(name)
        or ".." in name
    ):
        raise ValueError(
            f"{what} {name!r} is not allowed: use 1 to {MAX_NAME_LENGTH} ASCII letters, digits, "
            "spaces and _ . @ + -, starting with a letter or digit and not ending with a space"
        )
    return name


def natural_key(name: str) -> list[Any]:
    """``interaction_10`` as ``["interaction_", 10, ""]``: for finding the highest number
    taken. (Files are *tried* in plain sorted order, as INSPIRE-MITMProxy tries them.)"""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


@dataclass
class ServiceInteractions:
    """The interactions of one service in one scenario, in sorted file order, indexed."""

    directory: Path
    interactions: list[Interaction]
    by_method_url: dict[tuple[str, str], list[Interaction]]
    scanned: list[Interaction]  # those the index cannot narrow down (no exact url or method,
    # or a redacted query parameter that matches any value)
    positions: dict[int, int]  # id(interaction) -> its place in file order, for merging
    directory_mtime: int  # nanoseconds, as os.stat gives them
    files: list[tuple[str, int]]  # each file and its mtime when loaded
    checked_at: float  # up to when the files were checked (see is_stale)
    cursor: int = 0  # the file the next check begins with

    @classmethod
    def load(cls, directory: Path) -> ServiceInteractions:
        files = (
            sorted(
                (p for p in directory.iterdir() if p.suffix == ".yaml" and p.is_file()),
                key=lambda p: p.name,
            )
            if directory.is_dir()
            else []
        )
        interactions = [load_interaction(path) for path in files]
        by_method_url: dict[tuple[str, str], list[Interaction]] = {}
        scanned = []
        for interaction in interactions:
            indexable = "url" in interaction.exact and "method" in interaction.exact
            if indexable and not holds_marker(interaction.request.url):
                key = (interaction.request.method, interaction.request.url)
                by_method_url.setdefault(key, []).append(interaction)
            else:
                scanned.append(interaction)
        return cls(
            directory,
            interactions,
            by_method_url,
            scanned,
            {id(interaction): n for n, interaction in enumerate(interactions)},
            _mtime(str(directory)),
            [(str(path), _mtime(str(path))) for path in files],
            time.monotonic(),
        )

    def candidates(self, method: str, url: str) -> list[Interaction]:
        """The interactions that could match, in file order."""
        indexed = self.by_method_url.get((method, url), [])
        if not self.scanned:
            return indexed
        return sorted([*indexed, *self.scanned], key=lambda i: self.positions[id(i)])

    def is_stale(self) -> bool:
        """Whether a file was added, removed or changed since loading.

        The directory is checked on every call (renames and new files show there at once).
        Files edited in place are checked at a pace: each call checks the share of them due
        since the last check, so that every file is checked once in each
        ``FULL_RESCAN_SECONDS`` (or, for more than ``MAX_CHECKS_PER_SECOND`` files, once in
        files / ``MAX_CHECKS_PER_SECOND`` seconds) while calls come, and a call after a quiet
        spell that long checks them all. An edit is seen within about a second (10 s for
        10,000 files), and a lookup costs a ``stat`` or two whatever the number of files,
        instead of a pass over all of them now and then.
        """
        if _mtime(self.directory_name) != self.directory_mtime:
            return True
        files = self.files
        count = len(files)
        if not count:
            return False
        now = time.monotonic()
        elapsed = now - self.checked_at
        period = max(FULL_RESCAN_SECONDS, count / MAX_CHECKS_PER_SECOND)
        if elapsed >= period:
            due, self.checked_at = count, now
        else:
            due = int(count * elapsed / period)
            if not due:
                return False
            self.checked_at += due * period / count  # the rest is due later
        start = self.cursor
        for step in range(due):
            path, mtime = files[(start + step) % count]
            if _mtime(path) != mtime:
                return True
        self.cursor = (start + due) % count
        return False

    @functools.cached_property
    def directory_name(self) -> str:
        return str(self.directory)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1


class ScenarioStore:
    """Every scenario under one directory, loaded on first use and reloaded when files change.

    Its lock guards the cache of loaded services and the warnings, and is held while a
    changed service is read again from disk: two requests never load the same files twice at
    once. No other lock is held while it is (the replay state is consulted only after a
    lookup returns).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], ServiceInteractions] = {}
        self._warned: set[tuple[Path, str]] = set()
        self._warnings: list[str] = []

    @property
    def warnings(self) -> list[str]:
        """What loading noticed and let pass (unknown top-level keys), once per file and key."""
        with self._lock:
            return list(self._warnings)

    def service(self, scenario: str, service: str) -> ServiceInteractions:
        key = (scenario, service)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:  # names in the cache were checked when they were put there
                check_name(scenario, "scenario")
                check_name(service, "service")
            if cached is None or cached.is_stale():
                # Forget the old copy first: a file broken by an edit must keep failing
                # loudly, not fall back to what it said before.
                self._cache.pop(key, None)
                cached = ServiceInteractions.load(self.root / scenario / service)
                self._cache[key] = cached
                self._warn_about(cached.interactions)
            return cached

    def _warn_about(self, interactions: list[Interaction]) -> None:
        """Log and keep a warning for each unknown key not warned about yet (lock held)."""
        for interaction in interactions:
            for name, line in interaction.ignored:
                if (interaction.path, name) in self._warned:
                    continue
                self._warned.add((interaction.path, name))
                where = f"{interaction.path}:{line}" if line else str(interaction.path)
                message = (
                    f"{where}: unknown top-level key {name!r} ignored, as INSPIRE-MITMProxy "
                    f"ignores it (known: {', '.join(sorted(TOP_LEVEL_KEYS))})"
                )
                log.warning("%s", message)
                self._warnings.append(message)

    def tree(self) -> dict[str, dict[str, dict[str, list[str]]]]:
        """``{scenario: {"responses": {service: [file names]}}}``, INSPIRE-MITMProxy's shape."""
        if not self.root.is_dir():
            return {}
        tree = {}
        for scenario in sorted(p for p in self.root.iterdir() if p.is_dir()):
            tree[scenario.name] = {
                "responses": {
                    service.name: sorted(
                        f.name for f in service.iterdir() if f.suffix == ".yaml" and f.is_file()
                    )
                    for service in sorted(s for s in scenario.iterdir() if s.is_dir())
                }
            }
        return tree
