"""A broker of our own per test module (the embedded Tansu starts in well under a second),
and a TCP proxy in front of it that can cut every connection without losing its log.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from devstack.embedded import EmbeddedKafka
from devstack.processes import ChildProcess, free_port
from shared.kafka import ensure_topics
from shared.topics import (
    all_topics,
)


@dataclass
class Broker:
    kafka: EmbeddedKafka

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap_servers


async def start_broker(log_dir: Path, partitions: int = 4) -> Broker:
    kafka = EmbeddedKafka(free_port(), log_dir)
    await asyncio.to_thread(kafka.start)
    await ensure_topics(kafka.bootstrap_servers, all_topics(), partitions=partitions)
    return Broker(kafka)


class TcpProxy:
    """A TCP relay in front of the broker that can be cut (every connection dropped,
    new ones refused) and restored: the broker becomes unreachable without losing what
    it holds (the embedded one keeps its log in memory only)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.base_events.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer.transport, up_writer.transport)
        self._transports.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._transports.difference_update(pair)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for transport in list(self._transports):
            transport.abort()  # type: ignore[attr-defined]
        self._transports.clear()

    async def restore(self) -> None:
        await self.start()


async def start_proxied_broker(log_dir: Path, partitions: int = 4) -> tuple[Broker, TcpProxy]:
    """A broker reached only through a :class:`TcpProxy` (it advertises the proxy)."""
    from devstack.embedded import kafka_answers, tansu_binary
    from devstack.processes import wait_until as wait_for_child

    kafka = EmbeddedKafka(free_port(), log_dir)
    proxy = TcpProxy(kafka.port)
    await proxy.start()
    kafka.process = ChildProcess(
        name="kafka (tansu, proxied)",
        argv=[
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{kafka.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{proxy.port}",
            "--storage-engine",
            "memory://tansu/",
        ],
        log_path=log_dir / "kafka-proxied.log",
    )
    kafka.process.start()
    bootstrap = f"127.0.0.1:{proxy.port}"
    await asyncio.to_thread(
        wait_for_child,
        lambda: kafka_answers(bootstrap),
        timeout_s=60,
        what="the proxied broker",
        child=kafka.process,
    )
    await ensure_topics(bootstrap, all_topics(), partitions=partitions)
    return ProxiedBroker(kafka, bootstrap), proxy


@dataclass
class ProxiedBroker(Broker):
    address: str = ""

    @property
    def bootstrap(self) -> str:
        return self.address
