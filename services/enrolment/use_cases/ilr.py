"""ILR file intake use cases: receive an upload, process it as a difference, report.

1. :meth:`IlrIntake.receive` streams the body to a spool file (never whole in memory)
   and reads it through once (:func:`check_ilr`): well-formed, no DTD or entities, a
   supported namespace and year, both UKPRNs the caller's. A file that fails is refused
   whole (:class:`IlrFileError`) and **nothing is stored**. One upload per provider and
   collection year runs at a time (:class:`UploadInProgress`).
2. The upload is then processed in the background in chunks of learners: each learner
   is validated and mapped (:mod:`services.enrolment.ilr.mapping`), each of its aims
   compared with the enrolment accepted before (:mod:`services.enrolment.ilr.diff`), and
   a chunk's new enrolments, changed enrolments and their events are written in one
   transaction (one unit of work), sealed exactly as for JSON intake. A learner's
   errors reject that learner's aims only. Progress (learners processed) is recorded
   after every chunk; the report (counts, issues by rule, learners missing since the
   previous upload) when done. Re-uploading a file (e.g. after an interruption) is
   safe: what was applied already is unchanged the second time.

Logs name uploads, counts and rule names only: never a learner reference, name, date of
birth, postcode or ethnicity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from services.enrolment.domain import Enrolment, Provider, Pseudonymiser
from services.enrolment.ilr.aims import AimCatalogue
from services.enrolment.ilr.diff import AimResult, AimStatus, diff_aim
from services.enrolment.ilr.mapping import (
    AimTarget,
    Issue,
    LearnerPlan,
    MappingContext,
    plan_learner,
)
from services.enrolment.ilr.parser import (
    FileProblem,
    IlrFileError,
    IlrHeader,
    RawLearner,
    check_ilr,
    read_ilr,
)
from services.enrolment.ilr.report import (
    DONE,
    UploadProgress,
    UploadStatus,
    failed,
    interrupted,
    upload_document,
)
from services.enrolment.ilr.repository import UploadStore
from services.enrolment.repository import AlreadyExists, VersionConflict
from services.enrolment.unit_of_work import UnitOfWork, UnitOfWorkFactory
from services.enrolment.use_cases.intake import Channel, EnrolmentService
from shared.cloudevents import Event
from shared.contracts.enrolment import EnrolmentSubmission
from shared.contracts.ilr import IlrYear
from shared.retries import retry_on_conflict

logger = logging.getLogger(__name__)

_WRITE_ATTEMPTS = 4
MISSING_LISTED = 1000
_PROGRESS_KIND = {
    "BreakInLearningStarted": "break",
    "LearningResumed": "resume",
    "EnrolmentCompleted": "completion",
    "EnrolmentWithdrawn": "withdrawal",
    "OutcomeRecorded": "outcome",
}


class UploadInProgress(Exception):
    """Another upload of the same provider and year is being processed."""


@dataclass(frozen=True)
class IlrOptions:
    chunk_learners: int = 250
    max_reported_issues: int = 5000
    spool_dir: str | None = None
    stale_after_s: float = 300.0
    max_concurrent: int = 1


def _spool_path(directory: str | None) -> str:
    handle, path = tempfile.mkstemp(prefix="ilr-upload-", suffix=".xml", dir=directory)
    os.close(handle)
    return path


def _check_file(path: str) -> tuple[IlrHeader, int]:
    with open(path, "rb") as source:
        result = check_ilr(source)
    return result.header, result.learners


def _take(items: Iterator[IlrHeader | RawLearner], n: int) -> list[RawLearner]:
    out: list[RawLearner] = []
    for item in items:
        if isinstance(item, RawLearner):
            out.append(item)
            if len(out) >= n:
                break
    return out


def _next_plans(
    items: Iterator[IlrHeader | RawLearner], n: int, ctx: MappingContext
) -> list[LearnerPlan]:
    return [plan_learner(raw, ctx) for raw in _take(items, n)]


def _diff_all(
    pairs: Sequence[tuple[Enrolment | None, AimTarget]],
    provider: Provider,
    pseudonyms: Pseudonymiser,
    now: datetime,
) -> list[AimResult]:
    return [diff_aim(stored, t, provider, pseudonyms, now.date(), now) for stored, t in pairs]


def _first_of_each_learner(
    plans: Sequence[LearnerPlan], seen: set[str], progress: UploadProgress
) -> tuple[list[LearnerPlan], list[Issue]]:
    """The plans of learners not met before in the file (``seen``: LearnRefNumbers so
    far), and an R06 error for each repeated one (not imported)."""
    issues: list[Issue] = []
    accepted: list[LearnerPlan] = []
    for plan in plans:
        if plan.learn_ref is not None and plan.learn_ref.upper() in seen:
            issues.append(
                Issue(
                    "R06",
                    "error",
                    "LearnRefNumber must be unique in the file; this learner was not "
                    "imported (the first with this LearnRefNumber was)",
                    "LearnRefNumber",
                    plan.learn_ref,
                    None,
                    plan.index,
                )
            )
            progress.learners_with_errors += 1
            progress.aims["rejected"] += len(plan.targets) + plan.rejected_aims
            continue
        if plan.learn_ref is not None:
            seen.add(plan.learn_ref.upper())
        accepted.append(plan)
    return accepted, issues


async def _spool(body: AsyncIterator[bytes], path: str) -> int:
    """Write the streamed body to ``path``; its size in bytes."""
    size = 0
    spool = await asyncio.to_thread(open, path, "wb")
    try:
        async for chunk in body:
            size += len(chunk)
            await asyncio.to_thread(spool.write, chunk)
    finally:
        spool.close()
    return size


def _check_uploader(provider: Provider, header: IlrHeader) -> None:
    if provider.ukprn not in (header.source_ukprn, header.provider_ukprn) or (
        header.source_ukprn != header.provider_ukprn
    ):
        raise IlrFileError(
            FileProblem.UKPRN_MISMATCH,
            "Header/Source/UKPRN and LearningProvider/UKPRN must both be the UKPRN "
            "of the provider whose key made the upload",
        )


class IlrIntake:
    def __init__(
        self,
        service: EnrolmentService,
        unit_of_work: UnitOfWorkFactory,
        uploads: UploadStore,
        pseudonyms: Pseudonymiser,
        *,
        catalogue: AimCatalogue | None = None,
        options: IlrOptions | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._service = service
        self._uow = unit_of_work
        self._uploads = uploads
        self._pseudonyms = pseudonyms
        self._catalogue = catalogue or AimCatalogue()
        self._options = options or IlrOptions()
        self._clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self._options.max_concurrent)

    # ------------------------------------------------------------------- receiving

    async def receive(self, provider: Provider, body: AsyncIterator[bytes]) -> dict[str, Any]:
        """Spool and check an upload; start processing it. Raises IlrFileError (nothing
        stored) or UploadInProgress."""
        path = _spool_path(self._options.spool_dir)
        started = False
        try:
            size = await _spool(body, path)
            if size == 0:
                raise IlrFileError(FileProblem.EMPTY, "the upload is empty")
            header, learners = await asyncio.to_thread(_check_file, path)
            _check_uploader(provider, header)
            now = self._clock()
            upload_id = "ilr_" + uuid.uuid4().hex
            lock_key = f"{provider.ukprn}|{header.year.code}"
            stale = now - timedelta(seconds=self._options.stale_after_s)
            if not await self._uploads.lock(lock_key, upload_id, now, stale):
                raise UploadInProgress(lock_key)
            progress = UploadProgress(learners_total=learners)
            doc = upload_document(upload_id, provider, header, size, progress, now)
            await self._uploads.create(doc)
            task = asyncio.create_task(
                self._run(doc, provider, header.year, path, progress, lock_key),
                name=f"ilr-upload-{upload_id}",
            )
            started = True
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            logger.info(
                "ILR upload %s accepted: %d learners, %d bytes, year %s",
                upload_id,
                learners,
                size,
                header.year.code,
            )
            return doc
        finally:
            if not started:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    # --------------------------------------------------------------------- reading

    async def get(self, provider: Provider, upload_id: str) -> dict[str, Any] | None:
        doc = await self._uploads.get(upload_id)
        if doc is None or doc.get("provider_id") != provider.provider_id:
            return None
        stale = self._clock() - timedelta(seconds=self._options.stale_after_s)
        updated = doc.get("updated_at")
        if doc["status"] == UploadStatus.PROCESSING and updated is not None:
            if updated.tzinfo is None:
                updated = updated.replace(tzinfo=UTC)
            if updated < stale:
                fields = {
                    "status": UploadStatus.INTERRUPTED,
                    "error": "processing stopped (the service restarted?); upload the file "
                    "again: what was applied already is not applied twice",
                }
                await self._uploads.update(upload_id, fields)
                doc.update(fields)
        return doc

    async def wait(
        self, provider: Provider, upload_id: str, timeout_s: float, interval_s: float = 0.25
    ) -> dict[str, Any] | None:
        """The upload once it is done, or as it stands after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout_s)
        while True:
            doc = await self.get(provider, upload_id)
            if doc is None or doc["status"] in DONE or loop.time() >= deadline:
                return doc
            await asyncio.sleep(min(interval_s, max(0.0, deadline - loop.time())))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------------ processing

    async def _run(
        self,
        doc: dict[str, Any],
        provider: Provider,
        year: IlrYear,
        path: str,
        progress: UploadProgress,
        lock_key: str,
    ) -> None:
        upload_id = doc["_id"]
        try:
            async with self._slots:
                await self._process(upload_id, provider, year, path, progress, lock_key)
            missing = await self._missing(provider, year, upload_id)
            # Free the provider-and-year slot before the report is final, so that a client
            # that sees "completed" can upload the next file at once.
            await self._uploads.unlock(lock_key, upload_id)
            await self._completed(upload_id, progress, missing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._uploads.update(upload_id, interrupted(progress, self._clock()))
            raise
        except Exception as exc:
            logger.exception("ILR upload %s failed (%s)", upload_id, type(exc).__name__)
            with contextlib.suppress(Exception):
                await self._uploads.update(upload_id, failed(progress, exc, self._clock()))
        finally:
            with contextlib.suppress(Exception):
                await self._uploads.unlock(lock_key, upload_id)
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _completed(
        self, upload_id: str, progress: UploadProgress, missing: dict[str, Any]
    ) -> None:
        await self._uploads.update(
            upload_id,
            {
                "status": UploadStatus.COMPLETED,
                "summary": progress.summary(),
                "issues": progress.issues,
                "issues_truncated": progress.issues_total > len(progress.issues),
                "missing_learners": missing,
                "updated_at": self._clock(),
                "finished_at": self._clock(),
            },
        )
        logger.info(
            "ILR upload %s completed: %d learners, aims %s, %d issue(s), %d missing",
            upload_id,
            progress.learners_processed,
            dict(progress.aims),
            progress.issues_total,
            missing["count"],
        )

    async def _process(
        self,
        upload_id: str,
        provider: Provider,
        year: IlrYear,
        path: str,
        progress: UploadProgress,
        lock_key: str,
    ) -> None:
        seen: set[str] = set()
        source = await asyncio.to_thread(open, path, "rb")
        with source:
            items = read_ilr(source)
            while True:
                now = self._clock()
                ctx = MappingContext(year, provider, now.date(), self._catalogue)
                plans = await asyncio.to_thread(
                    _next_plans, items, self._options.chunk_learners, ctx
                )
                if not plans:
                    break
                await self._chunk(upload_id, provider, year, plans, seen, progress)
                now = self._clock()
                await self._uploads.update(
                    upload_id, {"summary": progress.summary(), "updated_at": now}
                )
                await self._uploads.heartbeat(lock_key, upload_id, now)

    async def _chunk(
        self,
        upload_id: str,
        provider: Provider,
        year: IlrYear,
        plans: Sequence[LearnerPlan],
        seen: set[str],
        progress: UploadProgress,
    ) -> None:
        """Store one chunk of learners (one transaction) and count it in the report."""
        accepted, issues = _first_of_each_learner(plans, seen, progress)
        targets = [(plan, t) for plan in accepted for t in plan.targets]
        results = await self._write_targets(upload_id, provider, [t for _, t in targets])
        by_plan: dict[int, list[AimResult]] = {}
        for (plan, _), result in zip(targets, results, strict=True):
            by_plan.setdefault(plan.index, []).append(result)
        accepted_submissions: list[EnrolmentSubmission] = []
        progress_kinds: list[str] = []
        for plan in accepted:
            plan_results = by_plan.get(plan.index, [])
            issues.extend(plan.issues)
            for result in plan_results:
                issues.extend(result.issues)
                if result.status is AimStatus.CREATED and result.enrolment is not None:
                    accepted_submissions.append(result.enrolment.submission)
                progress_kinds += [
                    _PROGRESS_KIND[type(e).__name__]
                    for e in result.events
                    if type(e).__name__ in _PROGRESS_KIND
                ]
            progress.count_learner(plan, plan_results)
        progress.learners_processed += len(plans)
        self._service.count_stored(accepted_submissions, progress_kinds, Channel.ILR)
        learners_in_file = [
            self._pseudonyms.learner(provider.ukprn, plan.learn_ref)
            for plan in plans
            if plan.learn_ref is not None
        ]
        await self._uploads.record_learners(
            provider.ukprn, year.code, upload_id, learners_in_file, self._clock()
        )
        progress.count_issues(issues, self._options.max_reported_issues)

    async def _write_targets(
        self, upload_id: str, provider: Provider, targets: Sequence[AimTarget]
    ) -> list[AimResult]:
        """What each target changes against the stored enrolments, written in one
        transaction with its events (decided again if a concurrent write got there)."""
        ids = {id(t): self._enrolment_id(provider, t) for t in targets}

        async def diff_and_write(uow: UnitOfWork) -> tuple[list[AimResult], bool]:
            stored = await uow.enrolments.get_many(list(set(ids.values())))
            now = self._clock()
            pairs = [(stored.get(ids[id(t)]), t) for t in targets]
            results = await asyncio.to_thread(_diff_all, pairs, provider, self._pseudonyms, now)
            created = [r.enrolment for r in results if r.status is AimStatus.CREATED]
            updated = [
                (r.enrolment, r.expected_version)
                for r in results
                if r.status is AimStatus.UPDATED
                and r.enrolment is not None
                and r.expected_version is not None
            ]
            changed: list[tuple[Enrolment, Sequence[Event]]] = [
                (r.enrolment, r.events)
                for r in results
                if r.status in (AimStatus.CREATED, AimStatus.UPDATED) and r.enrolment is not None
            ]
            messages = await self._service.event_messages(changed, now)
            await uow.enrolments.add([e for e in created if e is not None])
            await uow.enrolments.save_many(updated)
            uow.publish(messages)
            return results, bool(messages)

        results, published = await retry_on_conflict(
            lambda: self._uow().run(diff_and_write),
            conflict=(AlreadyExists, VersionConflict),
            attempts=_WRITE_ATTEMPTS,
            what=f"ILR upload {upload_id} chunk",
        )
        if published:
            self._service.committed()
        return results

    def _enrolment_id(self, provider: Provider, target: AimTarget) -> str:
        return self._pseudonyms.enrolment_id_of(
            provider.ukprn, target.learn_ref, target.learning_aim_ref, target.start_date
        )

    async def _missing(self, provider: Provider, year: IlrYear, upload_id: str) -> dict[str, Any]:
        """Learners of earlier uploads (this provider and year) absent from this one:
        reported, never withdrawn."""
        learners = await self._uploads.missing_learners(provider.ukprn, year.code, upload_id)
        refs = await self._uploads.learner_refs(provider.provider_id, learners)
        listed = sorted(refs.values())
        return {
            "count": len(refs),
            "learn_ref_numbers": listed[:MISSING_LISTED],
            "truncated": len(listed) > MISSING_LISTED,
        }
