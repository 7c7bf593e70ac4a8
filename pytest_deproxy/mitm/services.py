"""The services a MITM dispatches to, and the table that holds them.

A service is a name and a list of hosts. ``BaseService`` entries (INSPIRE-MITMProxy's name for a
recorded service) replay from the active scenario or record; ``WhitelistService`` entries
always pass through. The management service answers on ``mitm-manager.local``. The dispatcher
asks them in order; the first whose hosts include the request's host handles it.

Rules kept here: the list of services is a :class:`ServiceTable`, changed only whole and under
its own lock, so that changes made at once from many connections (``PUT /services``) all take
effect; ``services.yaml`` is untrusted input, read with :mod:`.safe_yaml`'s limits.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ScenarioError
from .safe_yaml import YamlProblem, read_yaml
from .scenarios import check_name

MANAGEMENT_HOST = "mitm-manager.local"
RECORDED = "BaseService"
WHITELIST = "WhitelistService"
MANAGEMENT = "ManagementService"
SERVICE_TYPES = {RECORDED: RECORDED, "RecordedService": RECORDED, WHITELIST: WHITELIST}
WHITELIST_ENV = "MITM_PROXY_WHITELIST"


@dataclass(frozen=True)
class Service:
    type: str
    name: str
    hosts: tuple[str, ...]

    @property
    def is_whitelist(self) -> bool:
        return self.type == WHITELIST

    def handles(self, host: str) -> bool:
        return host.lower() in self.hosts

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "hosts_list": list(self.hosts)}


MANAGEMENT_SERVICE = Service(MANAGEMENT, MANAGEMENT, (MANAGEMENT_HOST,))


def parse_services(entries: Any) -> list[Service]:
    """Services from INSPIRE-MITMProxy's shape: ``[{"type", "name", "hosts_list"}, ...]``.

    Raises ``ValueError`` saying which entry is wrong and how.
    """
    if isinstance(entries, Mapping) and "services" in entries:
        entries = entries["services"]
    if not isinstance(entries, list):
        raise ValueError('services must be a list of {"type", "name", "hosts_list"} objects')
    services = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, Mapping):
            raise ValueError(f"service #{number} must be an object, got {entry!r}")
        kind = entry.get("type", RECORDED)
        if kind == MANAGEMENT:
            continue  # always present, always first
        if not isinstance(kind, str) or kind not in SERVICE_TYPES:
            raise ValueError(
                f"service #{number} has unknown type {kind!r}; use one of "
                f"{', '.join(sorted(SERVICE_TYPES))}"
            )
        name = check_name(entry.get("name"), f"service #{number} name")  # type: ignore[arg-type]
        hosts = entry.get("hosts_list")
        if not isinstance(hosts, list) or not all(isinstance(h, str) and h for h in hosts):
            raise ValueError(f"service {name!r} needs hosts_list, a list of host names")
        services.append(Service(SERVICE_TYPES[kind], name, tuple(h.lower() for h in hosts)))
    return _unique(services)


def load_services_file(root: Path) -> list[Service] | None:
    """The services listed in ``services.yaml`` at the root of the scenarios, if there is one."""
    path = root / "services.yaml"
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from exc
    try:
        return parse_services(read_yaml(text))
    except ValueError as exc:
        problem = exc.__cause__
        if isinstance(problem, YamlProblem):  # read_yaml says where; name the file there
            where = f"{path}:{problem.line}" if problem.line else str(path)
            raise ScenarioError(f"{where}: {problem}") from exc
        raise ScenarioError(f"{path}: {exc}") from exc


def apply_whitelist(
    services: Sequence[Service], whitelist: Iterable[str] | None, environ: Mapping[str, str]
) -> list[Service]:
    """Replace the whitelist's hosts: ``$MITM_PROXY_WHITELIST`` first, then ``whitelist``."""
    hosts: Iterable[str] | None = whitelist
    if environ.get(WHITELIST_ENV) is not None:
        hosts = environ[WHITELIST_ENV].split()
    if hosts is None:
        return list(services)
    replaced = Service(WHITELIST, WHITELIST, tuple(h.lower() for h in hosts))
    kept = [replaced if s.is_whitelist else s for s in services]
    if not any(s.is_whitelist for s in services):
        kept.append(replaced)
    return kept


class ServiceTable:
    """The services a MITM dispatches to (the management service aside), behind a lock.

    Readers get a snapshot; every change is one step under the lock, so a merge never works
    from a list another change has replaced meanwhile.
    """

    def __init__(self, services: Iterable[Service]) -> None:
        self._lock = threading.Lock()
        self._services = tuple(_unique(list(services)))

    def snapshot(self) -> list[Service]:
        with self._lock:
            return list(self._services)

    def current(self) -> tuple[Service, ...]:
        """The services now, for a request to be dispatched by: a tuple that no change alters
        (a change puts a new one in its place, in one step)."""
        return self._services

    def replace(self, services: Iterable[Service]) -> None:
        """Dispatch to ``services`` from now on (``POST /services``)."""
        replacement = tuple(_unique(list(services)))
        with self._lock:
            self._services = replacement

    def merge(self, services: Iterable[Service]) -> None:
        """Replace the services of the same names in place, add the others at the end
        (``PUT /services``)."""
        by_name = {service.name: service for service in _unique(list(services))}
        with self._lock:
            merged = [by_name.pop(service.name, service) for service in self._services]
            self._services = (*merged, *by_name.values())


def _unique(services: list[Service]) -> list[Service]:
    for service in services:
        if not isinstance(service, Service):
            raise TypeError(f"services are Service objects, not {type(service).__name__}")
    counts = Counter(service.name for service in services)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"service names must be unique; repeated: {', '.join(duplicates)}")
    return services
