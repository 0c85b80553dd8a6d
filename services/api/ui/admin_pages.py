"""Administrators' pages: routing rules (list, edit with messages next to the field, enable,
disable, history with a diff, dry run), mailboxes and the dead-letter queue with replay. Each
calls the rules, dead-letter and mailbox API functions with the signed-in administrator."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import Form, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy import select

from shared.auth import Role
from shared.db.models import MailboxStatus
from shared.rules import Rule

from .. import deadletters, rules
from ..deps import Principal, Session
from ..mailboxes import MailboxOut
from . import session
from .i18n import translate
from .web import back, lang, render, router, who

FIELDS = ("name", "description", "priority", "enabled", "stop", "when", "then")
Text = Annotated[str, Form()]


@router.get("/rules")
async def rules_page(request: Request, s: Session) -> Response:
    p = await who(request, s, Role.ADMINISTRATOR)
    current = await rules.get_rules(request, s, p)
    return render(request, "rules.html", principal=p, current=current)


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False) if value else ""


def _form_of(rule: Rule | None) -> dict[str, Any]:
    if rule is None:
        return {"name": "", "description": "", "priority": "100", "enabled": False,
                "stop": True, "when": "", "then": ""}
    data = rule.model_dump(by_alias=True, exclude_defaults=True, mode="json")
    return {"name": rule.name, "description": rule.description,
            "priority": str(rule.priority), "enabled": rule.enabled, "stop": rule.stop,
            "when": _yaml(data.get("when")), "then": _yaml(data.get("then"))}


@router.get("/rules/new")
async def new_rule(request: Request, s: Session) -> Response:
    p = await who(request, s, Role.ADMINISTRATOR)
    return render(request, "rule_edit.html", principal=p, form=_form_of(None), original="",
                  errors={}, result=None, last=100)


@router.get("/rules/edit/{name}")
async def edit_rule(name: str, request: Request, s: Session) -> Response:
    p = await who(request, s, Role.ADMINISTRATOR)
    found = await rules.get_rule(name, request, s, p)
    return render(request, "rule_edit.html", principal=p, form=_form_of(found.rule),
                  original=name, errors={}, result=None, last=100)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    """The form field a validation error belongs to: the first of FIELDS in its location."""
    return next((str(part) for part in loc if part in FIELDS), "form")


def _errors(exc: RequestValidationError | ValidationError) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for e in exc.errors():
        found.setdefault(_field(e.get("loc", ())), []).append(str(e.get("msg", "")))
    return found


def _parse(form: dict[str, Any]) -> tuple[Rule | None, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    data: dict[str, Any] = {"name": form["name"], "description": form["description"],
                            "enabled": form["enabled"], "stop": form["stop"]}
    data["priority"] = form["priority"] or "100"
    for part in ("when", "then"):
        try:
            value = yaml.safe_load(form[part]) if form[part].strip() else {}
        except yaml.YAMLError as exc:
            errors[part] = [f"YAML: {str(exc).splitlines()[0]}"]
            continue
        if not isinstance(value, dict):
            errors[part] = ["YAML: a mapping (key: value) is needed"]
            continue
        data[part] = value
    if errors:
        return None, errors
    try:
        return Rule.model_validate(data), {}
    except ValidationError as exc:
        return None, _errors(exc)


@router.post("/rules/save")
async def save_rule(request: Request, s: Session, csrf: Text, name: Text = "",
                    description: Text = "", priority: Text = "100", enabled: Text = "",
                    stop: Text = "", when: Text = "", then: Text = "", original: Text = "",
                    comment: Text = "", op: Text = "save", last: Text = "100") -> Response:
    session.check_csrf(request, csrf)
    p = await who(request, s, Role.ADMINISTRATOR)
    form = {"name": name.strip(), "description": description, "priority": priority.strip(),
            "enabled": bool(enabled), "stop": bool(stop), "when": when, "then": then}
    count = int(last) if last.isdigit() and 1 <= int(last) <= 1000 else 100
    rule, errors = _parse(form)
    page: dict[str, Any] = {"principal": p, "form": form, "original": original, "last": count,
            "comment": comment}
    if rule is None:
        return render(request, "rule_edit.html", 422, errors=errors, result=None, **page)
    try:
        if op == "dryrun":
            result = await _dry_run(request, s, p, rule, original, count)
            return render(request, "rule_edit.html", errors={}, result=result, **page)
        if original:
            out = await rules.update_rule(original, rule, request, s, p, base_version=None,
                                          comment=comment)
        else:
            out = await rules.create_rule(rule, request, s, p, comment=comment)
    except RequestValidationError as exc:
        return render(request, "rule_edit.html", 422, errors=_errors(exc), result=None, **page)
    except HTTPException as exc:
        if exc.status_code not in (404, 409):
            raise
        return render(request, "rule_edit.html", exc.status_code,
                      errors={"form": [str(exc.detail)]}, result=None, **page)
    return back(request, "/ui/rules", translate(lang(request), "Reglen er gemt som version {v}.",
                                                v=out.version))


async def _dry_run(request: Request, s: Session, p: Principal, rule: Rule, original: str,
                   last: int) -> rules.SimulateResult:
    """The active rule set with this rule in it, switched on: what would change."""
    current = await rules.get_rules(request, s, p)
    proposed_rule = rule.model_copy(update={"enabled": True})
    kept = [r for r in current.ruleset.rules if r.name not in (original, rule.name)]
    proposed = current.ruleset.model_copy(update={"rules": (*kept, proposed_rule)})
    return await rules.simulate(rules.SimulateRequest(rules=proposed, last=last,
                                                      only_changed=True), request, s, p)


@router.post("/rules/toggle/{name}")
async def toggle_rule(name: str, request: Request, s: Session, csrf: Text,
                      enabled: Text) -> Response:
    session.check_csrf(request, csrf)
    p = await who(request, s, Role.ADMINISTRATOR)
    on = enabled == "true"
    await (rules.enable_rule if on else rules.disable_rule)(name, request, s, p, comment="")
    notice = "Reglen er slået til." if on else "Reglen er slået fra."
    return back(request, "/ui/rules", translate(lang(request), notice))


@router.get("/rules/history")
async def rules_history(request: Request, s: Session, rule: str | None = None) -> Response:
    p = await who(request, s, Role.ADMINISTRATOR)
    versions = await rules.rules_history(s, p, limit=50, rule=rule or None)
    return render(request, "rules_history.html", principal=p, versions=versions, rule=rule)


@router.get("/mailboxes")
async def mailboxes_page(request: Request, s: Session) -> Response:
    p = await who(request, s, Role.ADMINISTRATOR)
    rows = (await s.execute(select(MailboxStatus).order_by(MailboxStatus.name))).scalars()
    found = [MailboxOut.model_validate(r, from_attributes=True) for r in rows]
    return render(request, "mailboxes.html", principal=p, mailboxes=found)


@router.get("/deadletters")
async def deadletters_page(request: Request, s: Session) -> Response:
    p = await who(request, s, Role.ADMINISTRATOR)
    found = await deadletters.list_dead_letters(request, p, consumer=None, limit=200)
    return render(request, "deadletters.html", principal=p, found=found)


@router.post("/deadletters/{consumer}/replay")
async def replay(consumer: str, request: Request, s: Session, csrf: Text,
                 message_id: Text = "") -> Response:
    session.check_csrf(request, csrf)
    p = await who(request, s, Role.ADMINISTRATOR)
    result = await deadletters.replay_dead_letters(
        consumer, request, s, p, message_id=[message_id] if message_id else None)
    return back(request, "/ui/deadletters",
                translate(lang(request), "{n} beskeder afspillet.", n=result.replayed))
