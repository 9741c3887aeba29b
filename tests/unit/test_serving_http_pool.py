"""The stack's keep-alive client (serving.common.upstream.HttpPool) against a real local HTTP/1.1 server."""

from __future__ import annotations

import asyncio

import pytest

from serving.common.upstream import HttpPool, UpstreamUnavailable

pytestmark = pytest.mark.serving


class KeepAliveServer:
    """Answers every POST with 200 and its body, keeping connections open; counts the connections."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while (line := await reader.readline()) != b"":
                length = 0
                while (header := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                assert line.startswith(b"POST ")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_connections_are_reused_until_idle_too_long_then_replaced():
    async def scenario() -> None:
        server, clock = KeepAliveServer(), Clock()
        pool = HttpPool(await server.start(), idle_timeout_s=2.0, clock=clock)
        try:
            for i in range(3):  # back to back: one connection
                answer = await pool.request("POST", "/x", b"%d" % i)
                assert (answer.status, answer.body) == (200, b"%d" % i)
                clock.now += 1.0
            assert server.connections == 1
            clock.now += 1.5  # idle 2.5 s: the server may be closing it, so it is not reused
            assert (await pool.request("POST", "/x", b"late")).body == b"late"
            assert server.connections == 2
        finally:
            await pool.close()
            await server.stop()

    asyncio.run(scenario())


def test_a_server_that_is_gone_is_unavailable_not_a_crash():
    async def scenario() -> None:
        server = KeepAliveServer()
        url = await server.start()
        await server.stop()
        with pytest.raises(UpstreamUnavailable, match="cannot connect"):
            await HttpPool(url, timeout_s=5).request("POST", "/x", b"{}")

    asyncio.run(scenario())
