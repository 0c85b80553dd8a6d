"""Routing rules for administrators: read, save (each change a new version), enable, disable,
delete, history with diffs, and a dry run against recent items or a labelled file.

Every change writes the whole rule set as the next version (`shared.rules.store`) and an audit
entry in the same transaction; the router picks the new version up within `rules_refresh`
seconds. An invalid rule answers 422 naming the field. Only administrators get here.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import IntegrityError

from shared import audit
from shared.receipt_templates import named_receipt_templates
from shared.rules import Rule, RuleError, RuleSet, load_yaml, parse_yaml, store
from shared.rules.replay import (
    LabelledItem,
    Organisation,
    Replayed,
    replay_labelled,
    replay_recent,
    summarise,
)
from shared.rules.store import StaleVersion

from .deps import Administrator, Session, current_principal
from .routes import blobs, sensitive_units, tenant
from .schemas import Problem, UtcDatetime

router = APIRouter(prefix="/api/v1/rules", tags=["rules"],
                   dependencies=[Depends(current_principal)],
                   responses={401: {"model": Problem}, 403: {"model": Problem}})
BaseVersion = Annotated[int | None, Query(ge=0, le=2**31 - 1,
    description="The version the change is based on: 409 if the rule set moved on since.")]
MAX_UPLOAD = 20 * 1024 * 1024


class RuleSetOut(BaseModel):
    version: int | None = Field(description="None: no version in the database yet; the "
                                            "tenant's rules.yaml is in force.")
    source: str
    author: str | None = None
    created_at: UtcDatetime | None = None
    ruleset: RuleSet


class RuleOut(BaseModel):
    version: int | None
    rule: Rule


class ChangeOut(BaseModel):
    rule: str | None
    kind: str
    field: str | None = None
    old: Any = None
    new: Any = None
    words: str


class VersionOut(BaseModel):
    version: int
    author: str
    comment: str
    created_at: UtcDatetime
    changes: list[ChangeOut]


class SimulateRequest(BaseModel):
    rules: RuleSet | None = Field(None, description="The proposed rule set (default: the "
                                                    "active one).")
    last: int = Field(100, ge=1, le=1000, description="Replay this many most recent items.")
    items: list[LabelledItem] | None = Field(
        None, max_length=2000, description="Labelled items to replay instead (Eksempelby "
                                           "format); compared with the active rule set.")
    only_changed: bool = True


class SimulatedItem(BaseModel):
    item: str
    expected: str | None = None
    old: dict[str, Any] | None
    new: dict[str, Any]
    changed: list[str]


class SimulateResult(BaseModel):
    based_on: int | None
    items: int
    changed: int
    skipped: int = Field(0, description="Items whose stored events retention has deleted.")
    hidden: int = Field(0, description="Items of sensitive units, counted but not shown.")
    right_before: int | None = None
    right_after: int | None = None
    results: list[SimulatedItem]


def _invalid(problems: list[tuple[str, str]], prefix: tuple[str, ...] = ("body",)) -> NoReturn:
    raise RequestValidationError([
        {"loc": [*prefix, *field.split(".")], "msg": f"{field}: {message}",
         "type": "value_error"} for field, message in problems])


async def _current(request: Request, s: Session) -> tuple[int | None, RuleSet, Any]:
    row = await store.get(s)
    if row is None:
        return None, load_yaml(tenant(request).rules_path()), None
    return row.version, RuleSet.parse(row.document, f"version {row.version}"), row


def _org(request: Request) -> Organisation:
    return Organisation.of(tenant(request), request.app.state.settings.rule_regex_timeout)


async def _save(request: Request, s: Session, admin: Administrator, ruleset: RuleSet, *,
                action: str, comment: str, base: int | None, check_base: bool,
                rule: str | None = None) -> RuleSetOut:
    """Validate against the organisation, write the next version and its audit entry."""
    try:
        ruleset = RuleSet.parse(ruleset.model_dump(by_alias=True), "rules")
        ruleset.check(_org(request).clerks_by_unit(),
                      receipt_templates=named_receipt_templates(tenant(request).directory))
    except RuleError as exc:
        # A one-rule request names the field in its own body: "then.route", not "rules.5...".
        names = [r.name for r in ruleset.rules]
        at = f"rules.{names.index(rule)}." if rule in names else None
        _invalid([(f.removeprefix(at), m) if at and f.startswith(at) else (f, m)
                  for f, m in exc.problems])
    version, before, _ = await _current(request, s)
    try:
        if version is None:
            # The first change from rules.yaml: keep what was in force as the first version,
            # so the history shows this change against it.
            baseline = await store.save(s, before, author="rules.yaml",
                                        comment="the tenant's rules.yaml, in force until now")
            base = baseline.version if base is None else base
        row = await store.save(s, ruleset, author=admin.name, comment=comment,
                               base_version=base, check_base=check_base)
        changes = store.diff(before.document(), row.document)
        await audit.append(s, action=action, actor=admin.name, details={
            "version": row.version, "comment": comment,
            "changes": [c.words() for c in changes][:200]})
        await s.commit()
    except StaleVersion as exc:
        raise HTTPException(409, str(exc)) from None
    except IntegrityError:
        raise HTTPException(409, "the rule set changed meanwhile; reload and try again") \
            from None
    return RuleSetOut(version=row.version, source="database", author=row.author,
                      created_at=row.created_at, ruleset=ruleset)


@router.get("", response_model=RuleSetOut)
async def get_rules(request: Request, s: Session, _: Administrator) -> RuleSetOut:
    """The active rule set."""
    version, ruleset, row = await _current(request, s)
    return RuleSetOut(version=version, source="database" if row else "rules.yaml",
                      author=row.author if row else None,
                      created_at=row.created_at if row else None, ruleset=ruleset)


@router.put("", response_model=RuleSetOut, responses={409: {"model": Problem}})
async def replace_rules(body: RuleSet, request: Request, s: Session, admin: Administrator,
                        base_version: BaseVersion = None,
                        comment: Annotated[str, Query(max_length=2000)] = "") -> RuleSetOut:
    """Replace the whole rule set (a new version)."""
    return await _save(request, s, admin, body, action="rules_replaced", comment=comment,
                       base=base_version, check_base=base_version is not None)


@router.get("/history", response_model=list[VersionOut])
async def rules_history(s: Session, _: Administrator,
                        limit: Annotated[int, Query(ge=1, le=500)] = 50,
                        rule: str | None = None) -> list[VersionOut]:
    """Versions, newest first, each with who, when, why and what changed from the one before."""
    return [VersionOut(version=row.version, author=row.author, comment=row.comment,
                       created_at=row.created_at,
                       changes=[ChangeOut(**c.__dict__, words=c.words()) for c in changes])
            for row, changes in await store.history(s, limit=limit, rule=rule)]


@router.get("/versions/{version}", response_model=RuleSetOut,
            responses={404: {"model": Problem}})
async def get_version(version: Annotated[int, FastPath(ge=1, le=2**31 - 1)], s: Session,
                      _: Administrator) -> RuleSetOut:
    row = await store.get(s, version)
    if row is None:
        raise HTTPException(404, "no such version")
    return RuleSetOut(version=row.version, source="database", author=row.author,
                      created_at=row.created_at, ruleset=RuleSet.parse(row.document))


def _results(found: list[Replayed], hidden_units: set[str], only_changed: bool,
             ) -> tuple[list[SimulatedItem], int]:
    shown, hidden = [], 0
    for r in found:
        old, new = r.old or {}, r.new
        if old.get("unit") in hidden_units or new.get("unit") in hidden_units \
                or old.get("sensitive") or new.get("sensitive"):
            hidden += 1
            continue
        if r.changed or not only_changed:
            shown.append(SimulatedItem(item=r.ref, expected=r.expected, old=r.old, new=r.new,
                                       changed=list(r.changed)))
    return shown, hidden


async def _simulate(request: Request, s: Session, admin: Administrator,
                    proposed: RuleSet | None, last: int, items: list[LabelledItem] | None,
                    only_changed: bool) -> SimulateResult:
    version, current, _ = await _current(request, s)
    org = _org(request)
    try:
        proposed = RuleSet.parse((proposed or current).model_dump(by_alias=True), "rules")
        proposed.check(org.clerks_by_unit(),
                       receipt_templates=named_receipt_templates(tenant(request).directory))
    except RuleError as exc:
        _invalid(exc.problems, ("body", "rules"))
    skipped = 0
    if items is None:
        found, skipped = await replay_recent(s, blobs(request), proposed, org, last=last)
    else:
        found = replay_labelled(items, current, proposed, org)
    counts = summarise(found)
    shown, hidden = _results(found, sensitive_units(tenant(request)), only_changed)
    await audit.append(s, action="rules_simulated", actor=admin.name, details={
        "based_on": version, "items": counts["items"], "changed": counts["changed"]})
    await s.commit()
    return SimulateResult(based_on=version, items=counts["items"], changed=counts["changed"],
                          skipped=skipped, hidden=hidden, right_before=counts.get("right_before"),
                          right_after=counts.get("right_after"), results=shown)


@router.post("/simulate", response_model=SimulateResult)
async def simulate(body: SimulateRequest, request: Request, s: Session,
                   admin: Administrator) -> SimulateResult:
    """Dry run: what the proposed rules would decide for the last N items (against what they
    got) or for labelled items (against the active rules). Nothing is changed."""
    return await _simulate(request, s, admin, body.rules, body.last, body.items,
                           body.only_changed)


@router.post("/simulate/file", response_model=SimulateResult,
             responses={413: {"model": Problem}})
async def simulate_file(request: Request, s: Session, admin: Administrator,
                        file: Annotated[UploadFile, File(description="Labelled items, JSONL")],
                        rules: Annotated[str | None, Form(description="Proposed rules, YAML "
                                                          "(default: the active ones)")] = None,
                        only_changed: Annotated[bool, Form()] = True) -> SimulateResult:
    """Dry run on an uploaded labelled file (one Eksempelby item per line)."""
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, "the file is larger than 20 MB")
    items = []
    for n, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(LabelledItem.model_validate(json.loads(line)))
        except (ValueError, ValidationError) as exc:
            _invalid([(f"line {n}", str(exc).splitlines()[0])], ("body", "file"))
    proposed = None
    if rules is not None:
        try:
            proposed = parse_yaml(rules, "rules")
        except RuleError as exc:
            _invalid(exc.problems, ("body", "rules"))
        except Exception as exc:  # invalid YAML
            _invalid([("rules", str(exc))], ("body",))
    return await _simulate(request, s, admin, proposed, 1, items, only_changed)


def _find(ruleset: RuleSet, name: str) -> Rule:
    found = next((r for r in ruleset.rules if r.name == name), None)
    if found is None:
        raise HTTPException(404, "no such rule")
    return found


@router.post("", response_model=RuleOut, status_code=201, responses={409: {"model": Problem}})
async def create_rule(body: Rule, request: Request, s: Session, admin: Administrator,
                      comment: Annotated[str, Query(max_length=2000)] = "") -> RuleOut:
    """Add a rule (a new version); 409 if one of that name exists."""
    version, current, _ = await _current(request, s)
    if any(r.name == body.name for r in current.rules):
        raise HTTPException(409, "a rule of that name exists; PUT it to change it")
    out = await _save(request, s, admin, current.model_copy(
        update={"rules": (*current.rules, body)}), action="rule_created", comment=comment,
        base=version, check_base=True, rule=body.name)
    return RuleOut(version=out.version, rule=body)


@router.get("/{name}", response_model=RuleOut, responses={404: {"model": Problem}})
async def get_rule(name: str, request: Request, s: Session, _: Administrator) -> RuleOut:
    version, current, _row = await _current(request, s)
    return RuleOut(version=version, rule=_find(current, name))


@router.put("/{name}", response_model=RuleOut,
            responses={404: {"model": Problem}, 409: {"model": Problem}})
async def update_rule(name: str, body: Rule, request: Request, s: Session,
                      admin: Administrator, base_version: BaseVersion = None,
                      comment: Annotated[str, Query(max_length=2000)] = "") -> RuleOut:
    """Change a rule (a new version). A different `name` in the body renames it."""
    version, current, _ = await _current(request, s)
    _find(current, name)
    if body.name != name and any(r.name == body.name for r in current.rules):
        raise HTTPException(409, "another rule has that name")
    rules = tuple(body if r.name == name else r for r in current.rules)
    out = await _save(request, s, admin, current.model_copy(update={"rules": rules}),
                      action="rule_updated", comment=comment,
                      base=version if base_version is None else base_version, check_base=True,
                      rule=body.name)
    return RuleOut(version=out.version, rule=body)


async def _toggle(name: str, enabled: bool, request: Request, s: Session,
                  admin: Administrator, comment: str) -> RuleOut:
    version, current, _ = await _current(request, s)
    rule = _find(current, name).model_copy(update={"enabled": enabled})
    rules = tuple(rule if r.name == name else r for r in current.rules)
    out = await _save(request, s, admin, current.model_copy(update={"rules": rules}),
                      action="rule_enabled" if enabled else "rule_disabled", comment=comment,
                      base=version, check_base=True)
    return RuleOut(version=out.version, rule=rule)


@router.post("/{name}/enable", response_model=RuleOut,
             responses={404: {"model": Problem}, 409: {"model": Problem}})
async def enable_rule(name: str, request: Request, s: Session, admin: Administrator,
                      comment: Annotated[str, Query(max_length=2000)] = "") -> RuleOut:
    return await _toggle(name, True, request, s, admin, comment)


@router.post("/{name}/disable", response_model=RuleOut,
             responses={404: {"model": Problem}, 409: {"model": Problem}})
async def disable_rule(name: str, request: Request, s: Session, admin: Administrator,
                       comment: Annotated[str, Query(max_length=2000)] = "") -> RuleOut:
    return await _toggle(name, False, request, s, admin, comment)


@router.delete("/{name}", response_model=RuleSetOut,
               responses={404: {"model": Problem}, 409: {"model": Problem}})
async def delete_rule(name: str, request: Request, s: Session, admin: Administrator,
                      comment: Annotated[str, Query(max_length=2000)] = "") -> RuleSetOut:
    version, current, _ = await _current(request, s)
    _find(current, name)
    rules = tuple(r for r in current.rules if r.name != name)
    return await _save(request, s, admin, current.model_copy(update={"rules": rules}),
                       action="rule_deleted", comment=comment, base=version, check_base=True)


@router.get("/{name}/history", response_model=list[VersionOut])
async def rule_history(name: str, s: Session, _: Administrator,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[VersionOut]:
    """The versions that changed this rule, with what changed."""
    return await rules_history(s, _, limit=limit, rule=name)
