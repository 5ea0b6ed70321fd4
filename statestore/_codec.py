"""Records <-> JSON bytes.

Encoding is ``orjson.dumps`` of the record's document: compact, UTF-8, keys
in the order Docker prints them.  Decoding never trusts Redis:

* a value longer than the store's size cap is refused before parsing;
* JSON nesting deeper than orjson's limit (1024 levels) is refused by orjson;
* the top level must be an object whose ``Id``/``ID`` is a 64-hex ID equal to
  the one in the key;
* ``StateStore.Schema`` selects the upgrade path: older schemas are upgraded
  on read, in memory (the stored bytes change only when the record is next
  committed), newer ones raise :class:`SchemaVersionError`.

Schema history (see docs/schema.md):

* 0 -- a bare ``docker inspect`` document with no ``StateStore`` block (what
  an operator imports from an existing Docker host, or an older tool wrote).
  Upgraded to 1 by adding the block with ``Version`` 0.
* 1 -- current.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from ._errors import CorruptRecordError, InvalidArgumentError, SchemaVersionError
from ._model import ID_LEN, ID_RE, META, SCHEMA_VERSION, Container, ExecConfig, _Record

DEFAULT_MAX_RECORD_BYTES: Final = 1 << 20  # 1 MiB; docker inspect output is rarely >20 KiB
# orjson reads up to 1024 levels but writes at most 254, so a deeper record
# could be read and then never written (or copied) again: refuse it on read.
MAX_DEPTH: Final = 200


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a decoded JSON value, stopping once ``limit`` is exceeded."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    deepest = 0
    while stack:
        v, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > limit:
                return deepest
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values() if isinstance(x, dict | list))
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v if isinstance(x, dict | list))
    return deepest

_CLASSES: Final[dict[str, type[_Record]]] = {"container": Container, "exec": ExecConfig}


def _upgrade_0_to_1(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    doc[META] = {"Schema": 1, "Kind": kind, "Version": 0}
    return doc


# from-schema -> function producing the next schema.  A newer statestore adds a
# row here whenever it changes the stored shape.
UPGRADES: dict[int, Callable[[dict[str, Any], str], dict[str, Any]]] = {0: _upgrade_0_to_1}


def encode(record: _Record, max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> bytes:
    """The stored form of ``record``.  InvalidArgumentError if it is over the cap."""
    try:
        data = orjson.dumps(record._d)
    except orjson.JSONEncodeError as exc:
        raise InvalidArgumentError(f"{record.KIND} cannot be stored as JSON: {exc}") from None
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH and _depth(record._d, MAX_DEPTH) > MAX_DEPTH:
        raise InvalidArgumentError(f"{record.KIND} is nested deeper than {MAX_DEPTH} levels")
    if len(data) > max_bytes:
        raise InvalidArgumentError(
            f"{record.KIND} {record.id[:12]} encodes to {len(data)} bytes, over the "
            f"{max_bytes}-byte record cap"
        )
    return data


def upgrade(doc: dict[str, Any], kind: str, key: str) -> dict[str, Any]:
    meta = doc.get(META)
    if meta is None:
        schema = 0
    elif isinstance(meta, dict) and type(meta.get("Schema")) is int:
        schema = meta["Schema"]
    else:
        raise CorruptRecordError(key, f"malformed {META} block")
    if schema == SCHEMA_VERSION:
        return doc
    if schema > SCHEMA_VERSION:
        raise SchemaVersionError(key, schema, SCHEMA_VERSION)
    while schema < SCHEMA_VERSION:
        step = UPGRADES.get(schema)
        if step is None:
            raise CorruptRecordError(key, f"no upgrade path from schema {schema}")
        doc = step(doc, kind)
        schema += 1
    return doc


def decode_document(
    kind: str, key: str, raw: bytes | str, max_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> dict[str, Any]:
    """The JSON document stored at ``key``, upgraded to the current schema (not shape-checked)."""
    return _decode_document(kind, key, raw, max_bytes)[0]


def _decode_document(
    kind: str, key: str, raw: bytes | str, max_bytes: int
) -> tuple[dict[str, Any], bool]:
    size = len(raw)
    if isinstance(raw, str) and size * 4 > max_bytes and not raw.isascii():
        size = len(raw.encode("utf-8", "surrogatepass"))  # the cap is in bytes, as stored
    if size > max_bytes:
        raise CorruptRecordError(key, f"{size} bytes, over the {max_bytes}-byte record cap")
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(key, f"invalid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CorruptRecordError(key, f"expected a JSON object, found {type(doc).__name__}")
    # cheap pre-check: a document with fewer containers than the limit cannot be too deep
    opened = raw.count(b"{") + raw.count(b"[") if isinstance(raw, bytes) else raw.count("{") + raw.count("[")
    if opened > MAX_DEPTH and _depth(doc, MAX_DEPTH) > MAX_DEPTH:
        raise CorruptRecordError(key, f"JSON nested deeper than {MAX_DEPTH} levels")
    meta = doc.get(META)
    upgraded = False
    if not (isinstance(meta, dict) and type(meta.get("Schema")) is int and meta["Schema"] == SCHEMA_VERSION):
        doc = upgrade(doc, kind, key)
        meta = doc[META]
        upgraded = True
    if meta.get("Kind") != kind or type(meta.get("Version")) is not int:
        raise CorruptRecordError(key, f"{META} block does not describe a {kind}")
    id_field = _CLASSES[kind].ID_FIELD
    rid = doc.get(id_field)
    if not isinstance(rid, str) or not ID_RE.fullmatch(rid) or not key.endswith(rid):
        raise CorruptRecordError(key, f"{id_field} {rid!r} does not match the key")
    return doc, upgraded


# Stored bytes that already passed every check, by kind.  Validation is a pure
# function of the bytes (the key is still compared with the ID on every read),
# so a record read again unchanged -- ``ps`` polling, the record a commit just
# wrote -- skips the shape checks.  Bounded; cleared when full.
_VALIDATED: dict[bytes, str] = {}
_VALIDATED_MAX: Final = 4096


def remember_valid(kind: str, raw: bytes) -> None:
    """Note that ``raw`` (current schema) passed validation as a ``kind`` record."""
    if len(_VALIDATED) >= _VALIDATED_MAX:
        _VALIDATED.clear()
    _VALIDATED[raw] = kind


def decode(kind: str, key: str, raw: bytes | str,
           max_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Any:
    """A fresh record object from stored bytes; CorruptRecordError if they are bad."""
    cls = _CLASSES[kind]
    if type(raw) is bytes and _VALIDATED.get(raw) == kind and len(raw) <= max_bytes:
        doc = orjson.loads(raw)
        if key.endswith(doc[cls.ID_FIELD]) and len(key) > ID_LEN:
            return cls(doc)
    doc, upgraded = _decode_document(kind, key, raw, max_bytes)
    rec: Any = cls(doc)
    # the fields the indexes and filters read must have the right shapes
    try:
        rec.validate()
    except InvalidArgumentError as exc:
        raise CorruptRecordError(key, str(exc)) from None
    if type(raw) is bytes and not upgraded:
        remember_valid(kind, raw)
    return rec
