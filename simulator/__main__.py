"""``python -m simulator`` / ``commonground-simulate``: realistic synthetic traffic.

Generates a seeded population for the chosen combined authorities (providers, learners,
volunteers whose borough, ethnic group, religion, country of birth and age follow the
reference tables in simulator/data) and sends it to the running services: enrolments
(batch endpoint, or the Kafka inbound topic), attendance, assessments, breaks,
completions, outcomes and withdrawals, volunteer registrations and coordinator
decisions on the proposals that follow. The same seed (and --as-of date) gives the same
population and the same requests, so a run can be repeated; repeating it against the
same stack changes nothing (every endpoint is idempotent).

Examples:
    commonground-simulate --learners 2000 --rate 50
    commonground-simulate --authority greater-manchester --learners 500 --dry-run
    commonground-simulate --learners 100000 --channel kafka   # as fast as possible
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, date, datetime
from typing import Any

from pydantic import SecretStr, ValidationError

from simulator.driver import RunOptions, SimulatorError, simulate
from simulator.population import SimulationConfig, generate, parse_authority
from simulator.reference import load_reference
from simulator.settings import SimulatorSettings

logger = logging.getLogger("simulator")

EXIT_FATAL = 1
EXIT_REFUSED = 4


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {number})")
    return number


def _non_negative_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (got {number})")
    return number


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(
            f"must be more than 0 operations per second (got {value}); "
            "omit --rate to go as fast as the services allow"
        )
    return number


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative (got {value})")
    return number


def _authority(value: str) -> str:
    try:
        return parse_authority(value).value
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def build_parser(settings: SimulatorSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="commonground-simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    population = parser.add_argument_group("population")
    population.add_argument("--seed", type=_non_negative_int, default=1, help="default 1")
    population.add_argument(
        "--learners", type=_positive_int, default=1000, help="learners (default 1000)"
    )
    population.add_argument(
        "--volunteers", type=_non_negative_int, help="volunteers (default learners / 8)"
    )
    population.add_argument(
        "--authority",
        action="append",
        type=_authority,
        metavar="CODE_OR_NAME",
        help="combined authority, e.g. E47000001 or greater-manchester; repeat for "
        "several (default: all six)",
    )
    population.add_argument(
        "--months", type=_positive_int, default=12, help="enrolments start in the last N months"
    )
    population.add_argument(
        "--as-of",
        type=_date,
        help="the simulated today (default: today, UTC); give it to repeat a run exactly",
    )
    traffic = parser.add_argument_group("traffic")
    traffic.add_argument(
        "--rate", type=_rate, help="operations per second (default: as fast as possible)"
    )
    traffic.add_argument("--batch-size", type=_positive_int, default=500)
    traffic.add_argument("--concurrency", type=_positive_int, default=8)
    traffic.add_argument(
        "--channel",
        choices=("http", "kafka"),
        default="http",
        help="how enrolments are submitted (progress always goes over HTTP)",
    )
    traffic.add_argument(
        "--linger",
        type=_seconds,
        default=30.0,
        help="after the last submission, keep deciding proposals this long (default 30 s)",
    )
    traffic.add_argument(
        "--no-progress", action="store_true", help="log lines instead of a progress bar"
    )
    traffic.add_argument(
        "--dry-run", action="store_true", help="print what would be sent, send nothing"
    )
    access = parser.add_argument_group("services")
    access.add_argument(
        "--provider-key",
        action="append",
        help="provider API key (repeat to spread providers over several keys; default "
        "COMMONGROUND_DEMO_PROVIDER_KEY)",
    )
    access.add_argument(
        "--coordinator-key",
        default=settings.coordinator_key.get_secret_value() if settings.coordinator_key else None,
        help="coordinator key for volunteers and decisions (default "
        "COMMONGROUND_DEMO_COORDINATOR_KEY; without one, neither is sent)",
    )
    access.add_argument("--enrolment-url", default=settings.enrolment_url)
    access.add_argument("--matching-url", default=settings.matching_url)
    access.add_argument(
        "--kafka-bootstrap-servers",
        default=settings.kafka_bootstrap_servers,
        help="for --channel kafka (default COMMONGROUND_KAFKA_BOOTSTRAP_SERVERS)",
    )
    access.add_argument(
        "--provider-ukprn",
        default=settings.provider_ukprn,
        help="UKPRN of the key's provider, the Kafka record key (default 10000000, the demo "
        "provider)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


def _validation_message(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


def parse(argv: list[str] | None = None) -> tuple[SimulationConfig, RunOptions | None, bool]:
    """Parse and validate everything; exits with a usage error (status 2) on bad input."""
    settings = SimulatorSettings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    try:
        config = SimulationConfig(
            seed=args.seed,
            learners=args.learners,
            volunteers=args.volunteers,
            authorities=tuple(args.authority)
            if args.authority
            else SimulationConfig.model_fields["authorities"].default,
            as_of=args.as_of or datetime.now(UTC).date(),
            months=args.months,
        )
    except ValidationError as exc:
        parser.error(_validation_message(exc))
    if args.dry_run:
        return config, None, True
    keys = args.provider_key or (
        [settings.provider_key.get_secret_value()] if settings.provider_key else []
    )
    if not keys:
        parser.error(
            "no provider key: give --provider-key or set COMMONGROUND_DEMO_PROVIDER_KEY "
            "(`./commonground up --demo` sets one)"
        )
    try:
        options = RunOptions(
            enrolment_url=args.enrolment_url.rstrip("/"),
            matching_url=args.matching_url.rstrip("/"),
            provider_keys=tuple(SecretStr(k) for k in keys),
            coordinator_key=SecretStr(args.coordinator_key) if args.coordinator_key else None,
            rate=args.rate,
            batch_size=min(args.batch_size, 1000),
            concurrency=args.concurrency,
            channel=args.channel,
            kafka_bootstrap_servers=args.kafka_bootstrap_servers,
            provider_ukprn=args.provider_ukprn,
            linger_s=args.linger,
            progress_bar=not args.no_progress and sys.stderr.isatty(),
        )
    except ValidationError as exc:
        parser.error(_validation_message(exc))
    return config, options, False


def main(argv: list[str] | None = None) -> int:
    config, options, dry_run = parse(argv)
    population = generate(config, load_reference())
    summary: dict[str, Any] = population.summary()
    if dry_run or options is None:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
        return 0
    logger.info(
        "population seed %d (tag %s): %d learners, %d enrolments, %d volunteers; sending to %s",
        config.seed,
        population.tag,
        summary["learners"],
        summary["enrolments"],
        summary["volunteers"],
        options.enrolment_url,
    )
    try:
        report = asyncio.run(simulate(population, options, stream=sys.stderr))
    except SimulatorError as exc:
        sys.stderr.write(f"commonground-simulate: {exc}\n")
        return EXIT_FATAL
    except KeyboardInterrupt:
        sys.stderr.write("\ncommonground-simulate: interrupted\n")
        return 130
    sys.stdout.write(json.dumps({"population": summary, "run": report.as_dict()}, indent=2) + "\n")
    return EXIT_REFUSED if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
