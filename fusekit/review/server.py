"""The review page's web app (Starlette) and its server (uvicorn), bound to loopback by default.

Every request must carry the token printed with the URL (``?token=`` or the ``X-Fusekit-Token`` header), or it is
refused with 403. Routes:

- ``GET /`` the page; ``GET /static/<file>`` its script and style (package data: nothing comes from the internet);
- ``GET /api/queue`` the queue (``review_queue``) with each face's verdict so far, and the classes;
- ``POST /api/verdict`` ``{face_id, verdict: accept|reject|relabel, label?, tab}`` and ``POST /api/undo``
  ``{face_id, undoes, tab}``: appended to the journal and fsynced (``fusekit.reviews.Journal``) before the answer
  ``{"saved": true, ...}``, which is what the page shows as saved;
- ``GET /face?id=<face id>`` the face's aligned crop (PNG) from the faces table.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import threading
from collections import OrderedDict
from importlib import resources
from typing import Any, Callable

import pyarrow.parquet as pq

from fusekit import reviews
from fusekit.errors import ConfigError
from fusekit.taxonomy import CLASSES
from fusekit.workspace import Workspace

TOKEN_HEADER = "x-fusekit-token"
STATIC = ("app.js", "style.css")
CACHED_PARTS = 8


class Thumbnails:
    """Crop bytes of the queued faces, read from the faces parts on first use (a few parts kept in memory)."""

    def __init__(self, workspace: Workspace, ids: set[str]) -> None:
        self.workspace = workspace
        self.where: dict[str, str] = {}  # face id -> its part (table/unit/name)
        for entry in workspace.listing("faces"):
            for face_id in pq.read_table(workspace.tables / entry[0], columns=["id"]).column("id").to_pylist():
                if face_id in ids:
                    self.where[face_id] = entry[0]
        self._parts: OrderedDict[str, dict[str, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, face_id: str) -> bytes | None:
        part = self.where.get(face_id)
        if part is None:
            return None
        with self._lock:
            crops = self._parts.get(part)
            if crops is None:
                table = pq.read_table(self.workspace.tables / part, columns=["id", "image"])
                images = table.column("image").combine_chunks().field("bytes").to_pylist()
                crops = {i: b for i, b in zip(table.column("id").to_pylist(), images) if i in self.where and b}
                self._parts[part] = crops
                while len(self._parts) > CACHED_PARTS:
                    self._parts.popitem(last=False)
            self._parts.move_to_end(part)
            return crops.get(face_id)


def _queue_rows(workspace: Workspace) -> list[dict[str, Any]]:
    from fusekit.reviews import read_queue

    rows = read_queue(workspace).to_pylist()
    for row in rows:
        row["score"] = round(float(row["score"]), 4) if row["score"] is not None else None
        row["top_probs"] = [round(float(p), 4) for p in row["top_probs"] or []]
    return rows


def make_app(workspace: Workspace, token: str | None = None):
    """(the Starlette app, its token)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response
    from starlette.routing import Route

    token = token or secrets.token_urlsafe(24)
    queue = _queue_rows(workspace)
    by_id = {row["face_id"]: row for row in queue}
    thumbs = Thumbnails(workspace, set(by_id))
    journal = reviews.Journal(workspace)
    reviews.compact(workspace)
    static = resources.files("fusekit.review") / "static"

    def state(face_id: str, given: dict[str, reviews.Verdict] | None = None) -> dict[str, Any] | None:
        verdict = (reviews.verdicts(workspace) if given is None else given).get(face_id)
        return None if verdict is None else {"verdict": verdict.verdict, "label": verdict.label, "seq": verdict.seq}

    def index(request: Request) -> Response:
        page = (static / "index.html").read_text(encoding="utf-8").replace("__TOKEN__", token)
        return Response(page, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return PlainTextResponse("not found", 404)
        kind = "text/javascript" if name.endswith(".js") else "text/css"
        return Response((static / name).read_bytes(), media_type=f"{kind}; charset=utf-8")

    def api_queue(request: Request) -> JSONResponse:
        given = reviews.verdicts(workspace)
        items = [{**row, "state": state(row["face_id"], given)} for row in queue]
        return JSONResponse({"classes": list(CLASSES[:7]), "items": items}, headers={"Cache-Control": "no-store"})

    async def _body(request: Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise ConfigError("the request body is not JSON") from None
        if not isinstance(data, dict) or data.get("face_id") not in by_id:
            raise ConfigError("unknown face (not in the review queue)")
        return data

    def _append(entry: dict[str, Any]) -> dict[str, Any]:
        row = journal.append(entry)  # durable (fsynced) when it returns
        # a new verdict is the one that counts: only an undo needs the journal read again
        now = state(row["face_id"]) if row["verdict"] == "undo" else {
            "verdict": row["verdict"], "label": row.get("label"), "seq": row["seq"]}
        return {"saved": True, "seq": row["seq"], "face_id": row["face_id"], "state": now}

    async def api_verdict(request: Request) -> JSONResponse:
        try:
            data = await _body(request)
            if data.get("verdict") not in ("accept", "reject", "relabel"):
                raise ConfigError("verdict must be accept, reject or relabel")
            face = by_id[data["face_id"]]
            entry = {"face_id": face["face_id"], "verdict": data["verdict"], "label": data.get("label"),
                     "was_label": face["label"], "reason": face["reason"], "tab": data.get("tab")}
            from starlette.concurrency import run_in_threadpool

            return JSONResponse(await run_in_threadpool(_append, entry))
        except ConfigError as exc:
            return JSONResponse({"saved": False, "error": str(exc)}, 400)

    async def api_undo(request: Request) -> JSONResponse:
        try:
            data = await _body(request)
            entry = {"face_id": data["face_id"], "verdict": "undo", "undoes": data.get("undoes"),
                     "reason": by_id[data["face_id"]]["reason"], "tab": data.get("tab")}
            from starlette.concurrency import run_in_threadpool

            return JSONResponse(await run_in_threadpool(_append, entry))
        except ConfigError as exc:
            return JSONResponse({"saved": False, "error": str(exc)}, 400)

    def face(request: Request) -> Response:
        data = thumbs.get(request.query_params.get("id", ""))
        if data is None:
            return PlainTextResponse("no such face in the queue", 404)
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    class TokenRequired:
        """Refuse (403) every request without the token, before any route sees it."""

        def __init__(self, app) -> None:
            self.app = app

        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "http":
                from urllib.parse import parse_qs

                given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
                for name, value in scope.get("headers", []):
                    if name == TOKEN_HEADER.encode():
                        given = value.decode("latin-1")
                if not secrets.compare_digest(given.encode(), token.encode()):
                    response = PlainTextResponse("forbidden: open the URL that `fusekit review` printed (with its "
                                                 "token)", 403)
                    await response(scope, receive, send)
                    return
            await self.app(scope, receive, send)

    routes = [Route("/", index), Route("/static/{name}", asset), Route("/api/queue", api_queue),
              Route("/api/verdict", api_verdict, methods=["POST"]), Route("/api/undo", api_undo, methods=["POST"]),
              Route("/face", face)]
    from starlette.middleware import Middleware

    app = Starlette(routes=routes, middleware=[Middleware(TokenRequired)])
    return app, token


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(workspace: Workspace, host: str = "127.0.0.1", port: int = 0,
          echo: Callable[[str], None] = print) -> None:
    """Serve the page until interrupted; prints the URL (with its token) first. ``port`` 0: a free port."""
    import uvicorn

    app, token = make_app(workspace)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): give another --port") from None
    sock.listen(64)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    echo(f"review page: http://{shown}:{bound}/?token={token}")
    if not is_loopback(host):
        echo(f"warning: listening on {host}, not loopback: anyone who can reach it and has the URL can give verdicts")
    echo("every verdict is saved the moment the page shows it saved; Ctrl-C stops the server")
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        reviews.compact(workspace)
