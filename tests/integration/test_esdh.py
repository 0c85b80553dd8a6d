"""The SBSYS and GetOrganized adapters against local test servers that follow the vendors'
APIs, and remote journalising (filing.py) on SQLite and PostgreSQL: one case and one document
per item through outages and lost answers; a refusal sends the item to triage."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from services.journal import Journal, LocalArchive
from services.journal.filing import Filing, files_of
from services.journal.getorganized import GetOrganized
from services.journal.receipt_text import reference
from services.journal.sbsys import Sbsys
from shared import audit
from shared.contracts import ItemRouted, JournalAction, RouteOutcome
from shared.db.models import AuditEntry, Item
from shared.errors import PermanentError, TransientError
from shared.esdh import GetOrganizedConfig, NewCase, NewDocument, SbsysConfig
from shared.runtime import Runtime
from shared.settings import DEMO_TENANT_DIR, Settings
from tests.support import getorganized_server as gos
from tests.support import sbsys_server as sbs
from tests.support.getorganized_server import GetOrganizedServer, getorganized_server  # noqa: F401
from tests.support.sbsys_server import SbsysServer, sbsys_server  # noqa: F401


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TEST_SBSYS_SECRET", sbs.CLIENT_SECRET)
    monkeypatch.setenv("TEST_GO_PASSWORD", gos.PASSWORD)
    yield


def _sbsys(server: SbsysServer) -> Sbsys:
    return Sbsys(SbsysConfig(base_url=server.url, token_url=server.token_url,
                             client_id=sbs.CLIENT_ID, client_secret_env="TEST_SBSYS_SECRET",
                             timeout=5))


def _go(server: GetOrganizedServer) -> GetOrganized:
    return GetOrganized(GetOrganizedConfig(base_url=server.url, username=gos.USERNAME,
                                           password_env="TEST_GO_PASSWORD", timeout=5))


def _mail() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "borger@example.dk", "post@demoby.dk", "Klage"
    msg.set_content("Jeg klager over en parkeringsafgift.")
    msg.add_attachment(b"%PDF-1.4 afgift", maintype="application", subtype="pdf",
                       filename="afgift.pdf")
    return msg.as_bytes()


def _doc(item_id: uuid.UUID) -> NewDocument:
    return NewDocument(title="Klage", item_id=item_id, files=files_of(item_id, _mail()))


async def test_sbsys_case_lookup_search_create_and_journalise(
        sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    sbsys_server.add_case("05.09.04-G01-1-26", "Parkering", cpr="010190-1234")
    esdh = _sbsys(sbsys_server)
    found = await esdh.find_case("05.09.04-G01-1-26")
    assert found is not None and (found.title, found.clerk) == ("Parkering", "ALA")
    assert await esdh.find_case("99.99.99-G01-1-26") is None
    assert [c.case_number for c in await esdh.search_cases("0101901234")] == ["05.09.04-G01-1-26"]
    case = await esdh.create_case(NewCase(title="Ny klage", kle="05.09.04", clerk="TBN",
                                          party="010190-1234"), idempotency_key="k:case")
    assert case.case_number == "05.09.04-G01-2-" + case.case_number.rsplit("-", 1)[1]
    assert case.clerk == "TBN"
    sag = sbsys_server.cases[-1]
    assert sag["PrimaerPerson"] == {"CprNummer": "010190-1234"}
    item_id = uuid.uuid4()
    doc = await esdh.add_document(case.case_number, _doc(item_id), idempotency_key="k:doc")
    [stored] = sbsys_server.documents
    assert str(stored["Id"]) == doc.document_id and stored["SagID"] == sag["Id"]
    assert stored["DokumentArt"] == {"Id": 1, "Navn": "Indgående"}
    assert [f["Navn"] for f in stored["Filer"]] == [f"PF-{item_id.hex[:10].upper()}.eml",
                                                     "afgift.pdf"]
    assert stored["Filer"][1]["Data"] == b"%PDF-1.4 afgift"
    await esdh.journalise(doc.document_id)
    assert sbsys_server.token_requests == 1  # one token, reused
    await esdh.aclose()


async def test_sbsys_file_names_carry_no_cpr_numbers(
        sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    # A file's name is listed with the document (and in access-to-files lists) like a title.
    esdh = _sbsys(sbsys_server)
    case = await esdh.create_case(NewCase(title="Løn", kle="05.09.04"), idempotency_key="c:case")
    item_id = uuid.uuid4()
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "borger@example.dk", "post@demoby.dk", "Løn"
    msg.set_content("Lønseddel vedhæftet.")
    msg.add_attachment(b"%PDF-1.4 loen", maintype="application", subtype="pdf",
                       filename="0101901234_lønseddel 010190 1234.pdf")
    await esdh.add_document(case.case_number, NewDocument(
        title="Løn", item_id=item_id, files=files_of(item_id, msg.as_bytes())),
        idempotency_key="c:doc")
    [stored] = sbsys_server.documents
    names = [f["Navn"] for f in stored["Filer"]]
    assert names[1] == "CPR_lønseddel CPR.pdf", names
    assert stored["Filer"][1]["Data"] == b"%PDF-1.4 loen"
    await esdh.aclose()


async def test_sbsys_lost_answer_and_outage_never_file_twice(
        sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    sbsys_server.add_case("05.09.04-G01-1-26", "Parkering")
    esdh = _sbsys(sbsys_server)
    sbsys_server.faults.lose = 1  # filed, but the answer is lost on the way
    with pytest.raises(TransientError):
        await esdh.add_document("05.09.04-G01-1-26", _doc(uuid.uuid4()), idempotency_key="k")
    sbsys_server.faults.down = 1
    with pytest.raises(TransientError):
        await esdh.add_document("05.09.04-G01-1-26", _doc(uuid.uuid4()), idempotency_key="k")
    doc = await esdh.add_document("05.09.04-G01-1-26", _doc(uuid.uuid4()), idempotency_key="k")
    assert [str(d["Id"]) for d in sbsys_server.documents] == [doc.document_id]
    await esdh.aclose()


async def test_sbsys_lost_create_case_answer_never_makes_a_second_case(
        sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    sbsys_server.add_case("05.09.04-G01-1-26", "Klage (Postfordeler PF-0000000000) ældre")
    esdh = _sbsys(sbsys_server)
    key = f"item:{uuid.uuid4()}:case"
    sbsys_server.faults.lose = 1  # created, the answer lost on the way
    with pytest.raises(TransientError):
        await esdh.create_case(NewCase(title="Klage", kle="05.09.04"), idempotency_key=key)
    sbsys_server.faults.down = 1
    with pytest.raises(TransientError):
        await esdh.create_case(NewCase(title="Klage", kle="05.09.04"), idempotency_key=key)
    first = await esdh.create_case(NewCase(title="Klage", kle="05.09.04"), idempotency_key=key)
    again = await _sbsys(sbsys_server).create_case(  # a new process, no memory of the first
        NewCase(title="Klage", kle="05.09.04"), idempotency_key=key)
    assert first == again and len(sbsys_server.cases) == 2
    assert sbsys_server.cases[1]["Nummer"] == first.case_number
    other = await esdh.create_case(NewCase(title="Klage", kle="05.09.04"),
                                   idempotency_key="item:not-a-uuid:case")
    assert other.case_number != first.case_number and len(sbsys_server.cases) == 3
    await esdh.aclose()


async def test_sbsys_refusals_are_permanent(sbsys_server: SbsysServer,  # noqa: F811
                                            secrets_env: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    sbsys_server.add_case("05.09.04-G01-1-26", "Afsluttet", status="Afsluttet")
    esdh = _sbsys(sbsys_server)
    with pytest.raises(PermanentError, match="afsluttet"):
        await esdh.add_document("05.09.04-G01-1-26", _doc(uuid.uuid4()), idempotency_key="x")
    with pytest.raises(PermanentError, match="no case"):
        await esdh.add_document("01.01.01-G01-9-26", _doc(uuid.uuid4()), idempotency_key="y")
    monkeypatch.setenv("TEST_SBSYS_SECRET", "forkert")
    with pytest.raises(PermanentError, match="401"):
        await _sbsys(sbsys_server).find_case("05.09.04-G01-1-26")
    await esdh.aclose()


async def test_getorganized_find_search_create_add_finalise(
        getorganized_server: GetOrganizedServer, secrets_env: None) -> None:  # noqa: F811
    getorganized_server.add_case("EMN-2026-000001", "Byggesag",
                                 ows_CCMContactData_CPR="0101901234")
    esdh = _go(getorganized_server)
    found = await esdh.find_case("EMN-2026-000001")
    assert found is not None and found.title == "Byggesag"
    assert await esdh.find_case("EMN-2026-999999") is None
    assert [c.case_number for c in await esdh.search_cases("010190-1234")] == ["EMN-2026-000001"]
    getorganized_server.faults.lose = 1  # created, answer lost: the retry finds it by its key
    with pytest.raises(TransientError):
        await esdh.create_case(NewCase(title="Klage", kle="05.09.04"), idempotency_key="k:case")
    case = await esdh.create_case(NewCase(title="Klage", kle="05.09.04"),
                                  idempotency_key="k:case")
    assert [c["ows_CaseID"] for c in getorganized_server.cases] == ["EMN-2026-000001",
                                                                     case.case_number]
    assert getorganized_server.cases[1]["ows_CCMKLE"] == "05.09.04"
    item_id = uuid.uuid4()
    getorganized_server.faults.lose = 1
    with pytest.raises(TransientError):
        await esdh.add_document(case.case_number, _doc(item_id), idempotency_key="k:doc")
    doc = await esdh.add_document(case.case_number, _doc(item_id), idempotency_key="k:doc")
    docs = getorganized_server.documents
    assert len(docs) == 2 and str(docs[0]["DocId"]) == doc.document_id  # mail + attachment
    assert docs[0]["Versions"] == 2 and docs[0]["Metadata"]["ows_Dokumentart"] == "Indgående"
    assert docs[1]["Data"] == b"%PDF-1.4 afgift"
    await esdh.journalise(doc.document_id)
    await esdh.journalise(doc.document_id)  # harmless twice
    assert docs[0]["Finalized"]
    with pytest.raises(PermanentError):
        await esdh.add_document("EMN-2026-999999", _doc(item_id), idempotency_key="z")
    await esdh.aclose()


# -- remote journalising through the journal's filing --------------------------------------

@pytest.fixture
async def runtime(db_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime(Settings(data_dir=tmp_path / "data", database_url=db_url,  # type: ignore[arg-type]
                          amqp_url="memory://", tenant_dir=DEMO_TENANT_DIR))  # type: ignore[arg-type]
    await rt.start()
    yield rt
    await rt.stop()


async def _routed_item(rt: Runtime, *, journal: JournalAction = JournalAction.NEW_CASE,
                       case_number: str | None = None, subject: str = "Klage",
                       **decided: Any) -> ItemRouted:
    raw = await rt.blobs.put(_mail(), "message/rfc822")
    item_id = uuid.uuid4()
    async with rt.uow() as uow:
        uow.session.add(Item(id=item_id, correlation_id=uuid.uuid4(), channel="email",
                             mailbox="post", source_ref=f"t-{item_id}", raw_sha256=raw.sha256,
                             subject=subject, sender="borger@example.dk", state="routed"))
        await uow.commit()
    return ItemRouted(correlation_id=uuid.uuid4(), producer="router", item_id=item_id,
                      outcome=RouteOutcome.ROUTED, unit="parkering", clerk="ALA",
                      **{"kle": "05.09.04", **decided}, journal=journal,
                      case_number=case_number, receipt=True)


async def test_filing_through_an_outage_files_once_and_finishes_the_item(
        runtime: Runtime, sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    filing = Filing(runtime.uow, runtime.tenant, _sbsys(sbsys_server), runtime.blobs,
                    runtime.relay)
    event = await _routed_item(runtime)
    sbsys_server.faults.lose = 1  # the case is created, its answer lost
    with pytest.raises(TransientError):
        await filing.handle(event)
    sbsys_server.faults.down = 2
    for _ in range(2):
        with pytest.raises(TransientError):
            await filing.handle(event)
    await filing.handle(event)
    await filing.handle(event)  # a redelivery after success does nothing
    async with runtime.uow() as uow:
        item = await uow.session.get(Item, event.item_id)
        assert item is not None and item.state == "done"
    # SBSYS takes no idempotency key and the answer to "create case" was lost: the retry found
    # the case by the tag in its title instead of making a second one.
    assert len(sbsys_server.cases) == 1 and len(sbsys_server.documents) == 1
    assert sbsys_server.cases[0]["SagsTitel"] == f"Klage (Postfordeler {reference(event.item_id)})"
    assert item.case_number == next(s["Nummer"] for s in sbsys_server.cases
                                    if s["Id"] == sbsys_server.documents[0]["SagID"])
    await runtime.chain_audit()
    async with runtime.uow() as uow:
        entry = (await uow.session.execute(select(AuditEntry).where(
            AuditEntry.item_id == event.item_id, AuditEntry.action == "journalised"))
        ).scalar_one()
        assert entry.case_number == item.case_number
        assert entry.details["document_id"] == str(sbsys_server.documents[0]["Id"])
        assert (await audit.verify(uow.session)).ok


async def test_filing_a_refused_case_sends_the_item_to_triage_with_the_reason(
        runtime: Runtime, getorganized_server: GetOrganizedServer,  # noqa: F811
        secrets_env: None) -> None:
    getorganized_server.add_case("EMN-2026-000001", "Lukket", status="Afsluttet")
    filing = Filing(runtime.uow, runtime.tenant, _go(getorganized_server), runtime.blobs,
                    runtime.relay)
    event = await _routed_item(runtime, journal=JournalAction.MATCHED_CASE,
                               case_number="EMN-2026-000001")
    await filing.handle(event)
    async with runtime.uow() as uow:
        item = await uow.session.get(Item, event.item_id)
        assert item is not None and item.state == "triage"
        assert "EMN-2026-000001" in (item.failure_reason or "")
    assert getorganized_server.documents == []


# -- what the rule said: title and KLE of a new case, confidential documents, no filing ------

TITLE = "Parkeringsafgift AB12345 (cpr 010190-1234, også 0202901234 og 030390-XXXX)"


async def _state(rt: Runtime, item_id: uuid.UUID) -> str:
    async with rt.uow() as uow:
        item = await uow.session.get(Item, item_id)
        assert item is not None
        return item.state


async def test_sbsys_new_case_has_the_rules_title_and_kle_and_a_protected_document(
        runtime: Runtime, sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    filing = Filing(runtime.uow, runtime.tenant, _sbsys(sbsys_server), runtime.blobs,
                    runtime.relay)
    event = await _routed_item(runtime, kle="05.09.06", case_title=TITLE + " " + "x" * 400,
                               sensitive=True)
    await filing.handle(event)
    assert await _state(runtime, event.item_id) == "done"
    [sag] = sbsys_server.cases
    title = sag["SagsTitel"]
    assert title.startswith("Parkeringsafgift AB12345 (cpr [CPR-nr.], også [CPR-nr.] og "
                            "[CPR-nr.])")
    assert title.endswith(f"… (Postfordeler {reference(event.item_id)})") and len(title) <= 250
    assert "0101" not in title and "0202" not in title and "0303" not in title
    assert sag["Emne"] == {"Nummer": "05.09.06"} and sag["Nummer"].startswith("05.09.06-G01-")
    [doc] = sbsys_server.documents
    assert doc["ErBeskyttet"] is True and doc["Navn"] == "Klage"


async def test_getorganized_new_case_has_the_rules_title_and_kle_and_a_confidential_document(
        runtime: Runtime, getorganized_server: GetOrganizedServer,  # noqa: F811
        secrets_env: None) -> None:
    filing = Filing(runtime.uow, runtime.tenant, _go(getorganized_server), runtime.blobs,
                    runtime.relay)
    event = await _routed_item(runtime, kle="05.09.06", case_title=TITLE, sensitive=True)
    await filing.handle(event)
    assert await _state(runtime, event.item_id) == "done"
    [case] = getorganized_server.cases
    assert case["ows_Title"] == ("Parkeringsafgift AB12345 (cpr [CPR-nr.], også [CPR-nr.] og "
                                 "[CPR-nr.])")
    assert case["ows_CCMKLE"] == "05.09.06"
    assert [d["Metadata"].get("ows_Fortrolig") for d in getorganized_server.documents] == [
        "1", "1"]  # the mail and its attachment
    # an item not marked sensitive: no confidentiality column, the subject as title
    plain = await _routed_item(runtime, subject="Klage over 010190-1234")
    await filing.handle(plain)
    assert getorganized_server.cases[-1]["ows_Title"] == "Klage over [CPR-nr.]"
    assert "ows_Fortrolig" not in getorganized_server.documents[-1]["Metadata"]


async def test_matched_case_files_there_and_journal_none_files_nothing(
        runtime: Runtime, sbsys_server: SbsysServer, secrets_env: None) -> None:  # noqa: F811
    sbsys_server.add_case("05.09.04-G01-1-26", "Parkering")
    filing = Filing(runtime.uow, runtime.tenant, _sbsys(sbsys_server), runtime.blobs,
                    runtime.relay)
    matched = await _routed_item(runtime, journal=JournalAction.MATCHED_CASE,
                                 case_number="05.09.04-G01-1-26")
    await filing.handle(matched)
    assert len(sbsys_server.cases) == 1
    [doc] = sbsys_server.documents
    assert doc["SagID"] == sbsys_server.cases[0]["Id"] and doc["ErBeskyttet"] is False
    # journal: none -- the journal finishes the item itself, the ESDH sees nothing
    nothing = await _routed_item(runtime, journal=JournalAction.NONE)
    await filing.handle(nothing)
    async with runtime.uow() as uow:
        await Journal(runtime.tenant, LocalArchive, remote=True).handle(nothing, uow)
        await uow.commit()
    assert await _state(runtime, nothing.item_id) == "done"
    assert len(sbsys_server.cases) == 1 and len(sbsys_server.documents) == 1
