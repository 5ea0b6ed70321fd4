"""Docker-style random names: ``adjective_surname``.

The word lists are statestore's own (adjectives, and surnames of people who
shaped computing and distributed systems).  Like moby, a generated name that
is already taken is retried by the store with a numeric suffix.
"""

from __future__ import annotations

import random
from typing import Final

ADJECTIVES: Final = (
    "agile", "amazing", "bold", "brave", "calm", "careful", "charming", "clever",
    "cool", "curious", "daring", "dazzling", "eager", "earnest", "elastic", "elegant",
    "fearless", "festive", "focused", "friendly", "gallant", "gentle", "happy", "honest",
    "humble", "jolly", "keen", "kind", "lively", "loyal", "lucid", "merry", "modest",
    "nimble", "noble", "patient", "peaceful", "placid", "plucky", "quick", "quiet",
    "radiant", "rapid", "serene", "sharp", "sleek", "steady", "sunny", "swift", "tender",
    "tidy", "upbeat", "vibrant", "vigilant", "warm", "wise", "witty", "zealous",
)

SURNAMES: Final = (
    "allen", "backus", "bartik", "berners", "brewer", "cerf", "codd", "conway",
    "corbato", "dijkstra", "engelbart", "estrin", "floyd", "gray", "hamilton", "hoare",
    "hopper", "kahn", "kay", "knuth", "lamport", "lampson", "liskov", "lovelace",
    "mccarthy", "metcalfe", "milner", "naur", "neumann", "nygaard", "ousterhout",
    "perlman", "pike", "ritchie", "rivest", "saltzer", "shamir", "shannon", "spafford",
    "stonebraker", "sutherland", "tarjan", "thompson", "torvalds", "turing", "valiant",
    "wilkes", "wirth", "yao",
)


def generate_name(rng: random.Random | None = None, retry: int = 0) -> str:
    """A random ``adjective_surname``; with ``retry`` > 0, a digit is appended (moby does too)."""
    r = rng or random
    name = f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
    if retry > 0:
        name += str(r.randint(0, 9))
    return name
