"""ILR file intake without a broker or database: the streaming reader's refusals, the
national-rule checks, and monthly resubmission as a difference (in-memory repositories).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest

from services.enrolment.domain import Provider, Status, check_submission
from services.enrolment.ilr.aims import AimCatalogue
from services.enrolment.ilr.geography import local_authority_of
from services.enrolment.ilr.mapping import MappingContext, plan_learner
from services.enrolment.ilr.parser import FileProblem, IlrFileError, RawLearner, read_ilr
from services.enrolment.use_cases.ilr import IlrIntake, IlrOptions, UploadInProgress
from services.enrolment.use_cases.intake import EnrolmentService, IntakeMetrics
from shared.contracts.ilr import ILR_YEARS
from shared.contracts.reference import CombinedAuthority, Ethnicity, Level, Programme
from shared.telemetry import Telemetry
from simulator.ilr import IlrFileSpec, collection_days, ilr_bytes, story
from tests.unit.enrolment.enrolment_fakes import (
    PSEUDONYMS,
    FakeEnrolments,
    FakeProviders,
    submission,
)
from tests.unit.enrolment.ilr_fakes import FakeUploads

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
TODAY = NOW.date()
UKPRN = "10012345"
PROVIDER = Provider(f"provider:{UKPRN}", UKPRN, frozenset({CombinedAuthority.GREATER_MANCHESTER}))
YEAR, MONTH_1, MONTH_2 = collection_days(TODAY)

HEADER = (
    '<?xml version="1.0" encoding="utf-8"?><Message xmlns="ESFA/ILR/2026-27"><Header>'
    "<CollectionDetails><Collection>ILR</Collection><Year>2627</Year></CollectionDetails>"
    f"<Source><UKPRN>{UKPRN}</UKPRN><SerialNo>01</SerialNo></Source></Header>"
    f"<LearningProvider><UKPRN>{UKPRN}</UKPRN></LearningProvider>"
)


def learner_xml(*deliveries: str, **fields: str) -> str:
    base = {
        "LearnRefNumber": "T0001",
        "DateOfBirth": "1985-03-04",
        "Ethnicity": "40",
        "Sex": "F",
        "Postcode": "OL9 7AB",
    }
    base.update(fields)
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in base.items() if v)
    return f"<Learner>{inner}{''.join(deliveries)}</Learner>"


def aim(seq: int = 1, **fields: str) -> str:
    base = {
        "LearnAimRef": "ZESOLE1A",
        "AimType": "4",
        "AimSeqNumber": str(seq),
        "LearnStartDate": "2026-09-07",
        "LearnPlanEndDate": "2027-03-26",
        "FundModel": "38",
        "CompStatus": "1",
    }
    base.update(fields)
    sof = base.pop("SOF", "110")
    inner = "".join(f"<{k}>{v}</{k}>" for k, v in base.items() if v)
    fam = (
        f"<LearningDeliveryFAM><LearnDelFAMType>SOF</LearnDelFAMType>"
        f"<LearnDelFAMCode>{sof}</LearnDelFAMCode></LearningDeliveryFAM>"
        if sof
        else ""
    )
    return f"<LearningDelivery>{inner}{fam}</LearningDelivery>"


def parse_one(xml: str) -> RawLearner:
    items = list(read_ilr(io.BytesIO((HEADER + xml + "</Message>").encode())))
    raw = items[1]
    assert isinstance(raw, RawLearner)
    return raw


def rules(xml: str) -> set[str]:
    ctx = MappingContext(ILR_YEARS["2627"], PROVIDER, TODAY, AimCatalogue())
    return {i.rule for i in plan_learner(parse_one(xml), ctx).issues}


# ----------------------------------------------------------------------------- reader


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
            b'<Message xmlns="ESFA/ILR/2026-27">&b;</Message>',
            FileProblem.FORBIDDEN_XML,
        ),
        (
            b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b'<Message xmlns="ESFA/ILR/2026-27">&x;</Message>',
            FileProblem.FORBIDDEN_XML,
        ),
        (HEADER.encode() + b"<Learner><LearnRefNumber>A</Learner>", FileProblem.MALFORMED),
        (
            HEADER.replace("2026-27", "2024-25").encode() + b"</Message>",
            FileProblem.WRONG_NAMESPACE,
        ),
        (HEADER.replace(">2627<", ">2526<").encode() + b"</Message>", FileProblem.WRONG_YEAR),
        (b"<Message/>", FileProblem.WRONG_NAMESPACE),
        (b"<Other xmlns='ESFA/ILR/2026-27'/>", FileProblem.NOT_AN_ILR_FILE),
    ],
)
def test_the_reader_refuses_bad_and_hostile_files(body: bytes, problem: FileProblem) -> None:
    with pytest.raises(IlrFileError) as caught:
        list(read_ilr(io.BytesIO(body)))
    assert caught.value.problem is problem


def test_the_reader_streams_and_clears_learners() -> None:
    data, truth = ilr_bytes(IlrFileSpec(UKPRN, 300, MONTH_2))
    items = list(read_ilr(io.BytesIO(data)))
    assert len(items) == 1 + truth.learners_written
    assert all(isinstance(i, RawLearner) for i in items[1:])


# ---------------------------------------------------------------------------- mapping


def test_a_valid_learner_maps_onto_the_contract() -> None:
    ctx = MappingContext(ILR_YEARS["2627"], PROVIDER, TODAY, AimCatalogue())
    plan = plan_learner(parse_one(learner_xml(aim())), ctx)
    assert not plan.issues
    [target] = plan.targets
    s = target.submission
    assert s is not None
    assert s.ethnicity is Ethnicity.ASIAN_PAKISTANI
    assert s.local_authority == "E08000004"  # OL9: Oldham
    assert s.combined_authority is CombinedAuthority.GREATER_MANCHESTER  # SOF 110
    assert (s.programme, s.level, int(s.fund_model)) == (Programme.ESOL, Level.ENTRY_1, 38)


@pytest.mark.parametrize(
    ("xml", "rule"),
    [
        (learner_xml(aim(WithdrawReason="44")), "WithdrawReason_04"),
        (
            learner_xml(aim(CompStatus="3", LearnActEndDate="2026-10-01", Outcome="3")),
            "WithdrawReason_03",
        ),
        (learner_xml(aim(CompStatus="2", Outcome="1")), "CompStatus_03"),
        (learner_xml(aim(CompStatus="2", LearnActEndDate="2026-11-01")), "CompStatus_04"),
        (learner_xml(aim(Outcome="1")), "CompStatus_05"),
        (learner_xml(aim(CompStatus="7")), "CompStatus_01"),
        (learner_xml(aim(FundModel="12")), "FundModel_01"),
        (learner_xml(aim(SOF="")), "LearnDelFAMType_01"),
        (learner_xml(aim(), Ethnicity="12"), "Ethnicity_01"),
        (learner_xml(aim(), DateOfBirth=""), "DateOfBirth_01"),
        (learner_xml(aim(), Sex="X"), "Sex_01"),
        (learner_xml(aim(), Postcode="ZZ99 9ZZ"), "CG_Postcode_01"),
        (learner_xml(aim(LearnPlanEndDate="2026-09-01")), "LearnPlanEndDate_02"),
        (learner_xml(aim(1), aim(1, LearnAimRef="ZDIGIL1A")), "R07"),
        (
            learner_xml(aim(LearnStartDate="2024-06-03", LearnPlanEndDate="2024-12-01")),
            "CG_FundModel_38",
        ),
        (learner_xml(aim(SOF="112")), "CG_NotContracted_01"),
        (
            learner_xml(aim(CompStatus="2", LearnActEndDate="2027-01-20", Outcome="1")),
            "LearnActEndDate_04",
        ),
    ],
)
def test_errors_are_named_like_the_national_rules(xml: str, rule: str) -> None:
    assert rule in rules(xml)


def test_aims_that_are_not_ours_are_out_of_scope_not_errors() -> None:
    ctx = MappingContext(ILR_YEARS["2627"], PROVIDER, TODAY, AimCatalogue())
    xml = learner_xml(aim(1), aim(2, LearnAimRef="ZPROG001", FundModel="36"), aim(3, SOF="105"))
    plan = plan_learner(parse_one(xml), ctx)
    assert not plan.issues and len(plan.targets) == 1 and plan.out_of_scope == 2


def test_the_postcode_table_covers_every_borough() -> None:
    assert local_authority_of("M14 5AB") == "E08000003"
    assert local_authority_of("wn1 1aa") == "E08000010"
    assert local_authority_of("ZZ99 9ZZ") is None
    assert local_authority_of("SW1A 1AA") is None


def test_fund_model_38_is_accepted_via_json_and_only_for_starts_from_august_2024() -> None:
    ok = check_submission(
        submission(fund_model=38, start_date="2026-09-07", planned_end_date="2027-03-26"),
        PROVIDER,
        TODAY,
    )
    assert ok.ok
    early = check_submission(
        submission(fund_model=38, start_date="2024-07-01", planned_end_date="2024-12-01"),
        PROVIDER,
        date(2025, 1, 5),
    )
    assert [e.code.value for e in early.errors] == ["fund_model_invalid"]


# ---------------------------------------------------------------------- the service


def make_intake(
    chunk: int = 50,
) -> tuple[IlrIntake, FakeEnrolments, FakeUploads]:
    repo = FakeEnrolments()
    uploads = FakeUploads()
    uploads.enrolments = repo
    service = EnrolmentService(
        repo.unit_of_work,
        FakeProviders(PROVIDER),
        PSEUDONYMS,
        IntakeMetrics(Telemetry(service_name="enrolment-ilr-unit")),
        clock=lambda: NOW,
    )
    intake = IlrIntake(
        service,
        repo.unit_of_work,
        uploads,
        PSEUDONYMS,
        options=IlrOptions(chunk_learners=chunk),
        clock=lambda: NOW,
    )
    return intake, repo, uploads


async def body(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def upload(intake: IlrIntake, data: bytes) -> dict[str, object]:
    doc = await intake.receive(PROVIDER, body(data))
    done = await intake.wait(PROVIDER, str(doc["_id"]), 30, interval_s=0.01)
    assert done is not None and done["status"] == "completed", done
    return done


def events_of(repo: FakeEnrolments, start: int = 0) -> list[tuple[str, str]]:
    out = []
    for m in repo.outbox[start:]:
        kind = m.headers["ce_type"].split(".")[2]
        if kind != "LearnerKeyIssued":
            out.append((kind, json.loads(m.body)["enrolment_id"]))
    return out


def state(repo: FakeEnrolments) -> dict[tuple[str, str, date], tuple[str, int | None]]:
    return {
        (e.submission.learner_ref, e.submission.learning_aim_ref, e.submission.start_date): (
            e.lifecycle.status.value,
            int(e.lifecycle.outcome) if e.lifecycle.outcome is not None else None,
        )
        for e in repo.docs.values()
    }


def truth_state(truth: object) -> dict[tuple[str, str, date], tuple[str, int | None]]:
    return {
        (e.learn_ref, e.aim_ref, e.start): (e.status, e.outcome)
        for e in truth.enrolments  # type: ignore[attr-defined]
    }


async def test_monthly_files_emit_only_the_differences_and_a_repeat_changes_nothing() -> None:
    intake, repo, _ = make_intake()
    faults = {3: "Ethnicity_01", 4: "DateOfBirth_01", 5: "WithdrawReason_04"}
    first, truth_1 = ilr_bytes(IlrFileSpec(UKPRN, 400, MONTH_1, faults=faults))
    report = await upload(intake, first)
    assert state(repo) == truth_state(truth_1)
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["aims"]["created"] == len(truth_1.enrolments)
    assert summary["learners"]["with_errors"] == len(truth_1.faulty) >= 1
    month_1_events = len(repo.outbox)

    second, truth_2 = ilr_bytes(IlrFileSpec(UKPRN, 400, MONTH_2, drop=frozenset({10, 11})))
    report = await upload(intake, second)
    emitted = events_of(repo, month_1_events)
    before, after = truth_state(truth_1), truth_state(truth_2)
    changed = {k for k in after if before.get(k) != after[k]}
    by_key = {
        (
            e.submission.learner_ref,
            e.submission.learning_aim_ref,
            e.submission.start_date,
        ): e.enrolment_id
        for e in repo.docs.values()
    }
    assert {eid for _, eid in emitted} == {by_key[k] for k in changed}
    assert {kind for kind, _ in emitted} <= {
        "EnrolmentAccepted",
        "EnrolmentCompleted",
        "EnrolmentWithdrawn",
        "BreakInLearningStarted",
        "LearningResumed",
        "OutcomeRecorded",
    }
    # Dropped learners stay as they were (reported, not withdrawn); the rest is month 2.
    dropped = {story(IlrFileSpec(UKPRN, 400, MONTH_1), i).learn_ref for i in (10, 11)}
    expected = {**{k: v for k, v in before.items() if k[0] in dropped}, **after}
    assert state(repo) == expected
    missing = report["missing_learners"]
    assert isinstance(missing, dict)
    assert set(missing["learn_ref_numbers"]) == {k[0] for k in before if k[0] in dropped}

    count = len(repo.outbox)
    report = await upload(intake, second)
    assert len(repo.outbox) == count  # the same file again: nothing
    summary = report["summary"]
    assert isinstance(summary, dict)
    assert summary["aims"]["created"] == summary["aims"]["updated"] == 0


async def test_a_bad_learner_never_sinks_the_rest_and_issues_name_rules() -> None:
    intake, repo, _ = make_intake(chunk=7)
    data = (
        HEADER
        + learner_xml(aim(), LearnRefNumber="GOOD1")
        + learner_xml(aim(WithdrawReason="44"), LearnRefNumber="BAD1")
        + learner_xml(aim(), LearnRefNumber="GOOD2", Postcode="M14 5AB")
        + learner_xml(aim(), LearnRefNumber="GOOD1")
        + "</Message>"
    ).encode()
    report = await upload(intake, data)
    assert sorted(e.submission.learner_ref for e in repo.docs.values()) == ["GOOD1", "GOOD2"]
    issues = report["issues"]
    assert isinstance(issues, list)
    found = {(i["learn_ref_number"], i["rule"]) for i in issues}
    assert found == {("BAD1", "WithdrawReason_04"), ("GOOD1", "R06")}
    assert all("44" not in i["message"] for i in issues)


async def test_break_restart_and_outcome_follow_the_ilr_records() -> None:
    intake, repo, _ = make_intake()
    month_1 = learner_xml(
        aim(1, CompStatus="6", LearnActEndDate="2026-10-02", Outcome="3"),
        LearnRefNumber="BRK1",
    ) + learner_xml(
        aim(
            1,
            CompStatus="2",
            LearnActEndDate="2026-11-20",
            Outcome="8",
            LearnPlanEndDate="2026-11-20",
        ),
        LearnRefNumber="OUT1",
    )
    await upload(intake, (HEADER + month_1 + "</Message>").encode())
    restart = (
        "<LearningDelivery><LearnAimRef>ZESOLE1A</LearnAimRef><AimType>4</AimType>"
        "<AimSeqNumber>2</AimSeqNumber><LearnStartDate>2026-10-30</LearnStartDate>"
        "<OrigLearnStartDate>2026-09-07</OrigLearnStartDate>"
        "<LearnPlanEndDate>2027-04-20</LearnPlanEndDate><FundModel>38</FundModel>"
        "<CompStatus>1</CompStatus>"
        "<LearningDeliveryFAM><LearnDelFAMType>SOF</LearnDelFAMType>"
        "<LearnDelFAMCode>110</LearnDelFAMCode></LearningDeliveryFAM>"
        "<LearningDeliveryFAM><LearnDelFAMType>RES</LearnDelFAMType>"
        "<LearnDelFAMCode>1</LearnDelFAMCode></LearningDeliveryFAM></LearningDelivery>"
    )
    month_2 = learner_xml(
        aim(1, CompStatus="6", LearnActEndDate="2026-10-02", Outcome="3"),
        restart,
        LearnRefNumber="BRK1",
    ) + learner_xml(
        aim(
            1,
            CompStatus="2",
            LearnActEndDate="2026-11-20",
            Outcome="1",
            AchDate="2026-12-01",
            LearnPlanEndDate="2026-11-20",
        ),
        LearnRefNumber="OUT1",
    )
    mark = len(repo.outbox)
    await upload(intake, (HEADER + month_2 + "</Message>").encode())
    assert Counter(k for k, _ in events_of(repo, mark)) == {
        "LearningResumed": 1,
        "OutcomeRecorded": 1,
    }
    statuses = {e.submission.learner_ref: e.lifecycle for e in repo.docs.values()}
    assert statuses["BRK1"].status is Status.CONTINUING
    assert statuses["OUT1"].outcome is not None and int(statuses["OUT1"].outcome) == 1


async def test_refused_files_store_nothing_and_one_upload_runs_per_provider_and_year() -> None:
    intake, repo, uploads = make_intake()
    other = HEADER.replace(f"<Source><UKPRN>{UKPRN}", "<Source><UKPRN>10099999")
    assert other != HEADER
    with pytest.raises(IlrFileError) as caught:
        await intake.receive(PROVIDER, body((other + "</Message>").encode()))
    assert caught.value.problem is FileProblem.UKPRN_MISMATCH
    assert not uploads.docs and not repo.docs
    uploads.locks[f"{UKPRN}|2627"] = ("ilr_busy", NOW)
    with pytest.raises(UploadInProgress):
        await intake.receive(PROVIDER, body((HEADER + "</Message>").encode()))


def test_non_funded_learning_outside_the_six_areas_is_out_of_scope() -> None:
    ctx = MappingContext(ILR_YEARS["2627"], PROVIDER, TODAY, AimCatalogue())
    xml = learner_xml(aim(FundModel="99", SOF=""), Postcode="SW1A 1AA")
    plan = plan_learner(parse_one(xml), ctx)
    assert not plan.issues and not plan.targets and plan.out_of_scope == 1
    inside = plan_learner(parse_one(learner_xml(aim(FundModel="99", SOF=""))), ctx)
    [target] = inside.targets
    assert target.submission is not None
    assert target.submission.combined_authority is CombinedAuthority.GREATER_MANCHESTER
