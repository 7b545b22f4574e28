"""``python -m devstack up``: the whole platform on this machine.

Starts the embedded broker and database (unless external URLs are given), creates the
contract topics, starts the three services, prints where everything is, supervises
them (a child that dies is logged and restarted with backoff; a restarted broker gets
its contract topics back before anything else), and on Ctrl-C or SIGTERM stops every
child it started.
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
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from aiokafka.errors import KafkaError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from devstack.embedded import EmbeddedKafka, EmbeddedMongo, kafka_answers, mongo_answers
from devstack.processes import (
    ChildExited,
    ChildProcess,
    StackError,
    require_free_port,
    wait_until,
)
from devstack.settings import StackSettings
from devstack.supervisor import Component, RestartPolicy, Supervisor
from shared.kafka import ensure_topics
from shared.topics import all_topics

SERVICES = ("enrolment", "matching", "reporting")
logger = logging.getLogger("devstack")


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "%s failed (attempt %d: %s); retrying in %.1fs",
            what,
            state.attempt_number,
            error if error else "not ready",
            state.upcoming_sleep,
        )

    return before_sleep


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
        self.restart_policy = RestartPolicy(
            max_rapid_failures=settings.restart_max_rapid_failures,
            max_delay_s=settings.restart_max_delay_s,
        )
        # Supervision begins as soon as the embedded servers answer (a broker that dies
        # while the services start is restarted, with its topics, not waited for in
        # vain); each service joins once it is ready.
        self.supervisor = Supervisor([], self.restart_policy)

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
            kafka = self.kafka = EmbeddedKafka(s.kafka_port, self.log_dir, host=s.host)
            self._start_retrying("the Kafka broker", lambda _: kafka.start(s.ready_timeout_s))
            self.bootstrap = kafka.bootstrap_servers
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
            mongo = self.mongo = EmbeddedMongo(
                s.mongodb_port, self.data_dir / "mongodb", self.log_dir, host=s.host
            )
            self._start_retrying("the MongoDB server", lambda _: mongo.start(s.ready_timeout_s))
            self.mongodb_url = mongo.url
        self.create_topics()
        self._supervise_servers()
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
            self._start_retrying(
                f"the {child.name} service",
                lambda attempt, child=child: self._service_up(child, restart=attempt > 1),  # type: ignore[misc]
            )
            self.supervisor.add(
                Component(
                    child.name,
                    process=lambda child=child: child,  # type: ignore[misc]
                    restart=child.start,
                    ready=lambda name=child.name: self.service_ready(name, 1.0),  # type: ignore[misc]
                )
            )
        if s.demo:
            self.start_simulator()

    def _start_retrying(self, what: str, start: Callable[[int], None]) -> None:
        """Start a component; if it exits while starting (a busy machine, a crash), log
        why and start it again with backoff, up to the supervisor's rapid-failure limit.
        A timeout or a configuration error is not retried."""
        policy = self.restart_policy
        for attempt in Retrying(
            retry=retry_if_exception_type(ChildExited),
            stop=stop_after_attempt(policy.max_rapid_failures),
            wait=wait_exponential(multiplier=policy.initial_delay_s, max=policy.max_delay_s),
            before_sleep=_log_retry(f"starting {what}"),
            reraise=True,
        ):
            with attempt:
                start(attempt.retry_state.attempt_number)

    def _service_up(self, child: ChildProcess, *, restart: bool) -> None:
        if restart:
            child.start()

        def ready() -> bool:
            self.supervisor.check()  # the broker and database, while we wait
            return self.service_ready(child.name)

        wait_until(
            ready,
            timeout_s=self.settings.ready_timeout_s,
            what=f"the {child.name} service ({self.readyz(child.name)})",
            child=child,
        )

    def readyz(self, name: str) -> str:
        return f"http://{self.settings.host}:{self.service_port(name)}/readyz"

    def service_ready(self, name: str, timeout_s: float = 3.0) -> bool:
        return _http_ok(self.readyz(name), timeout_s)

    def create_topics(self) -> None:
        """Create the contract topics, retrying while the broker is not answering yet,
        up to COMMONGROUND_READY_TIMEOUT_S."""
        s = self.settings
        for attempt in Retrying(
            retry=retry_if_exception_type((KafkaError, OSError, TimeoutError)),
            stop=stop_after_delay(s.ready_timeout_s),
            wait=wait_exponential(multiplier=0.5, max=5.0),
            before_sleep=_log_retry("creating the contract topics"),
            reraise=True,
        ):
            with attempt:
                created = asyncio.run(
                    ensure_topics(self.bootstrap, all_topics(), partitions=s.topic_partitions)
                )
        logger.info("created topics: %s", ", ".join(created) or "none")

    def _supervise_servers(self) -> None:
        """The embedded broker (its contract topics re-created once it answers again)
        and database, supervised from now on."""
        s = self.settings
        if (kafka := self.kafka) is not None:
            self.supervisor.add(
                Component(
                    "kafka",
                    process=lambda: kafka.process,
                    restart=lambda: kafka.start(s.ready_timeout_s),
                    after_restart=self.create_topics,
                )
            )
        if (mongo := self.mongo) is not None:
            self.supervisor.add(
                Component(
                    "mongodb",
                    process=lambda: mongo.process,
                    restart=lambda: mongo.start(s.ready_timeout_s),
                )
            )

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


def _http_ok(url: str, timeout_s: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except OSError:  # refused, timed out, or an HTTP error status (503: not ready)
        return False


def up(settings: StackSettings) -> int:
    stack = Stack(settings)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop_requested.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    supervisor = stack.supervisor
    try:
        stack.start()
        stack.print_summary()
        while not stop_requested.wait(1.0):
            supervisor.check()
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
        if any(supervisor.restarts().values()):
            logger.warning("supervisor: restarts during this run: %s", supervisor.summary())
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
