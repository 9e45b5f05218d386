"""The console's web application (Starlette + Jinja2 + htmx): thin adapters from HTTP to the pure page
builders (pages.py), the session guard (guard.py) and the acts the CLI also sends (registry_cmd, deploy_cmd).
Live: a Follower folds the topics into the ConsoleView; each change is pushed to browsers as a server-sent
event, on which htmx fetches the open screen again and swaps it in."""
from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import KafkaException
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.bus.context import Bus
from services.bus.errors import BadInput
from services.bus.identity import Identity
from services.bus.jsonio import to_json
from services.bus.logs import get_logger
from services.bus.poison import poison_record
from services.bus.projections.follow import Follower
from services.bus.publish import DeliveryError
from services.bus.settings import ConfigError

from . import pages
from .guard import LoginLimit, LoginRefused, Sessions, check_login, csrf_ok, new_token
from .view import RECORDS, ConsoleView

HERE = Path(__file__).parent
VENDOR = HERE / "assets" / "node_modules"
VENDORED = {"htmx.min.js": VENDOR / "htmx.org" / "dist" / "htmx.min.js",
            "vega.min.js": VENDOR / "vega" / "build" / "vega.min.js",
            "vega-lite.min.js": VENDOR / "vega-lite" / "build" / "vega-lite.min.js",
            "vega-embed.min.js": VENDOR / "vega-embed" / "build" / "vega-embed.min.js"}
COOKIE, LOGIN_COOKIE = "mlbus_session", "mlbus_login"
NAV = [("/", "Overview"), ("/models", "Models"), ("/experiments", "Experiments"), ("/approvals", "Approvals"),
       ("/deployments", "Deployments"), ("/monitoring", "Monitoring"), ("/kpis", "KPIs"), ("/audit", "Audit")]
# vega compiles its expressions with Function(): 'unsafe-eval' for scripts, never inline script.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
CHARTED = {"experiments.html", "deployments.html", "monitoring.html", "kpis.html"}   # pages that load Vega
REFRESH_S = 10.0           # how often services' state is read again
VERIFY_EVERY_S = 300.0     # how often audit.log is verified again, if a new head was signed since (a whole pass)

log = get_logger(component="console")


def missing_assets() -> list[str]:
    return [name for name, path in VENDORED.items() if not path.exists()]


class Console:
    """The application and what it keeps: the view, sessions, the measurements made in the background."""

    def __init__(self, bus: Bus, services=None, verifier=None, explainer=None, prover=None, exporter=None,
                 kpi_compare=None, acts=None):
        self.bus = bus
        self.view = ConsoleView()
        self.sessions = Sessions()
        self.limit = LoginLimit()
        self.read_services = services or (lambda: [])
        self.verifier = verifier
        self.explainer, self.prover, self.exporter = explainer, prover, exporter
        self.kpi_compare = kpi_compare or (lambda observed, history: {})
        self.acts = acts                        # (bus_of_person, identity, kind, fields) → id
        self.services: list[dict] = []
        self.verification: dict | None = None
        self.verified_head: int | None = None
        self.person_buses: dict[str, Bus] = {}
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))
        self.templates.filters["time"] = pages.as_time
        self.templates.filters["num"] = lambda v, d=4: "-" if v is None else f"{v:.{d}f}"
        self.templates.filters["pct"] = lambda v: "-" if v is None else f"{v:.0%}"
        self.templates.filters["json"] = lambda v: json.dumps(to_json(v), indent=2, sort_keys=True)
        self._stop = threading.Event()

    # ---------------------------------------------------------------- running
    def start(self, follow: bool = True) -> None:
        if missing_assets():
            raise ConfigError(f"the console's browser libraries are missing ({', '.join(missing_assets())}): "
                              f"run scripts/setup (npm ci in {HERE / 'assets'})")
        if follow:
            Follower(self.bus, "console", RECORDS, [self.view.apply]).start()
        threading.Thread(target=self._measure, name="console-measure", daemon=True).start()
        if self.verifier is not None:
            threading.Thread(target=self._verify, name="console-verify", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _measure(self) -> None:
        """Every few seconds: the services' state and the decision timeline, read ahead of the pages."""
        while not self._stop.is_set():
            try:
                self.services = self.read_services()
            except (KafkaException, OSError) as error:
                log.warning("services' state not read", error=str(error))
            if self.explainer is not None and hasattr(self.explainer, "refresh"):
                try:
                    self.explainer.refresh()
                except (KafkaException, OSError, TimeoutError) as error:
                    log.warning("decision timeline not read", error=str(error))
                except Exception as error:      # noqa: BLE001 - what a record held: the pages go on, said
                    poison_record("console", "follow", "audit.log", -1, error)
            self._stop.wait(REFRESH_S)

    def _verify(self) -> None:
        """audit.log verified at start, then again when new heads were signed, at most every VERIFY_EVERY_S."""
        while not self._stop.is_set():
            head = (self.view.head or {}).get("sequence")
            if self.verification is None or head != self.verified_head:
                try:
                    self.verification = {**self.verifier(), "at": datetime.now(timezone.utc)}
                    self.verified_head = head
                except Exception as error:      # noqa: BLE001 - a failed pass is shown on the page, not fatal
                    self.verification = {"intact": None, "reason": f"not verified: {error}"}
            self._stop.wait(VERIFY_EVERY_S)

    # ---------------------------------------------------------------- helpers
    def render(self, request: Request, template: str, http_status: int = 200, **context) -> HTMLResponse:
        session = self.session(request)
        page = self.templates.get_template(template).render(
            nav=NAV, path=request.url.path,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            session=session, changes=self.view.changes, charts=template in CHARTED, **context)
        return HTMLResponse(page, status_code=http_status, headers=self.headers())

    @staticmethod
    def headers() -> dict:
        return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store"}

    def session(self, request: Request):
        return self.sessions.get(request.cookies.get(COOKIE))

    def person_bus(self, identity: Identity) -> Bus:
        """The bus as the person: their acts go over their own broker credentials, as from their CLI."""
        if identity.key_id not in self.person_buses:
            self.person_buses[identity.key_id] = Bus.from_settings(
                replace(self.bus.settings, principal="").as_person(identity.principal, identity.kafka))
        return self.person_buses[identity.key_id]

    # ---------------------------------------------------------------- the application
    def app(self) -> Starlette:
        def screen(handler, locked: bool = True):
            """A page for a logged-in person, drawn while the view holds still (the follower waits)."""
            async def guarded(request: Request):
                session = self.session(request)
                if session is None:
                    return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
                if not locked:
                    return await handler(request, session)
                with self.view.lock:
                    return await handler(request, session)
            return guarded

        routes = [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/", screen(self.overview)),
            Route("/models", screen(self.models)),
            Route("/models/{model}", screen(self.model)),
            Route("/models/{model}/{version:int}", screen(self.version)),
            Route("/experiments", screen(self.experiments)),
            Route("/approvals", screen(self.approvals), methods=["GET"]),
            Route("/approvals", self.decide, methods=["POST"]),
            Route("/deployments", screen(self.deployments), methods=["GET"]),
            Route("/deployments", self.operate, methods=["POST"]),
            Route("/monitoring", screen(self.monitoring)),
            Route("/kpis", screen(self.kpis)),
            Route("/audit", screen(self.audit, locked=False)),      # takes the lock once audit.log is read
            Route("/audit/proof/{target}", self.proof),
            Route("/audit/export.jsonl", self.export),
            Route("/events", self.events),
            Route("/vendor/{name}", self.vendor),
            Route("/healthz", self.health),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes)

    async def health(self, request: Request) -> Response:
        """For probes and benchmarks: what the console has folded and read so far."""
        return JSONResponse({"changes": self.view.changes, "versions": len(self.view.inventory.versions),
                             "head": (self.view.head or {}).get("sequence"),
                             "timeline_read_to": getattr(self.explainer, "read_to", None),
                             "verified": (self.verification or {}).get("intact")})

    async def vendor(self, request: Request) -> Response:
        path = VENDORED.get(request.path_params["name"])
        if path is None:
            return Response("not found", status_code=404)
        return Response(path.read_bytes(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    # ---------------------------------------------------------------- login
    async def login_page(self, request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
        token = request.cookies.get(LOGIN_COOKIE) or new_token()
        response = self.render(request, "login.html", http_status=status, error=error, login_token=token,
                               next=safe_next(request.query_params.get("next", "/")))
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response

    async def login(self, request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        wait_s = self.limit.retry_after(client)
        if wait_s > 0:
            return await self.login_page(request, f"too many failed logins: try again in {wait_s:.0f} s", 429)
        form = await request.form()
        token = request.cookies.get(LOGIN_COOKIE)
        if not token or form.get("login_token") != token:
            return await self.login_page(request, "the login form expired: try again", 403)
        upload = form.get("identity")
        try:
            if upload is None or not hasattr(upload, "read"):
                raise LoginRefused("choose your identity file (the JSON `mlbus people add` wrote for you)")
            raw = await upload.read()
            identity = identity_from(raw)
            with self.view.lock:
                roles = check_login(identity, self.view.identities, int(time.time() * 1000))
        except LoginRefused as refused:
            self.limit.failed(client)
            log.warning("login refused", client=client, reason=str(refused))
            return await self.login_page(request, str(refused), 401)
        session = self.sessions.open(identity, roles)
        log.info("login", person=identity.name, roles=list(roles))
        response = RedirectResponse(safe_next(str(form.get("next") or "/")), status_code=303)
        response.set_cookie(COOKIE, session.token, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", max_age=int(self.sessions.ttl_s))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        session = self.session(request)
        if not csrf_ok(session, form.get("csrf")):
            return self.refused(request, "the form was not sent from this console (missing or wrong CSRF token)")
        self.sessions.close(request.cookies.get(COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    def refused(self, request: Request, why: str) -> HTMLResponse:
        return self.render(request, "refused.html", http_status=403, why=why)

    # ---------------------------------------------------------------- screens
    async def overview(self, request: Request, session) -> Response:
        return self.render(request, "overview.html", **pages.overview(self.view, self.services, self.verification))

    async def models(self, request: Request, session) -> Response:
        return self.render(request, "models.html", rows=pages.models(self.view))

    async def model(self, request: Request, session) -> Response:
        found = pages.models(self.view, only=request.path_params["model"])
        if not found:
            return self.render(request, "refused.html", http_status=404, why="no such model")
        return self.render(request, "model.html", m=found[0])

    async def version(self, request: Request, session) -> Response:
        found = pages.version_page(self.view, request.path_params["model"], request.path_params["version"])
        if found is None:
            return self.render(request, "refused.html", http_status=404, why="no such model version")
        return self.render(request, "version.html", **found)

    async def experiments(self, request: Request, session) -> Response:
        return self.render(request, "experiments.html",
                           **pages.experiments(self.view, request.query_params.get("model")))

    async def approvals(self, request: Request, session, notice: str | None = None) -> Response:
        return self.render(request, "approvals.html", notice=notice,
                           **pages.approvals(self.view, session.identity.name, session.roles))

    async def deployments(self, request: Request, session, notice: str | None = None) -> Response:
        return self.render(request, "deployments.html", notice=notice, **pages.deployments(self.view, session.roles))

    async def monitoring(self, request: Request, session) -> Response:
        q = request.query_params
        return self.render(request, "monitoring.html", **pages.monitoring(self.view, q.get("model"), q.get("feature")))

    async def kpis(self, request: Request, session) -> Response:
        return self.render(request, "kpis.html", **pages.kpis(self.view, request.query_params.get("model"),
                                                                self.kpi_compare))

    async def audit(self, request: Request, session) -> Response:
        request_id = (request.query_params.get("request_id") or "").strip()
        answer = None
        if request_id and self.explainer is not None:
            answer = await asyncio.to_thread(self.explainer, request_id)      # reads audit.log: seconds, unlocked
        with self.view.lock:
            return self.render(request, "audit.html", head=self.view.head, verification=self.verification,
                               request_id=request_id, answer=answer, searched=bool(request_id),
                               timeline=self.explainer.timeline() if self.explainer and not request_id else [])

    async def proof(self, request: Request) -> Response:
        if self.session(request) is None:
            return RedirectResponse("/login", status_code=303)
        target = request.path_params["target"]
        try:
            document, _ = await asyncio.to_thread(self.prover, target)
        except BadInput as error:
            return self.refused(request, str(error))
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", target)[:80]
        return Response(json.dumps(document, indent=2) + "\n", media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="proof-{name}.json"'})

    async def export(self, request: Request) -> Response:
        if self.session(request) is None:
            return RedirectResponse("/login", status_code=303)
        lines = await asyncio.to_thread(lambda: [json.dumps(line, default=str, separators=(",", ":")) + "\n"
                                                 for line in self.exporter()])
        return Response("".join(lines), media_type="application/x-ndjson",
                        headers={"Content-Disposition": 'attachment; filename="audit-log.jsonl"'})

    # ---------------------------------------------------------------- acts
    async def decide(self, request: Request) -> Response:
        form = await request.form()
        session = self.session(request)
        if not csrf_ok(session, form.get("csrf")):
            return self.refused(request, "the form was not sent from this console (missing or wrong CSRF token)")
        try:
            model, version = str(form["model"]), int(form["version"])
            decision, reason = str(form["decision"]), str(form.get("reason") or "").strip()
        except (KeyError, ValueError):
            return self.refused(request, "the form lacks a model, a version or a decision")
        if decision not in ("approve", "reject") or not reason:
            return self.refused(request, "a decision is approve or reject, with a reason")
        with self.view.lock:
            entry = self.view.inventory.version(model, version)
            cannot = "no such version" if entry is None else pages.may_approve(
                self.view, entry, session.identity.name, session.roles)
        if cannot:
            return self.refused(request, f"{session.identity.name} cannot {decision} {model} v{version}: {cannot}")
        try:
            act_id = await asyncio.to_thread(self.acts, self.person_bus(session.identity), session.identity, "decision",
                                             dict(model=model, version=version, decision=decision, reason=reason))
        except (DeliveryError, KafkaException) as error:
            return self.refused(request, f"the broker did not take the {decision}: {error}")
        log.info("decision sent", person=session.identity.name, model=model, version=version, decision=decision,
                 act=act_id)
        with self.view.lock:
            return await self.approvals(request, session, notice=f"{decision} of {model} v{version} signed by "
                                        f"{session.identity.name} and sent ({act_id}); the registry decides")

    async def operate(self, request: Request) -> Response:
        form = await request.form()
        session = self.session(request)
        if not csrf_ok(session, form.get("csrf")):
            return self.refused(request, "the form was not sent from this console (missing or wrong CSRF token)")
        if not set(session.roles) & set(pages.OPERATOR_ROLES):
            return self.refused(request,
                                f"{session.identity.name} is not an operator: deployments are theirs to change")
        action, model = str(form.get("action") or ""), str(form.get("model") or "")
        reason = str(form.get("reason") or "").strip() or f"from the console by {session.identity.name}"
        try:
            fields = {"model": model, "action": action, "reason": reason, "strategy": "replace", "version": None,
                      "percent": None, "steps": [], "interval_s": 0.0}
            if action == "deploy":
                fields.update(version=int(form["version"]), strategy=str(form.get("strategy") or "replace"))
                if fields["strategy"] == "canary":
                    fields.update(steps=[10, 25, 50, 100], interval_s=float(form.get("interval_s") or 60))
                if fields["strategy"] == "champion-challenger":
                    fields.update(percent=int(form.get("percent") or 10))
            elif action != "rollback":
                raise ValueError(action)
        except (KeyError, ValueError):
            return self.refused(request, "a deployment needs an action (deploy or rollback), a model and a version")
        try:
            act_id = await asyncio.to_thread(self.acts, self.person_bus(session.identity), session.identity,
                                             "deployment", fields)
        except (DeliveryError, KafkaException) as error:
            return self.refused(request, f"the broker did not take the {action}: {error}")
        log.info("deployment request sent", person=session.identity.name, model=model, action=action, act=act_id)
        with self.view.lock:
            return await self.deployments(request, session, notice=f"{action} of {model} requested by "
                                          f"{session.identity.name} ({act_id}); the deployer acts on it")

    # ---------------------------------------------------------------- live
    async def events(self, request: Request) -> Response:
        if self.session(request) is None:
            return Response("log in first", status_code=401)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def listener(_changes: int) -> None:
            loop.call_soon_threadsafe(changed.set)

        async def stream():
            self.view.listeners.append(listener)
            try:
                yield f"retry: 2000\ndata: {self.view.changes}\n\n"
                while not await request.is_disconnected():
                    try:
                        await asyncio.wait_for(changed.wait(), timeout=15)
                    except asyncio.TimeoutError:
                        yield ": still here\n\n"
                        continue
                    changed.clear()
                    yield f"data: {self.view.changes}\n\n"
            finally:
                self.view.listeners.remove(listener)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


def identity_from(raw: bytes) -> Identity:
    try:
        return Identity.from_json(raw)
    except (ValueError, KeyError, TypeError):
        raise LoginRefused("that is not an mlbus identity file (the JSON `mlbus people add` wrote)") from None


def safe_next(target: str) -> str:
    """Only a path on this console (no open redirect to another site)."""
    return target if target.startswith("/") and not target.startswith("//") else "/"
