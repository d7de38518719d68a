"""A TCP relay in its own process: `python tcp_relay.py PORT UPSTREAM_HOST:UPSTREAM_PORT`.

Clients talk to 127.0.0.1:PORT as if it were the server behind it; kill -9 of this process is, to
them, the server dying (refused connections, answers cut mid-stream), while the server keeps its
state, as S3 keeps its objects through an outage. moto alone cannot show that: a killed moto loses
its buckets.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(port: int, upstream_host: str, upstream_port: int) -> None:
    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", port, reuse_address=True)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    host, upstream_port = sys.argv[2].rsplit(":", 1)
    asyncio.run(serve(int(sys.argv[1]), host, int(upstream_port)))
