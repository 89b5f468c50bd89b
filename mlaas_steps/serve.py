"""The step image's `serve` entry point: SageMaker's inference container contract for a built model.

    python -m mlaas_steps.serve [serve] [--model-dir DIR] [--port N] [--host H]

SageMaker starts the image with the argument `serve` and expects, on port 8080 (SAGEMAKER_BIND_TO_PORT when
set; `--port` for local use):

    GET  /ping          200 once the model in /opt/ml/model (SM_MODEL_DIR; `--model-dir`) is loaded, 503 before
    POST /invocations   rows to score -> one prediction per row

The local runtime runs this same program as a child process for a tenant's test endpoint (and batch scoring),
so what is scored locally is what SageMaker would score.

Rows are the training columns, the target absent:
    text/csv            a header line naming the columns, then rows; or rows only, in the training column order
                        (`columns` of /ping's body), as SageMaker's batch transform sends them
    application/json    [{"column": value, ...}, ...], or {"rows": [...]} / {"instances": [...]} of the same

A column the model needs that is missing, or one it never saw, is a 400 naming them. Answers are JSON:
    {"predictions": [{"class": "yes", "probabilities": {"no": 0.2, "yes": 0.8}}, ...]}   classifiers
    {"predictions": [{"value": 151.2}, ...]}                                               regression

The model directory holds model.joblib + model_info.json (or the model.tar.gz of them, which is unpacked).
Stdlib http.server only: the image carries no web framework.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger("mlaas_steps.serve")

DEFAULT_PORT = 8080
DEFAULT_MODEL_DIR = "/opt/ml/model"
MAX_BODY_BYTES = 6 * 1024 * 1024  # SageMaker real-time endpoints take at most 6 MB per request
MAX_ROWS = 100_000


class BadRequest(Exception):
    """The request cannot be scored; the message says why, for the caller."""

    def __init__(self, message: str, *, status: int = HTTPStatus.BAD_REQUEST, fields: dict | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.fields = message, int(status), fields


@dataclass(frozen=True)
class ServedModel:
    model: object
    info: dict

    @property
    def problem_type(self) -> str:
        return self.info["problem_type"]

    @property
    def features(self) -> list[str]:
        """The columns the model uses (it cannot score a row without them)."""
        features = self.info.get("features") or {}
        return [*features.get("numeric", []), *features.get("categorical", [])]

    @property
    def columns(self) -> list[str]:
        """Every column the training rows had except the target (ignored ones are accepted, not used)."""
        return list(self.info.get("columns") or self.features)

    def frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The rows in training column order; BadRequest naming missing or unknown columns."""
        given = [str(c) for c in rows.columns]
        target = self.info.get("target")
        known = set(self.columns)
        unknown = [c for c in given if c not in known]
        missing = [c for c in self.features if c not in given]
        problems = []
        if missing:
            problems.append(f"missing columns: {', '.join(missing)}")
        if unknown:
            hint = f" (`{target}` is the target: leave it out)" if target in unknown else ""
            problems.append(f"unknown columns: {', '.join(unknown)}{hint}")
        if problems:
            raise BadRequest("; ".join(problems) + f". The model takes the columns {', '.join(self.columns)}.",
                             fields={"missing": missing, "unknown": unknown})
        rows = rows.copy()
        rows.columns = given
        for column in self.columns:
            if column not in rows:
                rows[column] = np.nan  # an ignored column: the model drops it anyway
        return rows[self.columns]

    def predict(self, rows: pd.DataFrame) -> list[dict]:
        frame = self.frame(rows)
        if not len(frame):
            return []
        if self.problem_type == "regression":
            return [{"value": _number(v)} for v in self.model.predict(frame)]
        probabilities = self.model.predict_proba(frame)
        labels = [_plain(c) for c in self.model.classes_]
        return [{"class": labels[int(row.argmax())],
                 "probabilities": {str(label): round(float(p), 6) for label, p in zip(labels, row, strict=True)}}
                for row in probabilities]


def load(model_dir: str | os.PathLike) -> ServedModel:
    from mlaas_steps.evaluate import load_model

    model, info = load_model(Path(model_dir))
    return ServedModel(model=model, info=info)


def parse_rows(body: bytes, content_type: str, columns: list[str]) -> pd.DataFrame:
    """The request's rows as a frame of text and numbers (the model's preprocessing converts them as in training)."""
    kind = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    if kind in ("application/json", "application/jsonlines"):
        return _json_rows(text)
    if kind in ("text/csv", "text/plain", ""):
        return _csv_rows(text, columns)
    raise BadRequest(f"unsupported content type `{kind}`: send text/csv or application/json",
                     status=HTTPStatus.UNSUPPORTED_MEDIA_TYPE)


def _json_rows(text: str) -> pd.DataFrame:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadRequest(f"the body is not JSON ({error.msg} at line {error.lineno})") from None
    rows = document
    if isinstance(document, dict):
        rows = document.get("rows", document.get("instances"))
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadRequest('send a JSON list of rows, each an object of column: value ([{"age": 41, ...}]), '
                         'or {"rows": [...]}')
    _check_count(len(rows))
    return pd.DataFrame.from_records(rows)


def _csv_rows(text: str, columns: list[str]) -> pd.DataFrame:
    records = [r for r in csv.reader(io.StringIO(text)) if r and any(cell.strip() for cell in r)]
    if not records:
        raise BadRequest("the CSV has no rows")
    header = [cell.strip() for cell in records[0]]
    known = set(columns)
    if any(cell in known for cell in header) or not any(_is_number(cell) for cell in header):
        body = records[1:]  # a header line: it names a column, or holds no value at all
    elif len(header) == len(columns):
        header, body = list(columns), records  # no header line: the training column order
    else:
        raise BadRequest(f"the CSV has no header line and {len(header)} values per row, not the model's "
                         f"{len(columns)}; send a header line naming the columns ({', '.join(columns)})")
    _check_count(len(body))
    width = len(header)
    for number, row in enumerate(body, start=2):
        if len(row) != width:
            raise BadRequest(f"CSV row {number} has {len(row)} values; the header has {width}")
    frame = pd.DataFrame(body, columns=header, dtype=object).replace("", np.nan)
    return frame.apply(_numbers_where_possible)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numbers_where_possible(column: pd.Series) -> pd.Series:
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == column.notna().sum() else column


def _check_count(count: int) -> None:
    if count > MAX_ROWS:
        raise BadRequest(f"{count:,} rows is over the {MAX_ROWS:,} rows one request may score",
                         status=HTTPStatus.REQUEST_ENTITY_TOO_LARGE)


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _number(value: object) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 6)


class _State:
    """What the handler threads share: the model once loaded, or why it could not be."""

    def __init__(self) -> None:
        self.model: ServedModel | None = None
        self.error = ""


def make_server(host: str, port: int, state: _State) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        server_version = "mlaas-serve/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
            logger.info("%s %s", self.address_string(), format % args)

        def _answer(self, status: int, document: dict) -> None:
            payload = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?")[0] != "/ping":
                return self._answer(404, {"message": "not found: GET /ping, POST /invocations"})
            if state.model is None:
                return self._answer(503, {"status": "loading" if not state.error else "failed",
                                          "message": state.error or "the model is loading"})
            model = state.model
            return self._answer(200, {"status": "ok", "problem_type": model.problem_type,
                                      "columns": model.columns, "features": model.features,
                                      "target": model.info.get("target"),
                                      "classes": [_plain(c) for c in model.info.get("classes") or []]})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?")[0] != "/invocations":
                return self._answer(404, {"message": "not found: GET /ping, POST /invocations"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                self.close_connection = True
                return self._answer(413, {"message": f"the body is over {MAX_BODY_BYTES:,} bytes"})
            body = self.rfile.read(length)
            if state.model is None:
                return self._answer(503, {"message": state.error or "the model is loading"})
            try:
                rows = parse_rows(body, self.headers.get("Content-Type", ""), state.model.columns)
                predictions = state.model.predict(rows)
            except BadRequest as error:
                return self._answer(error.status, {"message": error.message, "fields": error.fields})
            except Exception as error:  # noqa: BLE001 - one bad request never stops the server
                logger.exception("scoring failed")
                return self._answer(500, {"message": f"the model could not score these rows: "
                                                     f"{type(error).__name__}: {error}"})
            return self._answer(200, {"predictions": predictions})

    return ThreadingHTTPServer((host, port), Handler)


def _port(value: str | None) -> int:
    try:
        port = int(value) if value else DEFAULT_PORT
    except ValueError:
        raise SystemExit(f"serve: SAGEMAKER_BIND_TO_PORT / --port must be a port number, not {value!r}") from None
    if not 0 <= port <= 65535:
        raise SystemExit(f"serve: port {port} is out of range")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"],
                        help="SageMaker starts inference images with `serve`")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR") or DEFAULT_MODEL_DIR)
    parser.add_argument("--port", default=os.environ.get("SAGEMAKER_BIND_TO_PORT"),
                        help=f"default {DEFAULT_PORT} (SAGEMAKER_BIND_TO_PORT)")
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the container's interface
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    state = _State()
    server = make_server(args.host, _port(args.port), state)
    failed = threading.Event()

    def load_model() -> None:
        try:
            state.model = load(args.model_dir)
        except Exception as error:  # noqa: BLE001 - reported as a sentence, then the server stops
            state.error = f"the model in {args.model_dir} could not be loaded: {type(error).__name__}: {error}"
            print(f"serve: {state.error}", file=sys.stderr, flush=True)
            failed.set()
            server.shutdown()
            return
        logger.info("model loaded from %s (%s); listening on %s:%s", args.model_dir, state.model.problem_type,
                    args.host, server.server_address[1])

    threading.Thread(target=load_model, name="load-model", daemon=True).start()
    print(f"serve: listening on {args.host}:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 1 if failed.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
