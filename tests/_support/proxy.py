"""An in-test asyncio TCP proxy that injects faults between a client and a loopback server.

Modes: ``pass`` (forward both ways), ``drop_replies`` (forward requests, swallow the server's
answer and cut the client off: the request was applied but its reply is lost),
``drop_one_reply`` (the same, once, then ``pass`` again), ``truncate_replies`` (forward the
first half of the server's answer, then cut the client off), ``delay`` (forward both ways after
``delay`` seconds per chunk),
``blackhole`` (accept and forward nothing), ``reset`` (close every connection at once).
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.delay = 0.0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    def cut_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        if self.mode in ("blackhole", "reset"):
            if self.mode == "reset":
                client_writer.close()
                return
            await asyncio.sleep(3600)  # hold the connection, answer nothing
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._writers.add(server_writer)
        up = asyncio.create_task(self._pump(client_reader, server_writer, upstream=True, client=client_writer))
        down = asyncio.create_task(self._pump(server_reader, client_writer, upstream=False, client=client_writer))
        self._tasks.update((up, down))
        up.add_done_callback(self._tasks.discard)
        down.add_done_callback(self._tasks.discard)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool,
        client: asyncio.StreamWriter,
    ) -> None:  # fmt: skip
        try:
            while data := await reader.read(65536):
                if self.mode == "blackhole":
                    continue
                if not upstream and self.mode == "truncate_replies":
                    writer.write(data[: max(1, len(data) // 2)])
                    await writer.drain()
                    client.close()
                    return
                if not upstream and self.mode in ("drop_replies", "drop_one_reply"):
                    if self.mode == "drop_one_reply":
                        self.mode = "pass"
                    client.close()  # the server answered; the client never hears it
                    return
                if self.mode == "delay" and self.delay:
                    await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
