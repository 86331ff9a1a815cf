"""A counting TCP proxy for the MongoDB wire protocol: runtime → proxy → nx-27017 (or any MongoDB).

Every client→server message is forwarded unchanged and counted by its command name: the first key of
the body section of an ``OP_MSG`` (opcode 2013), of the query document of a legacy ``OP_QUERY``
(2004, the driver's first handshake), or ``<opcode N>`` for anything else. The counters are written
as JSON to ``--stats`` every 0.2 s and on exit, so a benchmark reads them without talking to us.
``targets`` counts the same messages by command and collection (``find jobs``): the value of that first
key when it is a string, as in every CRUD command.

    python bench/wire_proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:27017 --stats counts.json

Prints ``listening <host>:<port>`` once ready.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import time
from collections import Counter
from pathlib import Path

OP_QUERY, OP_COMPRESSED, OP_MSG = 2004, 2012, 2013
HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode


def _cstring(data: bytes | bytearray, start: int) -> tuple[str, int]:
    end = data.index(0, start)
    return bytes(data[start:end]).decode("utf-8", "replace"), end + 1


BSON_STRING = 0x02


def _first_element(doc: bytes | bytearray, start: int) -> tuple[str, str | None]:
    """Name of the first element of the BSON document at ``start`` (int32 length, type byte, cstring
    name), and its value when it is a string (a CRUD command's collection)."""
    kind = doc[start + 4]
    if kind == 0:
        return "<empty>", None
    name, pos = _cstring(doc, start + 5)
    if kind != BSON_STRING:
        return name, None
    (size,) = struct.unpack_from("<i", doc, pos)  # int32 length (with the NUL), then the bytes
    return name, bytes(doc[pos + 4:pos + 3 + size]).decode("utf-8", "replace")


def command_target(message: bytes | bytearray) -> tuple[str, str | None]:
    """The command a whole wire message carries (header included), and the collection it names."""
    _, _, _, opcode = HEADER.unpack_from(message, 0)
    try:
        if opcode == OP_MSG:
            pos, end = 20, len(message)  # header + flagBits
            while pos < end:
                kind = message[pos]
                pos += 1
                if kind == 0:
                    return _first_element(message, pos)
                (size,) = struct.unpack_from("<i", message, pos)  # kind 1: a document sequence
                pos += size
            return "<no body>", None
        if opcode == OP_QUERY:
            _, pos = _cstring(message, 20)  # flags, then fullCollectionName
            return _first_element(message, pos + 8)[0], None  # numberToSkip, numberToReturn
    except (IndexError, ValueError, struct.error):
        return "<unparsed>", None
    return f"<opcode {opcode}>", None


def command_name(message: bytes | bytearray) -> str:
    return command_target(message)[0]


class Counts:
    def __init__(self) -> None:
        self.commands: Counter[str] = Counter()
        self.targets: Counter[str] = Counter()  # "find jobs"
        self.messages = 0
        self.bytes_in = 0
        self.connections = 0

    def to_json(self) -> dict[str, object]:
        return {"messages": self.messages, "bytes": self.bytes_in, "connections": self.connections,
                "commands": dict(self.commands.most_common()), "targets": dict(self.targets.most_common()),
                "at": time.time()}


async def _client_to_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: Counts) -> None:
    pending = bytearray()
    while data := await reader.read(1 << 16):
        writer.write(data)  # forward first: counting must not delay the command
        pending += data
        while len(pending) >= 16:
            (length,) = struct.unpack_from("<i", pending, 0)
            if len(pending) < length:
                break
            counts.messages += 1
            counts.bytes_in += length
            name, target = command_target(pending[:length])
            counts.commands[name] += 1
            counts.targets[name if target is None else f"{name} {target}"] += 1
            del pending[:length]
        await writer.drain()
    writer.close()


async def _server_to_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1 << 16):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _serve(upstream: tuple[str, int], counts: Counts, client_reader: asyncio.StreamReader,
                 client_writer: asyncio.StreamWriter) -> None:
    counts.connections += 1
    try:
        server_reader, server_writer = await asyncio.open_connection(*upstream)
    except OSError:
        client_writer.close()
        return
    tasks = [asyncio.create_task(_client_to_server(client_reader, server_writer, counts)),
             asyncio.create_task(_server_to_client(server_reader, client_writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for w in (client_writer, server_writer):
            w.close()


def _write_stats(path: Path, counts: Counts) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counts.to_json()))
    os.replace(tmp, path)  # readers never see half a file


async def run(listen: tuple[str, int], upstream: tuple[str, int], stats: Path) -> None:
    counts = Counts()
    server = await asyncio.start_server(lambda r, w: _serve(upstream, counts, r, w), *listen)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening {host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        while not stop.is_set():
            _write_stats(stats, counts)
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass
    finally:
        _write_stats(stats, counts)
        server.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", type=_address, default=("127.0.0.1", 0))
    ap.add_argument("--upstream", type=_address, required=True)
    ap.add_argument("--stats", type=Path, required=True)
    args = ap.parse_args()
    asyncio.run(run(args.listen, args.upstream, args.stats))


if __name__ == "__main__":
    main()
