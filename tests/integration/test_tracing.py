"""One enrolment, one trace: HTTP intake → enrolment's outbox publish → matching and
reporting consumption → MongoDB writes, across all three services on the real broker."""

from __future__ import annotations

import random
import string
from contextlib import AsyncExitStack
from typing import TypedDict

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.enrolment.admin import ProviderAdmin
from services.enrolment.app import create_app as create_enrolment
from services.enrolment.settings import EnrolmentSettings
from services.matching.app import create_app as create_matching
from services.matching.settings import MatchingSettings
from services.reporting.app import create_app as create_reporting
from services.reporting.settings import ReportingSettings
from tests.helpers import poll_until, running_app, unique
from tests.infra import Infra


class InfraSettings(TypedDict):
    """The settings every service here shares, typed so ``**common`` checks."""

    kafka_bootstrap_servers: str
    mongodb_url: str


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes.get("service.name"))


async def test_one_enrolment_is_one_trace_across_three_services(infra: Infra) -> None:
    common: InfraSettings = {
        "kafka_bootstrap_servers": infra.kafka_bootstrap_servers,
        "mongodb_url": infra.mongodb_url,
    }
    apps = {
        "enrolment": create_enrolment(
            EnrolmentSettings(
                **common,
                consumer_group=unique("trace-enrolment"),
                mongodb_database=unique("trace_enrolment"),
            )
        ),
        "matching": create_matching(
            MatchingSettings(
                **common,
                consumer_group=unique("trace-matching"),
                mongodb_database=unique("trace_matching"),
            )
        ),
        "reporting": create_reporting(
            ReportingSettings(
                **common,
                consumer_group=unique("trace-reporting"),
                mongodb_database=unique("trace_reporting"),
            )
        ),
    }
    exporter = InMemorySpanExporter()
    for app in apps.values():
        app.state.telemetry.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))

    async with AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(running_app(app)) for name, app in apps.items()
        }
        admin = ProviderAdmin(apps["enrolment"].state.runtime.db)
        ukprn = "1" + "".join(random.choices(string.digits, k=7))
        key = await admin.register_provider("Trace College", ukprn, ["E47000007"])
        response = await clients["enrolment"].post(
            "/v1/enrolments",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "submission_ref": unique("row"),
                "learner_ref": "L" + "".join(random.choices(string.digits, k=11)),
                "date_of_birth": "1988-04-02",
                "sex": "M",
                "ethnicity": "black_african",
                "country_of_birth": "ER",
                "first_language": "ti",
                "combined_authority": "E47000007",
                "local_authority": "E08000026",
                "learning_aim_ref": "ZESOL001",
                "programme": "esol",
                "level": "entry_2",
                "start_date": "2026-01-12",
                "planned_end_date": "2026-07-10",
                "planned_hours": 120,
                "fund_model": 35,
                "consent": {"matching": True, "research": True},
                "wants_conversation_partner": True,
                "availability": ["wed-pm", "sat-am"],
                "interests": ["football"],
            },
        )
        assert response.status_code == 201, response.text
        http_spans = [
            s
            for s in exporter.get_finished_spans()
            if s.name == "POST /v1/enrolments" and service_of(s) == "enrolment"
        ]
        assert len(http_spans) == 1
        trace_id = http_spans[0].context.trace_id

        async def whole_trace() -> set[str]:
            spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
            services = {service_of(s) for s in spans}
            return services if services >= {"enrolment", "matching", "reporting"} else set()

        await poll_until(whole_trace, timeout_s=90, what="spans of all three services in one trace")

    spans = [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
    names = {(service_of(s), s.name) for s in spans}
    assert ("enrolment", "enrolment.events.v1 publish") in names
    assert any(svc == "matching" and n.endswith("process") for svc, n in names), names
    assert any(svc == "reporting" and n == "enrolment.events.v1 project" for svc, n in names)
    # Database writes appear in the trace: the intake transaction, and matching's effect.
    mongo = {svc for svc, n in names if n.startswith("mongodb.")}
    assert {"enrolment", "matching"} <= mongo, names
