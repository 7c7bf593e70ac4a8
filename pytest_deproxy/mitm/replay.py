"""The replay state, and the replay step: which recorded interaction answers, counted.

The state is the config dict (``active_scenario`` in it), the recording switch, the replay
counts, and the misses (requests nothing answered, with the reasons). Rules kept here:

- One lock per piece of state. ``_settings_lock`` guards the config and the recording switch
  (read together as one :class:`Settings`); ``_counts_lock`` guards the replay counts;
  ``_misses_lock`` the list of misses. No two are ever held at once.
- No lock here is held while YAML is read from disk: the caller looks the service up in the
  :class:`~.scenarios.ScenarioStore` first, with none of these held. Matching is pure and runs
  outside every lock; the counts lock covers only reading a count and adding one, so two
  requests at once never both take the last replay of an interaction.
- Every change of settings (``merge_config`` and ``replace_config``, ``set_recording``) is
  one step under the settings lock, and starts a new *round*: counts start again from zero,
  and a request still in flight from the round before is not counted in the new one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import forwarding
from ..models import Headers, Response
from .bodies import encoded_body
from .interactions import Interaction
from .matching import IncomingRequest, decide, differences, explain, used_up
from .scenarios import ServiceInteractions, check_name


@dataclass(frozen=True)
class Settings:
    """What a request is answered under: the scenario, recording or not, and the round."""

    scenario: str
    recording: bool
    round: int


@dataclass(frozen=True)
class Miss:
    """A request no recorded interaction answered, and why (``explanation``)."""

    service: str
    scenario: str
    request: IncomingRequest
    explanation: str


class ReplayState:
    """The active scenario, recording, the config dict, replay counts and misses."""

    def __init__(self, active_scenario: str, recording: bool) -> None:
        if not isinstance(recording, bool):
            raise TypeError(f"record takes True or False, not {recording!r}")
        self._settings_lock = threading.Lock()
        self._config: dict[str, Any] = {"active_scenario": check_name(active_scenario, "scenario")}
        self._recording = recording
        self._round = 0
        self._settings = self._made_settings()  # made again at each change, read by requests
        self._counts_lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}  # (service, interaction) -> replays
        self._counted_round = 0  # the round `_counts` belongs to
        self._misses_lock = threading.Lock()
        self._misses: list[Miss] = []

    # -- settings --------------------------------------------------------------------------

    def settings(self) -> Settings:
        with self._settings_lock:
            return self._settings

    def _made_settings(self) -> Settings:
        """The settings as they are now (under ``_settings_lock``, or before any thread)."""
        return Settings(str(self._config["active_scenario"]), self._recording, self._round)

    @property
    def config(self) -> dict[str, Any]:
        with self._settings_lock:
            return dict(self._config)

    def replace_config(self, config: Mapping[str, Any]) -> None:
        """Set the whole config (it must name a valid ``active_scenario``); counts restart."""
        if not isinstance(config, Mapping):
            raise TypeError(f"the config is a mapping, not {type(config).__name__}")
        replacement = dict(config)
        check_name(replacement.get("active_scenario"), "active_scenario")  # type: ignore[arg-type]
        with self._settings_lock:
            self._config = replacement
            self._round += 1
            self._settings = self._made_settings()

    def merge_config(self, update: Mapping[str, Any]) -> None:
        """Add ``update``'s keys to the config, in one step; counts restart."""
        if not isinstance(update, Mapping):
            raise TypeError(f"a config update is a mapping, not {type(update).__name__}")
        with self._settings_lock:
            merged = {**self._config, **update}
            check_name(merged.get("active_scenario"), "active_scenario")  # type: ignore[arg-type]
            self._config = merged
            self._round += 1
            self._settings = self._made_settings()

    def set_recording(self, enable: bool) -> None:
        """Switch recording on or off; counts restart."""
        if not isinstance(enable, bool):
            raise TypeError(f"set_recording takes True or False, not {enable!r}")
        with self._settings_lock:
            self._recording = enable
            self._round += 1
            self._settings = self._made_settings()

    # -- counts ----------------------------------------------------------------------------

    def _counts_of(self, round_: int) -> dict[tuple[str, str], int] | None:
        """The counts of ``round_`` (None: a round gone by); under ``_counts_lock``."""
        if round_ > self._counted_round:
            self._counts = {}
            self._counted_round = round_
        return self._counts if round_ == self._counted_round else None

    def replays(self, service: str) -> dict[str, int]:
        """How often each interaction of ``service`` was replayed in this round."""
        round_ = self.settings().round
        with self._counts_lock:
            counts = self._counts_of(round_) or {}
            return {name: n for (owner, name), n in counts.items() if owner == service}

    def choose(
        self,
        settings: Settings,
        service: str,
        request: IncomingRequest,
        recorded: ServiceInteractions,
    ) -> Interaction | None:
        """The first interaction that matches ``request`` and is not used up, counted as
        replayed; None if there is none."""
        candidates = recorded.candidates(request.method, request.url)
        matches = [i for i in candidates if not differences(i, request)]  # pure: no lock
        if not matches:
            return None
        with self._counts_lock:
            counts = self._counts_of(settings.round)
            if counts is None:  # the settings changed while this request was matched
                counts = {}
            for interaction in matches:
                key = (service, interaction.name)
                replays = counts.get(key, 0)
                if not used_up(interaction, replays):
                    counts[key] = replays + 1
                    return interaction
        return None

    # -- misses ----------------------------------------------------------------------------

    def miss(
        self,
        settings: Settings,
        service: str,
        request: IncomingRequest,
        recorded: ServiceInteractions,
    ) -> Miss:
        """Note that nothing answered ``request``, with the nearest interactions and why."""
        with self._counts_lock:
            counts = dict(self._counts_of(settings.round) or {})
        nearest = decide(request, recorded.interactions, lambda i: counts.get((service, i.name), 0))
        where = f"service {service!r} in scenario {settings.scenario!r}"
        miss = Miss(service, settings.scenario, request, explain(request, nearest, where))
        with self._misses_lock:
            self._misses.append(miss)
        return miss

    @property
    def misses(self) -> list[Miss]:
        with self._misses_lock:
            return list(self._misses)


def replayed_response(interaction: Interaction, method: str = "GET") -> Response:
    """The recorded response as it is sent again, to a ``method`` request: its body encoded as
    its headers say, and framed anew (hop-by-hop and length headers go: recorded lengths are
    sometimes wrong). A response that carries no body (to HEAD, or a 304) keeps its recorded
    Content-Length: there it is the size of what a GET would get, and clients read it.

    Made once per interaction (and per HEAD or not) and then the same Response each time,
    never changed, as a canned answer is: encoding (gzip too) and filtering headers are not
    done again for every replay, and the endpoint sends the last answer it made again
    without making its head anew."""
    bodiless = method.upper() == "HEAD"
    made = interaction.replayed.get(bodiless)
    if made is None:
        recorded = interaction.response
        made = Response(
            recorded.code,
            recorded.message,
            keep_length(
                recorded.headers, forwarding.end_to_end(recorded.headers), method, recorded.code
            ),
            encoded_body(recorded.body, recorded.headers),
        )
        interaction.replayed[bodiless] = made  # two threads may both make it: either is right
    return made


def keep_length(original: Headers, forwarded: Headers, method: str, code: int) -> Headers:
    """``forwarded`` (end-to-end headers), with ``original``'s Content-Length put back when the
    response carries no body: the answer to a HEAD, or a 304."""
    if method.upper() == "HEAD" or code == 304:
        for value in original.get_all("Content-Length"):
            forwarded.add("Content-Length", value)
    return forwarded
