"""The console's web application (Starlette + Jinja2 + htmx): thin adapters from HTTP to the pure page
builders (pages.py); logging in (login.py, around guard.py) and the acts people sign in their browser (signed.py,
around acts.py) have modules of their own. Every request's session is checked against the identities.
Live: a Follower folds the topics into the ConsoleView; each change is pushed to browsers as a server-sent
event, on which htmx fetches the open screen again and swaps it in."""
from __future__ import annotations

import asyncio
import json
import re
import threading
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable
from urllib.parse import quote

from confluent_kafka import KafkaException
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from services.bus.context import Bus
from services.bus.envelope import Event
from services.bus.errors import BadInput
from services.bus.identity import ACT_SIGNERS, act_verifier, signed_only
from services.bus.jsonio import to_json
from services.bus.logs import get_logger
from services.bus.poison import poison_record
from services.bus.projections.follow import Follower
from services.bus.publish import Publisher
from services.bus.settings import ConfigError

from . import acts, feature_pages, login, pages, signed
from .guard import Challenges, LoginLimit, Session, Sessions
from .limits import BodyLimit
from .login import COOKIE, now_ms
from .view import FEATURE_RECORDS, RECORDS, ConsoleView

HERE = Path(__file__).parent
VENDOR = HERE / "assets" / "node_modules"
VENDORED = {"htmx.min.js": VENDOR / "htmx.org" / "dist" / "htmx.min.js",
            "vega.min.js": VENDOR / "vega" / "build" / "vega.min.js",
            "vega-lite.min.js": VENDOR / "vega-lite" / "build" / "vega-lite.min.js",
            "vega-embed.min.js": VENDOR / "vega-embed" / "build" / "vega-embed.min.js"}
NAV = [("/", "Overview"), ("/models", "Models"), ("/experiments", "Experiments"), ("/approvals", "Approvals"),
       ("/deployments", "Deployments"), ("/monitoring", "Monitoring"), ("/features", "Features"), ("/kpis", "KPIs"),
       ("/audit", "Audit")]
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
                 kpi_compare=None, publish=None):
        self.bus = bus
        self.view = ConsoleView()
        self.sessions = Sessions()
        self.challenges = Challenges()
        self.pending = acts.PendingActs()
        self.limit = LoginLimit()
        self.read_services: Callable[[], list[dict]] = services or (lambda: [])
        self.verifier = verifier
        self.explainer, self.prover, self.exporter = explainer, prover, exporter
        self.kpi_compare: Callable[[list[dict], list[dict]], dict] = kpi_compare or (lambda observed, history: {})
        self.publish = publish or self._publish  # a signed act (Event) onto its topic, as the console's principal
        self.publisher: Publisher | None = None
        self.publishing = threading.Lock()
        self.services: list[dict] = []
        self.verification: dict | None = None
        self.verified_head: int | None = None
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True, default_for_string=True))
        self.templates.filters["time"] = pages.as_time
        self.templates.filters["age"] = pages.as_age
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
            # policies (and any spec) only when signed by whom may make them, as the services fold them
            Follower(self.bus, "console", RECORDS, [signed_only(self.view.apply, act_verifier(self.bus),
                                                                ACT_SIGNERS)]).start()
            # feature views and their online values: a large store is read in the background, pages meanwhile
            features = Follower(self.bus, "console-features", FEATURE_RECORDS,
                                [signed_only(self.view.apply, act_verifier(self.bus), ACT_SIGNERS)])
            threading.Thread(target=self._follow_features, args=(features,), name="console-features",
                             daemon=True).start()
        threading.Thread(target=self._measure, name="console-measure", daemon=True).start()
        if self.verifier is not None:
            threading.Thread(target=self._verify, name="console-verify", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _follow_features(follower: Follower) -> None:
        """Start following the feature topics (read to their end first); one that cannot start is said, and the
        features screen says nothing is known (the rest of the console goes on)."""
        try:
            follower.start(timeout_s=3600)
        except Exception as error:          # noqa: BLE001 - the console's other screens matter more
            log.error("feature views not followed", error=repr(error))

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
            head = self.view.signed_sizes()         # any shard's new head: the log is verified again
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

    def session(self, request: Request) -> Session | None:
        """The request's session while its key is valid on the identities topic (checked on every request)."""
        with self.view.lock:
            return self.sessions.current(request.cookies.get(COOKIE), self.view.identities, now_ms())

    def _publish(self, event: Event) -> None:
        """One signed act, by the console's own principal (the act's signature says who made it), delivered."""
        with self.publishing:
            self.publisher = self.publisher or Publisher(self.bus, "console")
            self.publisher.publish(event)
            self.publisher.flush()

    # ---------------------------------------------------------------- the application
    def app(self) -> Starlette:
        def screen(handler, locked: bool = True):
            """A page for a logged-in person, drawn while the view holds still (the follower waits)."""
            async def guarded(request: Request):
                session = self.session(request)
                if session is None:
                    login = f"/login?next={quote(request.url.path)}"
                    if request.headers.get("HX-Request"):         # a live refresh: the whole page goes to login
                        return Response(status_code=200, headers={"HX-Redirect": login})
                    return RedirectResponse(login, status_code=303)
                if not locked:
                    return await handler(request, session)
                with self.view.lock:
                    return await handler(request, session)
            return guarded

        routes = [
            Route("/login", partial(login.page, self), methods=["GET"]),
            Route("/login", partial(login.login, self), methods=["POST"]),
            Route("/login/challenge", partial(login.challenge, self), methods=["POST"]),
            Route("/logout", partial(login.logout, self), methods=["POST"]),
            Route("/", screen(self.overview)),
            Route("/models", screen(self.models)),
            Route("/models/{model}", screen(self.model)),
            Route("/models/{model}/{version:int}", screen(self.version)),
            Route("/experiments", screen(self.experiments)),
            Route("/approvals", screen(self.approvals), methods=["GET"]),
            Route("/approvals", partial(signed.decide, self), methods=["POST"]),
            Route("/deployments", screen(self.deployments), methods=["GET"]),
            Route("/deployments", partial(signed.operate, self), methods=["POST"]),
            Route("/monitoring", screen(self.monitoring)),
            Route("/features", screen(self.features)),
            Route("/features/{view}", screen(self.feature_view)),
            Route("/kpis", screen(self.kpis)),
            Route("/audit", screen(self.audit, locked=False)),      # takes the lock once audit.log is read
            Route("/audit/proof/{target}", self.proof),
            Route("/audit/export.jsonl", self.export),
            Route("/events", self.events),
            Route("/vendor/{name}", self.vendor),
            Route("/healthz", self.health),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        return Starlette(routes=routes, middleware=[Middleware(BodyLimit)])     # inside the error handler

    async def health(self, request: Request) -> Response:
        """For probes and benchmarks: what the console has folded and read so far."""
        return JSONResponse({"changes": self.view.changes, "versions": len(self.view.inventory.versions),
                             "head": (self.view.head or {}).get("sequence"),
                             "timeline_read_to": getattr(self.explainer, "read_to", None),
                             "timeline_read_to_shards": getattr(self.explainer, "read_up_to", None),
                             "verified": (self.verification or {}).get("intact")})

    async def vendor(self, request: Request) -> Response:
        path = VENDORED.get(request.path_params["name"])
        if path is None:
            return Response("not found", status_code=404)
        return Response(path.read_bytes(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

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
                           **pages.approvals(self.view, session.name, session.roles))

    async def deployments(self, request: Request, session, notice: str | None = None) -> Response:
        return self.render(request, "deployments.html", notice=notice, **pages.deployments(self.view, session.roles))

    async def monitoring(self, request: Request, session) -> Response:
        q = request.query_params
        return self.render(request, "monitoring.html", **pages.monitoring(self.view, q.get("model"), q.get("feature")))

    async def features(self, request: Request, session) -> Response:
        return self.render(request, "features.html", rows=feature_pages.features(self.view, self.services, now_ms()))

    async def feature_view(self, request: Request, session) -> Response:
        found = feature_pages.feature_view(self.view, request.path_params["view"], self.services, now_ms())
        if found is None:
            return self.render(request, "refused.html", http_status=404, why="no such feature view")
        return self.render(request, "feature.html", **found)

    async def kpis(self, request: Request, session) -> Response:
        return self.render(request, "kpis.html", **pages.kpis(self.view, request.query_params.get("model"),
                                                                self.kpi_compare))

    async def audit(self, request: Request, session) -> Response:
        request_id = (request.query_params.get("request_id") or "").strip()
        answer = None
        if request_id and self.explainer is not None:
            answer = await asyncio.to_thread(self.explainer, request_id)      # reads audit.log: seconds, unlocked
        with self.view.lock:
            return self.render(request, "audit.html", head=self.view.head, heads=dict(self.view.heads),
                               verification=self.verification,
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
                while not await request.is_disconnected() and self.session(request) is not None:   # not revoked
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


