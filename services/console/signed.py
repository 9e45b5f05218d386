"""The acts people sign at the console, over HTTP: a form is checked and its act prepared (acts.py) for the
browser to sign; the signature that comes back is set into the act the console kept, verified as services will
verify it, and the act published as the console's own principal."""
from __future__ import annotations

import asyncio
import base64
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from confluent_kafka import KafkaException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from services.bus.envelope import Event, new_id
from services.bus.logs import get_logger
from services.bus.publish import DeliveryError
from services.bus.signing import verify_act

from . import acts, pages
from .guard import Session, csrf_ok
from .login import now_ms

if TYPE_CHECKING:
    from .app import Console

log = get_logger(component="console")


async def decide(console: Console, request: Request) -> Response:
    """An approve/reject: prepared for the browser to sign, or (with `act` and `signature`) sent."""
    form = await request.form()
    session = console.session(request)
    if not csrf_ok(session, form.get("csrf")):
        return refused_json(console, "the form was not sent from this console (missing or wrong CSRF token)")
    if form.get("act"):
        return await send_signed(console, request, session, form, console.approvals)
    try:
        model, version = str(form["model"]), int(str(form["version"]))
        decision, reason = str(form["decision"]), str(form.get("reason") or "").strip()
    except (KeyError, ValueError):
        return refused_json(console, "the form lacks a model, a version or a decision")
    if decision not in ("approve", "reject") or not reason:
        return refused_json(console, "a decision is approve or reject, with a reason")
    with console.view.lock:
        entry = console.view.inventory.version(model, version)
        cannot = "no such version" if entry is None else pages.may_approve(console.view, entry, session.name,
                                                                           session.roles)
    if cannot or entry is None:
        return refused_json(console, f"{session.name} cannot {decision} {model} v{version}: {cannot}")
    event = acts.decision(new_id(), model, version, decision, session.name, reason,
                          entry.trained.get("artifact_sha256"), datetime.now(timezone.utc))
    return prepare(console, session, event, f"{decision} of {model} v{version} signed by {session.name} in the "
                                            f"browser and sent ({event.id}); the registry decides")


async def operate(console: Console, request: Request) -> Response:
    """A deploy or rollback: prepared for the browser to sign, or (with `act` and `signature`) sent."""
    form = await request.form()
    session = console.session(request)
    if not csrf_ok(session, form.get("csrf")):
        return refused_json(console, "the form was not sent from this console (missing or wrong CSRF token)")
    if not set(session.roles) & set(pages.OPERATOR_ROLES):
        return refused_json(console, f"{session.name} is not an operator: deployments are theirs to change")
    if form.get("act"):
        return await send_signed(console, request, session, form, console.deployments)
    action, model = str(form.get("action") or ""), str(form.get("model") or "")
    reason = str(form.get("reason") or "").strip() or f"from the console by {session.name}"
    try:
        fields = acts.deployment_fields(action, model, reason, form)
    except (KeyError, ValueError):
        return refused_json(console, "a deployment needs an action (deploy or rollback), a model and a version")
    with console.view.lock:
        entry = console.view.inventory.version(model, fields["version"]) if fields["version"] else None
    artifact = entry.trained.get("artifact_sha256") if entry is not None else None
    event = acts.deployment(new_id(), fields, session.name, artifact, datetime.now(timezone.utc))
    return prepare(console, session, event, f"{action} of {model} requested by {session.name}, signed in the "
                                            f"browser ({event.id}); the deployer acts on it")


def prepare(console: Console, session: Session, event: Event, notice: str) -> Response:
    """The act as a reader will decode it (an Avro round trip: defaults filled), prepared for the session's
    key and kept here; the browser gets only the bytes to sign."""
    _, normalized = console.bus.schemas.decode(console.bus.schemas.encode(event.record, event.value))
    act_id, pending = console.pending.prepare(session.token, Event(event.record, normalized, event.key, event.id,
                                                                   event.subject),
                                              session.name, session.key_id, notice, now_ms())
    return JSONResponse({"act": act_id, "signer_key": session.key_id, "record": event.record,
                         "bytes": base64.b64encode(pending.canonical()).decode()}, headers=console.headers())


async def send_signed(console: Console, request: Request, session: Session, form, screen) -> Response:
    """The prepared act with the browser's signature, verified as services will, then published."""
    pending = console.pending.take(str(form.get("act")), session.token)
    if pending is None:
        return console.refused(request, "that act is unknown, expired or was sent already: decide again")
    event = pending.signed(str(form.get("signature") or ""))
    with console.view.lock:
        verdict = verify_act(console.view.identities, event.record, event.value, now_ms(), acts.ROLES[event.record])
    if verdict.refusal:
        log.warning("signed act refused", person=session.name, record=event.record, reason=verdict.refusal)
        return console.refused(request, f"not sent: {verdict.refusal}")
    try:
        await asyncio.to_thread(console.publish, event)
    except (DeliveryError, KafkaException) as error:
        return console.refused(request, f"the broker did not take the act: {error}")
    log.info("signed act sent", person=session.name, record=event.record, model=event.key, act=event.id)
    with console.view.lock:
        return await screen(request, session, notice=pending.notice)


def refused_json(console: Console, why: str) -> JSONResponse:
    """A refusal of an act before it is prepared: the page's script shows `refused` beside the form."""
    return JSONResponse({"refused": why}, status_code=403, headers=console.headers())
