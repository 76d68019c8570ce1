"""The invoker's HTTP/1.1 client for the action proxy, against a real unix-socket server speaking each framing."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import orjson

from invoker.containers import ProxyClient


async def serve(path: str, replies: list[bytes], seen: list[bytes], close_after: bool = False) -> asyncio.Server:
    """Answers each request with the next canned reply; records what it was sent, and b"connect" per connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(b"connect")
        while replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            seen.append(head + await reader.readexactly(length))
            writer.write(replies.pop(0))
            await writer.drain()
            if close_after:
                break
        writer.close()

    return await asyncio.start_unix_server(handle, path)


def test_framings_and_keep_alive() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            path = str(Path(d) / "proxy.sock")
            seen: list[bytes] = []
            body = orjson.dumps({"ok": True})
            replies = [
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body),
                b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n4\r\n:1}\n\r\n0\r\n\r\n",
            ]
            server = await serve(path, replies, seen)
            client = ProxyClient(path)
            r1 = await client.post("/init", {"value": {"code": "x"}}, 5)
            r2 = await client.post("/run", {"value": {"n": 1}}, 5)
            assert (r1.status, orjson.loads(r1.body)) == (200, {"ok": True})
            assert (r2.status, orjson.loads(r2.body)) == (502, {"a": 1})
            assert seen[0] == b"connect" and seen.count(b"connect") == 1  # one kept-alive connection
            assert seen[1].startswith(b"POST /init HTTP/1.1\r\n") and seen[1].endswith(b'{"value":{"code":"x"}}')
            assert seen[2].startswith(b"POST /run HTTP/1.1\r\n")
            client.close()
            server.close()
    asyncio.run(run())


def test_a_connection_the_proxy_closed_is_replaced_and_a_dead_proxy_is_reported() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            path = str(Path(d) / "proxy.sock")
            ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
            server = await serve(path, [ok, ok], [], close_after=True)  # closes each connection after one reply
            client = ProxyClient(path)
            assert (await client.post("/run", {}, 5)).status == 200
            await asyncio.sleep(0.05)  # the close reaches the client while it is idle
            assert (await client.post("/run", {}, 5)).status == 200
            server.close()
            await server.wait_closed()
            Path(path).unlink()  # noqa: ASYNC240  # a test's tmp file
            gone = await client.post("/run", {}, 5)
            assert gone.status is None and not gone.timed_out
    asyncio.run(run())


def test_timeout() -> None:
    async def run() -> None:
        with tempfile.TemporaryDirectory() as d:
            path = str(Path(d) / "proxy.sock")
            server = await asyncio.start_unix_server(lambda r, w: asyncio.sleep(10), path)  # never answers
            r = await ProxyClient(path).post("/run", {}, 0.2)
            assert r.status is None and r.timed_out and 150 < r.elapsed_ms < 1000
            server.close()
    asyncio.run(run())
