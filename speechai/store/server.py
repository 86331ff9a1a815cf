"""What the connected server promises beyond the MongoDB API it speaks.

The embedded server (nx-27017) runs a database's commands one at a time under one lock, so a read
answered in one reply (an aggregate's few grouped rows) sees no write half-way through. MongoDB yields
during long reads: a document that moves meanwhile can be met twice or not at all. The server says
which it is in ``buildInfo`` (``process``); the answer is asked once per client.
"""

from __future__ import annotations

import weakref

from pymongo.asynchronous.database import AsyncDatabase

EMBEDDED_PROCESS = "nx_27017"

_one_at_a_time: weakref.WeakKeyDictionary[object, bool] = weakref.WeakKeyDictionary()


async def runs_one_command_at_a_time(db: AsyncDatabase) -> bool:
    client = db.client
    if (known := _one_at_a_time.get(client)) is None:
        info = await db.client.admin.command("buildInfo")
        known = _one_at_a_time[client] = info.get("process") == EMBEDDED_PROCESS
    return known
