"""The I/O layer, in two faces: ``statestore/_async`` and ``statestore/_sync``.

The I/O code is written once, as asyncio code on redis-py's asyncio client,
in ``statestore/_async``; the modules of ``statestore/_sync`` are generated
from it by ``tools/unasync.py`` (CI fails when one is stale).  Edit the
async source, never a generated file.
"""
