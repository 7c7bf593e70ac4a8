"""The services a MITM dispatches to, and the replay state they share.

A service is a name and a list of hosts. ``BaseService`` entries (INSPIRE-MITMProxy's name for a
recorded service) replay from the active scenario or record; ``WhitelistService`` entries
always pass through. The management service answers on ``mitm-manager.local``. The dispatcher
asks them in order; the first whose hosts include the request's host handles it.
Rule kept here: replay counts and the active scenario change together, under one lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import ScenarioError
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
    names = [service.name for service in services]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"service names must be unique; repeated: {', '.join(duplicates)}")
    return services


def load_services_file(root: Path) -> list[Service] | None:
    """The services listed in ``services.yaml`` at the root of the scenarios, if there is one."""
    path = root / "services.yaml"
    if not path.is_file():
        return None
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        return parse_services(document)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ScenarioError(f"{where}: not valid YAML: {exc}") from exc
    except (OSError, ValueError) as exc:
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


class ReplayState:
    """The active scenario, recording, the config dict and replay counts, behind one lock."""

    def __init__(self, active_scenario: str, recording: bool) -> None:
        self.lock = threading.RLock()
        self.config: dict[str, Any] = {"active_scenario": check_name(active_scenario, "scenario")}
        self.recording = recording
        self._counts: dict[tuple[str, str, str], int] = {}

    @property
    def active_scenario(self) -> str:
        with self.lock:
            return str(self.config["active_scenario"])

    def replace_config(self, config: Mapping[str, Any]) -> None:
        """Set the whole config; changing the scenario resets the replay counts."""
        scenario = config.get("active_scenario")
        check_name(scenario, "active_scenario")  # type: ignore[arg-type]
        with self.lock:
            self.config = dict(config)
            self._counts.clear()

    def merge_config(self, update: Mapping[str, Any]) -> None:
        with self.lock:
            merged = {**self.config, **update}
        self.replace_config(merged)

    def set_recording(self, enable: bool) -> None:
        with self.lock:
            self.recording = enable
            self._counts.clear()

    def replays(self, service: str, interaction: str) -> int:
        with self.lock:
            return self._counts.get((self.active_scenario, service, interaction), 0)

    def count_replay(self, service: str, interaction: str) -> None:
        with self.lock:
            key = (self.active_scenario, service, interaction)
            self._counts[key] = self._counts.get(key, 0) + 1
