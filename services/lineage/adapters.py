"""The lineage service's edges: the openlineage-python client with its file and HTTP transports. A transport
that fails (a disk, an endpoint down or refusing) is an infrastructure failure: the service crashes, commits
nothing, and the record is handled again after the restart (the same events: run ids derive from records)."""
from __future__ import annotations

from typing import Callable

from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunEvent
from openlineage.client.transport.file import FileConfig, FileTransport
from openlineage.client.transport.http import ApiKeyTokenProvider, HttpConfig, HttpTransport, TokenProvider
from openlineage.client.transport.transport import Transport

from services.bus.errors import InfrastructureError
from services.bus.settings import ConfigError

from .decide import Unmappable
from .settings import LineageSettings

# The client's HTTP transport retries 5 times with back-off on connection errors and 5xx; past that the
# service crashes rather than drop the event.
HTTP_TIMEOUT_S = 5.0
# What a backend answers when the event itself is at fault (malformed, too large, not processable): the record
# that made it is dead-lettered — were it an infrastructure failure, that one record would stop the service at
# every start. Other refusals (401, 403, 404: our settings) stop it.
REFUSED_EVENT = (400, 413, 422)


def transports(settings: LineageSettings) -> list[Transport]:
    found: list[Transport] = []
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        found.append(FileTransport(FileConfig(log_file_path=str(settings.file), append=True)))
    if settings.url is not None:
        auth = ApiKeyTokenProvider({"apiKey": settings.api_key}) if settings.api_key else TokenProvider({})
        found.append(HttpTransport(HttpConfig(url=settings.url, endpoint=settings.endpoint, timeout=HTTP_TIMEOUT_S,
                                              auth=auth)))
    return found


def emitter(settings: LineageSettings) -> Callable[[RunEvent], None]:
    """Emit one event through every configured transport; any failure is InfrastructureError."""
    clients = [OpenLineageClient(transport=transport) for transport in transports(settings)]
    if any(client.transport.kind == "noop" for client in clients):      # it would take records and send nothing
        raise ConfigError("OPENLINEAGE_DISABLED=true turns the OpenLineage client off: unset it, or do not run "
                          "the lineage service")

    def emit(event: RunEvent) -> None:
        for client in clients:
            try:
                client.emit(event)
            except Exception as error:          # noqa: BLE001 - whatever the transport raised: not the record's
                status = getattr(getattr(error, "response", None), "status_code", None)
                if status in REFUSED_EVENT:
                    raise Unmappable(f"the OpenLineage endpoint refused the event ({status}): "
                                     f"{str(error)[:300]}") from None
                raise InfrastructureError(f"OpenLineage {client.transport.kind} transport failed: "
                                          f"{type(error).__name__}: {str(error)[:300]}") from error
    return emit
