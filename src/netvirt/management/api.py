"""The REST API of the controller (FastAPI); its OpenAPI document is served at ``/openapi.json``.

Contract:
- ``PUT /v1/spec`` {text, filename, expected_revision?} validates like ``netvirt validate`` —
  invalid: 422 ``{"detail": {"summary", "problems": [{file, line, col, path, message, text}]}}``
  and nothing changes; a stale ``expected_revision``: 409; else the ``ApplyResult``.
- ``GET /v1/spec`` (404 when none), ``DELETE /v1/spec[?expected_revision=N]``.
- ``GET /v1/endpoints``, ``GET|PUT|DELETE /v1/endpoints/{name}``, ``POST /v1/endpoints``: one
  endpoint of the applied spec, each change validated and published like ``PUT /v1/spec`` (422
  located in the endpoint's text, 409 stale or a taken name, 404 absent).
- ``GET /v1/hosts``, ``GET /v1/hosts/{host}``: desired vs realized revisions, agent status, and
  for one host both graphs and their differences.
- ``POST /v1/trace`` {from, to, proto, dport, sport, stack, size} and ``GET /v1/reach``: the same
  JSON as ``netvirt trace -f json`` / ``netvirt reach -f json``, on the applied spec (422 for a
  question the spec cannot answer, with the CLI's message).
- ``GET /healthz`` (never needs the token): 200 when the store answers, 503 naming it otherwise.
- A store that cannot be reached gives 503 with the store's error everywhere.
- A body that is not JSON: 400 ``{"detail": "malformed JSON: ... (line L, column C)"}``; JSON of
  the wrong shape: 422 with FastAPI's located ``detail`` list (``loc``, ``msg``, ``type``).
With a token configured every ``/v1`` request needs exactly ``Authorization: Bearer <token>`` (401
otherwise). Timeouts, body and connection limits: ``netvirt.management.server`` (one configuration).
"""

import contextlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from netvirt.control.compile import CompileError, compile_network
from netvirt.control.controller import (
    ApplyResult,
    Controller,
    EndpointResult,
    HostInSpec,
    HostState,
    NoSpec,
    StaleSpec,
)
from netvirt.control.store import StoreError
from netvirt.environments import StackError
from netvirt.graph import to_json
from netvirt.management.server import bearer
from netvirt.management.spec import Spec, SpecError, as_data, item_data
from netvirt.management.spec.edit import EndpointExists, UnknownEndpoint
from netvirt.trace import reachability, render
from netvirt.trace.plan import BadInput, plan_trace, port_problem, reach_spec


class SpecSubmission(BaseModel):
    """A spec to apply, as the text of a spec file (YAML or JSON)."""

    text: str = Field(description="The spec file's text.")
    filename: str = Field("spec.yaml", description="Named in problem locations; a .json name parses JSON.")
    expected_revision: int | None = Field(
        None, description="Apply only if the current spec revision is this (0: nothing applied); else 409."
    )


class EndpointSubmission(BaseModel):
    """One endpoint, as the text of a spec file's endpoint item (YAML or JSON, short form allowed)."""

    text: str = Field(description="The endpoint's text, e.g. 'name: web-3\\nhost: host-a\\nnetwork: blue'.")
    filename: str = Field("endpoint.yaml", description="Named in problem locations; a .json name parses JSON.")
    expected_revision: int | None = Field(
        None, description="Change only if the current spec revision is this; else 409 (default: retried on races)."
    )


class TraceQuery(BaseModel):
    """What ``netvirt trace`` takes on its command line (``from``, ``to``, ... or ``stack``)."""

    model_config = ConfigDict(populate_by_name=True)

    source: str | None = Field(None, alias="from", description="Endpoint, IP, service or 'external'.")
    to: str | None = Field(None, description="Endpoint, IP, IP:PORT, service or 'external'.")
    proto: Literal["tcp", "udp", "icmp"] | None = None
    dport: int | None = Field(None, ge=1, le=65535)
    sport: int = Field(40000, ge=1, le=65535)
    stack: str | None = Field(None, description="Walk this stack from the outside to its app.")
    size: int = Field(0, ge=0, le=65535, description="IP packet size in bytes (DF set); 0: smallest.")

    @field_validator("dport")
    @classmethod
    def _no_port_for_icmp(cls, dport: int | None, info: ValidationInfo) -> int | None:
        if (problem := port_problem(info.data.get("proto"), dport)) is not None:
            raise ValueError(problem)  # 422 located at ("body", "dport"), as the CLI refuses --dport with --proto icmp
        return dport


def create_app(controller: Controller, token: str | None = None) -> FastAPI:
    """The API over ``controller``; ``token`` (if any) is required on every ``/v1`` request."""
    app = FastAPI(
        title="netvirt controller",
        version="1",
        description="Apply network specs, and see every host's desired and realized state.",
    )

    def authorized(authorization: Annotated[str | None, Header()] = None) -> None:
        if token is None:
            return
        given = bearer(authorization)
        if given is None or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong token: send 'Authorization: Bearer <token>'")

    api = APIRouter(prefix="/v1", dependencies=[Depends(authorized)])

    @app.exception_handler(RequestValidationError)
    def bad_request(_request: Request, error: RequestValidationError) -> Response:
        details = [{key: detail[key] for key in ("loc", "msg", "type") if key in detail} for detail in error.errors()]
        malformed = next((detail for detail in error.errors() if detail["type"] == "json_invalid"), None)
        if malformed is not None:
            cause = (malformed.get("ctx") or {}).get("error", "not JSON")
            text, at = error.body if isinstance(error.body, str) else "", malformed["loc"][-1]
            where = f" (line {text.count(chr(10), 0, at) + 1}, column {at - text.rfind(chr(10), 0, at)})"
            return _json({"detail": f"malformed JSON: {cause}{where if isinstance(at, int) else ''}"}, 400)
        return _json({"detail": details}, 422)

    @app.exception_handler(StoreError)
    def store_failed(_request: Request, error: StoreError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        """200 with the store revision when the store answers, else 503 naming the store."""
        return {"status": "ok", "store": controller.store.url, "revision": controller.store.revision()}

    @api.put("/spec")
    def apply_spec(submission: SpecSubmission) -> dict[str, Any]:
        """Validate, compile and publish a spec (atomically; a rejected spec changes nothing)."""
        with _refusals():
            result = controller.apply_text(submission.text, submission.filename, submission.expected_revision)
        return _result(result)

    @api.get("/endpoints")
    def endpoints() -> dict[str, Any]:
        """Every endpoint of the applied spec (allocated values filled in) and the spec's revision."""
        applied = controller.current()
        found = applied.spec.endpoints if applied else ()
        return {"revision": applied.revision if applied else 0, "endpoints": [item_data(e) for e in found]}

    @api.get("/endpoints/{name}")
    def endpoint(name: str) -> dict[str, Any]:
        """One endpoint of the applied spec; 404 when there is none of that name."""
        applied = controller.current()
        if applied is None or name not in applied.spec.index["endpoints"]:
            raise HTTPException(404, f"the applied spec has no endpoint {name!r}")
        return {"revision": applied.revision, "endpoint": item_data(applied.spec.endpoint(name))}

    @api.post("/endpoints")
    def add_endpoint(submission: EndpointSubmission) -> dict[str, Any]:
        """Add one endpoint (its text as a spec file writes it) to the applied spec; validated as a
        whole spec, problems located in the text; 409 when the name is taken or the spec moved."""
        with _refusals():
            edited = controller.add_endpoint(submission.text, submission.filename, submission.expected_revision)
        return _endpoint_result(edited)

    @api.put("/endpoints/{name}")
    def change_endpoint(name: str, submission: EndpointSubmission) -> dict[str, Any]:
        """Replace endpoint ``name`` by the one in the text (every key as it should be); 404 when absent."""
        with _refusals():
            edited = controller.change_endpoint(name, submission.text, submission.filename, submission.expected_revision)
        return _endpoint_result(edited)

    @api.delete("/endpoints/{name}")
    def remove_endpoint(name: str, expected_revision: int | None = None) -> dict[str, Any]:
        """Remove endpoint ``name``; 404 when absent, 422 when something still names it."""
        with _refusals():
            edited = controller.remove_endpoint(name, expected_revision)
        return _endpoint_result(edited)

    @api.get("/spec")
    def get_spec() -> dict[str, Any]:
        """The applied spec (every allocated value filled in) and its revision."""
        applied = controller.current()
        if applied is None:
            raise HTTPException(404, "no spec is applied")
        return {"revision": applied.revision, "name": applied.spec.name, "spec": as_data(applied.spec)}

    @api.delete("/spec")
    def delete_spec(expected_revision: int | None = None) -> dict[str, Any]:
        """Remove the spec; every host's agent then tears its data plane down."""
        try:
            return _result(controller.delete(expected_revision))
        except StaleSpec as error:
            raise HTTPException(409, str(error)) from None

    def applied_spec() -> Spec:
        applied = controller.current()
        if applied is None:
            raise HTTPException(404, "no spec is applied")
        return applied.spec

    @api.post("/trace")
    def trace(query: TraceQuery) -> dict[str, Any]:
        """Trace one packet through the applied spec: the JSON of ``netvirt trace -f json``."""
        spec = applied_spec()
        try:
            tracer, flow, skip = plan_trace(
                spec, query.source, query.to, query.proto, query.dport, query.sport, query.stack, query.size,
                compile=compile_network,
            )
        except (BadInput, StackError, CompileError) as error:
            raise HTTPException(422, str(error)) from None
        result: dict[str, Any] = json.loads(render.json_text(tracer.trace(flow, skip=skip)))
        return result

    @api.get("/reach")
    def reach() -> list[dict[str, Any]]:
        """Every endpoint pair and service of the applied spec: the JSON of ``netvirt reach -f json``."""
        spec = applied_spec()
        try:
            results = reach_spec(spec, compile=compile_network)
        except CompileError as error:
            raise HTTPException(422, str(error)) from None
        answer: list[dict[str, Any]] = json.loads(reachability.to_json(results))
        return answer

    @api.get("/hosts")
    def hosts() -> dict[str, Any]:
        """Every host: desired revision, what its agent realized, and whether they agree."""
        states = controller.hosts()
        return {"converged": all(s.in_sync for s in states), "hosts": [_host_state(s) for s in states]}

    @api.get("/hosts/{host}")
    def host(host: str) -> dict[str, Any]:
        """One host: its state, desired and realized graphs, and how they differ."""
        detail = controller.host(host)
        if detail is None:
            raise HTTPException(404, f"the store knows no host {host!r}")
        return {
            **_host_state(detail.state),
            "desired": json.loads(to_json(detail.desired)) if detail.desired else None,
            "realized": json.loads(to_json(detail.realized)) if detail.realized else None,
            "differences": list(detail.differences),
        }

    @api.delete("/hosts/{host}")
    def forget_host(host: str) -> dict[str, Any]:
        """Forget a host the applied spec no longer has (its agent status, heartbeat, realized graph)."""
        try:
            forgotten = controller.forget_host(host)
        except HostInSpec as error:
            raise HTTPException(409, str(error)) from None
        if not forgotten:
            raise HTTPException(404, f"the store knows no host {host!r}")
        return {"forgotten": host}

    app.include_router(api)
    return app


@contextlib.contextmanager
def _refusals() -> Iterator[None]:
    """What an apply or an endpoint change refuses, as HTTP errors: 422 with every located problem,
    409 for a stale revision or a taken name, 404 for what is not there."""
    try:
        yield
    except SpecError as error:
        problems = [problem.as_dict() | {"text": str(problem)} for problem in error.problems]
        raise HTTPException(422, {"summary": error.summary, "problems": problems}) from None
    except CompileError as error:
        raise HTTPException(422, {"summary": "cannot compile", "problems": [{"text": str(error)}]}) from None
    except (StaleSpec, EndpointExists) as error:
        raise HTTPException(409, str(error)) from None
    except (UnknownEndpoint, NoSpec) as error:
        raise HTTPException(404, str(error)) from None


def _endpoint_result(edited: EndpointResult) -> dict[str, Any]:
    endpoint = item_data(edited.endpoint) if edited.endpoint is not None else None
    return {**_result(edited.applied), "endpoint": endpoint}


def _json(content: Any, status: int) -> Response:
    """JSON with non-ASCII escaped: the input echoed in a problem may hold a lone surrogate."""
    return Response(json.dumps(content, default=str), status_code=status, media_type="application/json")


def _result(result: ApplyResult) -> dict[str, Any]:
    return {
        "revision": result.revision,
        "changed": list(result.changed),
        "removed": list(result.removed),
        "unchanged": list(result.unchanged),
        "incremental": result.incremental,
    }


def _host_state(state: HostState) -> dict[str, Any]:
    status = asdict(state.status) if state.status else None
    if status is not None:
        status["errors"] = list(status["errors"])
    return {
        "host": state.host,
        "state": state.summary,
        "in_sync": state.in_sync,
        "desired_revision": state.desired_revision,
        "status": status,
        "agent": state.liveness(),
        "last_seen": None if state.heartbeat is None else round(state.heartbeat.age(), 1),
    }
