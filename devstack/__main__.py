"""``python -m devstack up``: the whole platform on this machine.

Starts the embedded broker and database (unless external URLs are given), creates the
contract topics, starts the three services, prints where everything is, and on Ctrl-C
or SIGTERM stops every child it started.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import signal
import sys
import threading
import urllib.request
from pathlib import Path
from types import FrameType

from devstack.embedded import EmbeddedKafka, EmbeddedMongo, kafka_answers, mongo_answers
from devstack.processes import ChildProcess, StackError, require_free_port, wait_until
from devstack.settings import StackSettings
from shared.kafka import ensure_topics
from shared.topics import all_topics

SERVICES = ("enrolment", "matching", "reporting")


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.log_dir = self.data_dir / "logs"
        self.kafka: EmbeddedKafka | None = None
        self.mongo: EmbeddedMongo | None = None
        self.services: list[ChildProcess] = []
        self.simulator: ChildProcess | None = None
        self.simulator_seed: int | None = None
        self._simulator_reported = False
        self.bootstrap = settings.kafka_bootstrap_servers or ""
        self.mongodb_url = settings.mongodb_url.get_secret_value() if settings.mongodb_url else ""

    def service_port(self, name: str) -> int:
        port: int = getattr(self.settings, f"{name}_port")
        return port

    def start(self) -> None:
        s = self.settings
        # Check every port first so a clash fails before anything is started.
        if not self.bootstrap:
            require_free_port(s.host, s.kafka_port, "the Kafka broker", "COMMONGROUND_KAFKA_PORT")
        if not self.mongodb_url:
            require_free_port(
                s.host, s.mongodb_port, "the MongoDB server", "COMMONGROUND_MONGODB_PORT"
            )
        for name in SERVICES:
            require_free_port(
                s.host,
                self.service_port(name),
                f"the {name} service",
                f"COMMONGROUND_{name.upper()}_PORT",
            )
        if not self.bootstrap:
            self.kafka = EmbeddedKafka(s.kafka_port, self.log_dir, host=s.host)
            self.kafka.start(timeout_s=s.ready_timeout_s)
            self.bootstrap = self.kafka.bootstrap_servers
        else:
            wait_until(
                lambda: kafka_answers(self.bootstrap),
                timeout_s=s.ready_timeout_s,
                what=f"the external Kafka broker at {self.bootstrap}",
                fix="Check COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS (and the broker), "
                "or unset it to use the embedded broker.",
            )
        if self.mongodb_url:
            wait_until(
                lambda: mongo_answers(self.mongodb_url),
                timeout_s=s.ready_timeout_s,
                what="the external MongoDB server",
                fix="Check COMMONGROUND_MONGODB_URL (and the server), "
                "or unset it to use the embedded database.",
            )
        else:
            self.mongo = EmbeddedMongo(
                s.mongodb_port, self.data_dir / "mongodb", self.log_dir, host=s.host
            )
            self.mongo.start(timeout_s=s.ready_timeout_s)
            self.mongodb_url = self.mongo.url
        created = asyncio.run(
            ensure_topics(self.bootstrap, all_topics(), partitions=s.topic_partitions)
        )
        logging.getLogger(__name__).info("created topics: %s", ", ".join(created) or "none")
        self.seed_demo_accounts()
        for name in SERVICES:
            child = ChildProcess(
                name=name,
                argv=[sys.executable, "-m", f"services.{name}"],
                log_path=self.log_dir / f"{name}.log",
                env={
                    "COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                    "COMMONGROUND_MONGODB_URL": self.mongodb_url,
                    f"{name.upper()}_HTTP_HOST": s.host,
                    f"{name.upper()}_HTTP_PORT": str(self.service_port(name)),
                    **self.demo_service_env(name),
                },
            )
            child.start()
            self.services.append(child)
        for child in self.services:
            url = f"http://{s.host}:{self.service_port(child.name)}/readyz"
            wait_until(
                lambda url=url: _http_ok(url),  # type: ignore[misc]
                timeout_s=s.ready_timeout_s,
                what=f"the {child.name} service ({url})",
                child=child,
            )
        if s.demo:
            self.start_simulator()

    def demo_service_env(self, name: str) -> dict[str, str]:
        """Demo mode: matching proposes sooner, so the dashboard shows matches early."""
        if self.settings.demo and name == "matching":
            return {"MATCHING_BATCH_WINDOW_S": str(self.settings.demo_matching_batch_window_s)}
        return {}

    def start_simulator(self) -> None:
        """Gentle synthetic traffic (``python -m simulator``) as a child of the stack, so
        that Ctrl-C stops it with everything else."""
        s = self.settings
        self.simulator_seed = (
            s.demo_seed if s.demo_seed is not None else random.SystemRandom().randrange(10**6)
        )
        self.simulator = ChildProcess(
            name="simulator",
            argv=[
                sys.executable,
                "-m",
                "simulator",
                "--seed",
                str(self.simulator_seed),
                "--learners",
                str(s.demo_learners),
                "--rate",
                str(s.demo_rate),
                "--linger",
                "86400",
                "--no-progress",
                "--enrolment-url",
                f"http://{s.host}:{s.enrolment_port}",
                "--matching-url",
                f"http://{s.host}:{s.matching_port}",
            ],
            log_path=self.log_dir / "simulator.log",
        )
        self.simulator.start()

    def simulator_news(self) -> str | None:
        """Once: how the demo traffic ended (it may finish long before the stack)."""
        sim = self.simulator
        if sim is None or sim.running or self._simulator_reported:
            return None
        self._simulator_reported = True
        code = sim.exit_code()
        if code == 0:
            return "demo traffic finished; the services keep running."
        return (
            f"demo traffic stopped with code {code}; the services keep running. "
            f"Its log ({sim.log_path}) ends with:\n{sim.log_tail()}"
        )

    def seed_demo_accounts(self) -> None:
        """Demo provider / coordinator / analyst keys from the environment, if set."""
        s = self.settings
        if not (s.demo_provider_key or s.demo_coordinator_key or s.demo_analyst_key):
            return
        from devstack.seeding import seed_demo_accounts

        seed_demo_accounts(self.mongodb_url, s)

    def print_summary(self) -> None:
        s = self.settings
        lines = [
            "",
            "Common Ground is running:",
            f"  kafka      {self.bootstrap}" + ("  (embedded tansu)" if self.kafka else ""),
            "  mongodb    "
            + (self.mongo.url if self.mongo else "external (COMMONGROUND_MONGODB_URL)")
            + ("  (embedded secantusdb)" if self.mongo else ""),
        ]
        for name in SERVICES:
            base = f"http://{s.host}:{self.service_port(name)}"
            lines.append(f"  {name:<10} {base}  (docs {base}/docs, metrics {base}/metrics)")
        lines.append(f"  dashboard  http://{s.host}:{s.reporting_port}/dashboard")
        if s.demo and s.demo_analyst_key is not None:
            analyst = s.demo_analyst_key.get_secret_value()
            lines.append(
                f"  demo       http://{s.host}:{s.reporting_port}/dashboard#key={analyst}"
                "  (fills as the simulator runs)"
            )
            lines.append(
                f"  simulator  seed {self.simulator_seed}, {s.demo_rate:g} operations/s, "
                f"{s.demo_learners} learners (log {self.log_dir / 'simulator.log'})"
            )
            for role in ("provider", "coordinator", "analyst"):
                key = getattr(s, f"demo_{role}_key")
                lines.append(f"  {role + ' key':<16} {key.get_secret_value()}")
        lines.append(f"  data+logs  {self.data_dir}")
        lines.append("Press Ctrl-C to stop everything.")
        print("\n".join(lines), flush=True)

    def failed_child(self) -> ChildProcess | None:
        for child in [*self.services, *(p.process for p in (self.kafka, self.mongo) if p)]:
            if child is not None and child.popen is not None and not child.running:
                return child
        return None

    def stop(self) -> None:
        # The simulator first (it only talks to the services), then the services (they
        # flush producers and commit), then the servers they use.
        if self.simulator is not None:
            self.simulator.stop()
        for child in reversed(self.services):
            child.stop()
        if self.mongo:
            self.mongo.stop()
        if self.kafka:
            self.kafka.stop()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as response:
        return bool(response.status == 200)


def up(settings: StackSettings) -> int:
    stack = Stack(settings)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        stack.start()
        stack.print_summary()
        while not stop_requested.wait(1.0):
            failed = stack.failed_child()
            if failed is not None:
                print(
                    f"\n{failed.name} exited with code {failed.exit_code()}; stopping. "
                    f"Its log ({failed.log_path}) ends with:\n{failed.log_tail()}",
                    file=sys.stderr,
                )
                return 1
            news = stack.simulator_news()
            if news:
                print(f"\n{news}", file=sys.stderr, flush=True)
        return 0
    except StackError as exc:
        print(f"\ncommonground: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        # Signals during shutdown must not interrupt the clean-up itself.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping Common Ground…", flush=True)
        stack.stop()
        print("stopped.", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="commonground", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up_parser = sub.add_parser("up", help="run the whole platform locally")
    up_parser.add_argument("--data-dir", type=Path, help="database files and logs")
    up_parser.add_argument(
        "--demo",
        action="store_true",
        help="make up demo keys if none are set and feed the services synthetic traffic "
        "(also COMMONGROUND_DEMO=true)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    overrides: dict[str, object] = {"data_dir": args.data_dir} if args.data_dir else {}
    if args.demo:
        overrides["demo"] = True
    settings = StackSettings(**overrides)  # type: ignore[arg-type]
    if settings.demo:
        settings = settings.with_demo_keys()
    if args.command == "up":
        return up(settings)
    return 2


if __name__ == "__main__":
    sys.exit(main())
