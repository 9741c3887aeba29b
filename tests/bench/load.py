"""The open-loop load generator of the serving bench: requests sent on a fixed schedule whatever the answers do,
each latency measured from its scheduled time (no coordinated omission), over keep-alive connections through a
minimal HTTP/1.1 client so that the generator costs little CPU on the cores it shares with the stack."""

from __future__ import annotations

import asyncio
import json
import time

MODEL = "kfloop-ranker"


class Connection:
    """One keep-alive HTTP/1.1 connection; a minimal client so the load generator costs little CPU."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Pool:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        pooled = bool(self.idle)
        connection = self.idle.pop() if pooled else await Connection.open(self.host, self.port)
        try:
            result = await connection.post(path, body)
        except (IndexError, ConnectionError, asyncio.IncompleteReadError):
            connection.close()
            if not pooled:
                raise
            # the server closed an idle keep-alive connection: once more on a new one
            connection = await Connection.open(self.host, self.port)
            result = await connection.post(path, body)
        self.idle.append(connection)
        return result


def bodies(users: list[str], n: int = 64) -> list[bytes]:
    return [json.dumps({"instances": [{"user_id": users[i % len(users)]}]}).encode() for i in range(n)]


async def fixed_rate(pool: Pool, rate: float, seconds: float, payloads: list[bytes]) -> tuple[list[float], int]:
    """Latencies (ms, from each request's scheduled time) and the number of errors. Each request is started at
    its time by one pacing loop (open loop: a slow stack does not slow the arrivals). Creating every request's
    task up front instead costs the client ~0.1 ms each before the first is sent, so the first ~2-300 ms of a
    run went out late, in one burst: a stall of the client, measured as the stack's latency."""
    path = f"/v1/models/{MODEL}:predict"
    latencies: list[float] = []
    errors = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            status, body = await pool.post(path, payloads[i % len(payloads)])
        except Exception as exc:
            status, body = 0, repr(exc).encode()
        if status != 200:
            errors += 1
            if errors <= 3:
                print(f"    error: {status} {body[:200]!r}", flush=True)
        latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    return latencies, errors
