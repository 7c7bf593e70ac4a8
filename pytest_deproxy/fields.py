"""Header fields: :class:`Headers`, the ordered, multi-valued, case-insensitive list of
fields every message carries.

Rule kept here: names and values are ``str``; bytes from the wire are decoded as ISO-8859-1,
so that every byte survives the round trip; wire order and the sender's spelling of names
are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

TRACKING_HEADER = "Deproxy-Request-ID"
TRACKING_KEY = TRACKING_HEADER.lower()  # as names are compared: lowered


def _as_header_text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("iso-8859-1")
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"header {what} must be str, bytes or int, not {type(value).__name__}")


class Headers:
    """Ordered, multi-valued HTTP headers with case-insensitive lookup.

    Wire order and the caller's spelling of names are kept::

        >>> h = Headers([("Via", "1.1 a"), ("via", "1.1 b")])
        >>> h["VIA"], h.get_all("via"), len(h)
        ('1.1 a', ['1.1 a', '1.1 b'], 2)
    """

    # Tuples, replaced whole on change, not lists: a tuple of str is invisible to the cyclic
    # garbage collector once it has looked at it, and a copy shares them, so a recorded
    # message costs the collector one object for its headers, not three.
    __slots__ = ("_items", "_keys")

    def __init__(self, items: HeaderItems = None) -> None:
        self._items: tuple[tuple[str, str], ...] = ()
        self._keys: tuple[str, ...] = ()  # the names lowered, in step with _items for lookups
        if items is None:
            return
        if isinstance(items, Headers):
            self._items, self._keys = items._items, items._keys
            return
        pairs = items.items() if isinstance(items, Mapping) else items
        made: list[tuple[str, str]] = []
        for pair in pairs:
            try:
                name, value = pair
            except (TypeError, ValueError):
                raise TypeError(
                    f"headers must be a mapping or (name, value) pairs; got item {pair!r}"
                ) from None
            made.append((_as_header_text(name, "name"), _as_header_text(value, "value")))
        self._replace(made)

    @classmethod
    def from_wire(
        cls, pairs: Sequence[tuple[str, str]], keys: Sequence[str] | None = None
    ) -> Headers:
        """Headers already decoded from the wire: str pairs (and their lowercased names, when
        the parser has them), nothing left to check."""
        headers = object.__new__(cls)
        headers._items = tuple(pairs)
        headers._keys = tuple(name.lower() for name, _ in pairs) if keys is None else tuple(keys)
        return headers

    @classmethod
    def from_head(cls, raw_head: bytes) -> Headers:
        """The header fields of a message head as it arrived (start line first, blank line
        last), read as ``heads`` reads them: a name up to the first colon, and its value
        with surrounding spaces and tabs removed."""
        items: list[tuple[str, str]] = []
        keys: list[str] = []
        for line in raw_head.decode("iso-8859-1").split("\r\n")[1:-2]:
            name, _, value = line.partition(":")
            items.append((name, value.strip(" \t")))
            keys.append(name.lower())
        headers = object.__new__(cls)
        headers._items, headers._keys = tuple(items), tuple(keys)
        return headers

    def _append(self, name: str, value: str) -> None:
        """Append a header this package made itself: both already ``str``, nothing to coerce."""
        self._items += ((name, value),)
        self._keys += (name.lower(),)

    def add(self, name: str, value: str) -> None:
        """Append one header at the end, keeping any others of the same name."""
        name = _as_header_text(name, "name")
        self._items += ((name, _as_header_text(value, "value")),)
        self._keys += (name.lower(),)

    def set(self, name: str, value: str) -> None:
        """Replace every header called ``name`` with one, at the first one's place."""
        name = _as_header_text(name, "name")
        value = _as_header_text(value, "value")
        lowered = name.lower()
        kept: list[tuple[str, str]] = []
        placed = False
        for item in self._items:
            if item[0].lower() != lowered:
                kept.append(item)
            elif not placed:
                kept.append((name, value))
                placed = True
        if not placed:
            kept.append((name, value))
        self._replace(kept)

    def _replace(self, items: list[tuple[str, str]]) -> None:
        self._items = tuple(items)
        self._keys = tuple([name.lower() for name, _ in items])

    def delete_all(self, name: str) -> None:
        """Remove every header called ``name`` (no error when there is none)."""
        lowered = name.lower()
        if lowered in self._keys:
            self._replace([item for item in self._items if item[0].lower() != lowered])

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lowered = name.lower()
        if lowered not in self._keys:  # checked first: a raised ValueError costs more than a scan
            return default
        return self._items[self._keys.index(lowered)][1]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in wire order."""
        lowered = name.lower()
        if lowered not in self._keys:
            return []
        pairs = zip(self._keys, self._items, strict=True)
        return [item[1] for key, item in pairs if key == lowered]

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in wire order, duplicates included."""
        return list(self._items)

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (``Connection``, say) lists ``token``."""
        if name.lower() not in self._keys:
            return False
        token = token.lower()
        return any(
            part.strip().lower() == token
            for value in self.get_all(name)
            for part in value.split(",")
        )

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._keys

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


HeaderItems = Headers | Mapping[str, str] | Iterable[tuple[str, str]] | None
