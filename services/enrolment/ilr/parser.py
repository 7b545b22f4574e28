"""Streaming reader of ILR XML files. Pure apart from reading the given file object.

The file is read with ``defusedxml``'s ``iterparse`` (expat underneath) one element at a
time and every ``Learner`` is cleared from the tree once it has been turned into a
:class:`RawLearner`, so memory stays flat whatever the file's size. Hostile XML is
refused before anything is built from it: **any** document type declaration is
forbidden (ILR files have none), which rules out entity expansion ("billion laughs"),
external entities (XXE) and external DTDs alike; the parser never opens a network
connection or a local file.

The reader checks the envelope (root ``Message`` in a supported ILR namespace,
``Header/CollectionDetails/Year`` of the same year, both UKPRNs present) and hands out
each learner's fields as text; what the fields mean is :mod:`.mapping`'s business.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, Any
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from shared.contracts.ilr import ILR_YEARS, YEAR_BY_NAMESPACE, IlrYear

# A single learner element larger than this many aims is refused whole (a real learner
# has a handful; this only bounds what one element may hold in memory).
MAX_AIMS_PER_LEARNER = 200


class FileProblem(StrEnum):
    """Why a whole file is refused (each becomes a problem+json type)."""

    MALFORMED = "ilr-malformed"
    FORBIDDEN_XML = "ilr-forbidden-xml"
    WRONG_NAMESPACE = "ilr-wrong-namespace"
    WRONG_YEAR = "ilr-wrong-year"
    NOT_AN_ILR_FILE = "ilr-not-an-ilr-file"
    UKPRN_MISMATCH = "ilr-ukprn-mismatch"
    EMPTY = "ilr-empty"


class IlrFileError(Exception):
    """The file as a whole cannot be taken; nothing of it is stored."""

    def __init__(self, problem: FileProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class IlrHeader:
    year: IlrYear
    source_ukprn: str
    provider_ukprn: str
    serial_no: str | None = None
    file_datetime: str | None = None


@dataclass(frozen=True)
class RawDelivery:
    """One ``LearningDelivery``: its simple fields as text, and its FAM entries."""

    fields: dict[str, str]
    fams: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if value else None

    def fam(self, fam_type: str) -> list[str]:
        return [code for t, code in self.fams if t == fam_type]


@dataclass(frozen=True)
class RawLearner:
    """One ``Learner`` (``index``: its position in the file, from 0)."""

    index: int
    fields: dict[str, str]
    deliveries: tuple[RawDelivery, ...] = ()
    too_many_aims: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if value else None


def _local(tag: str) -> tuple[str, str]:
    """``{namespace}Name`` → (namespace, Name)."""
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


def _text(elem: Any) -> str:
    return (elem.text or "").strip()


def _simple_fields(elem: Any) -> dict[str, str]:
    return {_local(c.tag)[1]: _text(c) for c in elem if len(c) == 0}


def _find_text(elem: Any, *path: str) -> str | None:
    node = elem
    for name in path:
        node = next((c for c in node if _local(c.tag)[1] == name), None)
        if node is None:
            return None
    text = _text(node)
    return text or None


def _learner(index: int, elem: Any) -> RawLearner:
    fields: dict[str, str] = {}
    deliveries: list[RawDelivery] = []
    too_many = False
    for child in elem:
        name = _local(child.tag)[1]
        if name == "LearningDelivery":
            if len(deliveries) >= MAX_AIMS_PER_LEARNER:
                too_many = True
                continue
            fams = tuple(
                (_find_text(f, "LearnDelFAMType") or "", _find_text(f, "LearnDelFAMCode") or "")
                for f in child
                if _local(f.tag)[1] == "LearningDeliveryFAM"
            )
            deliveries.append(RawDelivery(_simple_fields(child), fams))
        elif len(child) == 0:
            fields[name] = _text(child)
    return RawLearner(index, fields, tuple(deliveries), too_many)


def _header(root_ns: str, year: IlrYear, header: Any | None, provider: Any | None) -> IlrHeader:
    if header is None or provider is None:
        raise IlrFileError(
            FileProblem.NOT_AN_ILR_FILE,
            "Header and LearningProvider must come before the first Learner",
        )
    stated = _find_text(header, "CollectionDetails", "Year")
    if stated != year.code:
        supported = ", ".join(f"{y.code} ({y.namespace})" for y in ILR_YEARS.values())
        raise IlrFileError(
            FileProblem.WRONG_YEAR,
            f"Header/CollectionDetails/Year must be {year.code} for namespace "
            f"{root_ns}; supported years: {supported}",
        )
    source = _find_text(header, "Source", "UKPRN")
    provider_ukprn = _find_text(provider, "UKPRN")
    if not source or not provider_ukprn:
        raise IlrFileError(
            FileProblem.NOT_AN_ILR_FILE,
            "Header/Source/UKPRN and LearningProvider/UKPRN are required",
        )
    return IlrHeader(
        year=year,
        source_ukprn=source,
        provider_ukprn=provider_ukprn,
        serial_no=_find_text(header, "Source", "SerialNo"),
        file_datetime=_find_text(header, "Source", "DateTime"),
    )


def read_ilr(source: IO[bytes]) -> Iterator[IlrHeader | RawLearner]:
    """Yield the file's header, then each learner, in file order.

    Raises :class:`IlrFileError` for a file that cannot be taken (malformed XML, a
    document type declaration, an unsupported namespace or year, a missing header),
    possibly after some learners have been yielded: callers that must not act on a bad
    file read it through once first (:func:`check_ilr`).
    """
    root: Any = None
    root_ns = ""
    year: IlrYear | None = None
    header: Any = None
    provider: Any = None
    announced = False
    learners = 0
    depth = 0
    try:
        for event, elem in iterparse(source, events=("start", "end"), forbid_dtd=True):
            ns, name = _local(elem.tag)
            if event == "start":
                depth += 1
                if root is None:
                    root, root_ns = elem, ns
                    if name != "Message":
                        raise IlrFileError(
                            FileProblem.NOT_AN_ILR_FILE,
                            "the root element must be the ILR Message",
                        )
                    year = YEAR_BY_NAMESPACE.get(ns)
                    if year is None:
                        supported = ", ".join(y.namespace for y in ILR_YEARS.values())
                        raise IlrFileError(
                            FileProblem.WRONG_NAMESPACE,
                            f"unsupported ILR namespace; expected one of: {supported}",
                        )
                elif ns != root_ns:
                    raise IlrFileError(
                        FileProblem.WRONG_NAMESPACE,
                        "every element must be in the namespace of the Message",
                    )
                elif depth == 2 and name == "Learner" and not announced:
                    assert year is not None
                    yield _header(root_ns, year, header, provider)
                    announced = True
                continue
            depth -= 1
            if depth != 1:
                continue
            # A child of Message has ended.
            if name == "Header":
                header = elem
            elif name == "LearningProvider":
                provider = elem
            elif name == "Learner":
                yield _learner(learners, elem)
                learners += 1
                root.clear()  # the learner (and anything before it) is done with
            elif name == "LearnerDestinationandProgression":
                root.clear()
        if root is None:
            raise IlrFileError(FileProblem.EMPTY, "the file is empty")
        if not announced:
            assert year is not None
            yield _header(root_ns, year, header, provider)
    except DefusedXmlException:
        raise IlrFileError(
            FileProblem.FORBIDDEN_XML,
            "document type declarations (DTDs) and entities are not allowed in ILR files",
        ) from None
    except ParseError as exc:
        line, column = getattr(exc, "position", (0, 0))
        if root is None and "no element found" in str(exc):
            raise IlrFileError(FileProblem.EMPTY, "the file is empty") from None
        raise IlrFileError(
            FileProblem.MALFORMED, f"the file is not well-formed XML (line {line}, column {column})"
        ) from None


@dataclass(frozen=True)
class FileCheck:
    header: IlrHeader
    learners: int


def check_ilr(source: IO[bytes]) -> FileCheck:
    """Read the whole file once (streaming) without acting on it: the header and the
    number of learners, or :class:`IlrFileError`."""
    header: IlrHeader | None = None
    learners = 0
    for item in read_ilr(source):
        if isinstance(item, IlrHeader):
            header = item
        else:
            learners += 1
    assert header is not None
    return FileCheck(header, learners)
