"""A writer process for the failover tests (``tests/test_sentinel.py``, ``tools/failover_loss.py``).

Run as ``python -m tests.failover_writer --url URL --namespace NS --out FILE --stop FILE ...``
from the repository root.  It commits continuously through one ``Store``:
creates containers (label ``n`` = 0) and increments the label ``n`` of a
random one with ``store.containers.update``, so a container's ``n`` counts
the updates applied to it and its version is ``n + 1``.

Every outcome is appended to ``--out`` as one line the moment it is known
(``os.write`` on an ``O_APPEND`` descriptor: the line is in the kernel
before the next commit starts)::

    A <op> <id> <version> <n> <revision|-> <monotonic> <wall>     acknowledged
    U <op> <id> <version|-> <n|-> <error> <monotonic> <wall>      outcome unknown (CommitIndeterminateError,
                                                                  DurabilityError: version/n from .result)
    F <op> <id> - - <error> <monotonic> <wall>                     not applied (StoreUnavailableError,
                                                                  NotFoundError)

``op`` is ``create`` or ``update``.  The writer stops when ``--stop`` exists
or after ``--max-seconds``, and exits 0; anything unexpected is printed to
stderr and exits 1.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback

from statestore import (
    CommitIndeterminateError,
    Container,
    DurabilityError,
    NotFoundError,
    Store,
    StoreUnavailableError,
)

LABEL = "n"


def _bump(c: Container) -> None:
    c.labels[LABEL] = str(int(c.labels.get(LABEL, "0")) + 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--url", required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--durability", choices=("fast", "replicated"), default="fast")
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--durability-timeout", type=float, default=1.0)
    ap.add_argument("--unavailable-timeout", type=float, default=20.0)
    ap.add_argument("--containers", type=int, default=50, help="how many containers to keep updating")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed or None)
    fd = os.open(args.out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def emit(*fields: object) -> None:
        line = " ".join(str(f) for f in fields)
        os.write(fd, f"{line} {time.monotonic():.6f} {time.time():.6f}\n".encode())

    kwargs: dict[str, object] = {"unavailable_timeout": args.unavailable_timeout}
    if args.durability == "replicated":
        kwargs.update(durability="replicated", replicas=args.replicas,
                      durability_timeout=args.durability_timeout)
    store = Store.from_url(args.url, namespace=args.namespace, **kwargs)  # type: ignore[arg-type]
    ids: list[str] = []
    deadline = time.monotonic() + args.max_seconds
    try:
        while time.monotonic() < deadline and not os.path.exists(args.stop):
            if len(ids) < args.containers or rng.random() < 0.05:
                op = "create"
                rec = Container.new("busybox", labels={LABEL: "0"})
                rid = rec.id
                ids.append(rid)
            else:
                op = "update"
                rid = rng.choice(ids)
            try:
                if op == "create":
                    done = store.containers.create(rec)
                else:
                    done = store.containers.update(rid, _bump)
            except DurabilityError as exc:
                got = exc.result
                if isinstance(got, Container):
                    emit("U", op, rid, got.version, got.labels.get(LABEL, "-"), "DurabilityError")
                else:
                    emit("U", op, rid, "-", "-", "DurabilityError")
                continue
            except CommitIndeterminateError:
                emit("U", op, rid, "-", "-", "CommitIndeterminateError")
                continue
            except NotFoundError:  # its create was lost in a failover (fast durability)
                ids.remove(rid)
                emit("F", op, rid, "-", "-", "NotFoundError")
                continue
            except StoreUnavailableError:
                emit("F", op, rid, "-", "-", "StoreUnavailableError")
                continue
            emit("A", op, rid, done.version, done.labels.get(LABEL, "-"), done.revision or "-")
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        store.close()
        os.close(fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
