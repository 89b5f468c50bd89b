"""The `serve` entry point as SageMaker runs it: a child process on a port, GET /ping, POST /invocations with CSV
or JSON rows of the training columns, a 400 naming missing or unknown columns.

Plain pytest, no Django:
    .venv/bin/python -m pytest builds/tests/test_serve.py -p no:django -q
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from mlaas_steps import StepPaths, make_model_tarball, place_dataset, preprocess, train
from mlaas_steps.sample_data import SAMPLES, write_sample_csvs


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return write_sample_csvs(tmp_path_factory.mktemp("samples"))


def trained_model_dir(root: Path, csv_path: Path, name: str) -> Path:
    paths = StepPaths(root)
    place_dataset(paths, csv_path)
    preprocess.run(paths, {"target": SAMPLES[name]["target"], "problem_type": SAMPLES[name]["problem_type"]})
    train.run(paths, {"entry_point": "hist_gradient_boosting", "problem_type": SAMPLES[name]["problem_type"]})
    return paths.model_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    def __init__(self, model_dir: Path, *, env_port: bool = False) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "mlaas_steps.serve", "serve", "--model-dir", str(model_dir), "--host",
                "127.0.0.1"]
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        if env_port:
            env["SAGEMAKER_BIND_TO_PORT"] = str(self.port)
        else:
            args += ["--port", str(self.port)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(self.process.stderr.read().decode())
            try:
                response = requests.get(f"{self.url}/ping", timeout=2)
                if response.status_code == 200:
                    return response.json()
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError("serve did not become ready")

    def invoke(self, body, content_type: str) -> requests.Response:
        data = body if isinstance(body, (str, bytes)) else json.dumps(body)
        return requests.post(f"{self.url}/invocations", data=data, headers={"Content-Type": content_type},
                             timeout=30)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, samples):
    served = Served(trained_model_dir(tmp_path_factory.mktemp("clf"), samples["breast_cancer"], "breast_cancer"))
    served.wait_ready()
    yield served
    served.stop()


def test_ping_describes_the_loaded_model(classifier, samples):
    ping = requests.get(f"{classifier.url}/ping", timeout=5).json()

    columns = list(pd.read_csv(samples["breast_cancer"]).columns.drop("diagnosis"))
    assert (ping["status"], ping["problem_type"], ping["target"]) == ("ok", "classification", "diagnosis")
    assert (ping["columns"], ping["classes"]) == (columns, ["benign", "malignant"])


def test_csv_with_a_header_scores_one_prediction_per_row(classifier, samples):
    rows = pd.read_csv(samples["breast_cancer"]).head(25)

    response = classifier.invoke(rows.drop(columns=["diagnosis"]).to_csv(index=False), "text/csv")

    predictions = response.json()["predictions"]
    assert response.status_code == 200 and len(predictions) == 25
    assert all(set(p["probabilities"]) == {"benign", "malignant"} for p in predictions)
    assert all(p["class"] == max(p["probabilities"], key=p["probabilities"].get) for p in predictions)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in predictions)
    correct = sum(p["class"] == truth for p, truth in zip(predictions, rows["diagnosis"], strict=True))
    assert correct >= 22


def test_headerless_csv_and_json_rows_give_the_same_predictions(classifier, samples):
    rows = pd.read_csv(samples["breast_cancer"]).head(5).drop(columns=["diagnosis"])

    with_header = classifier.invoke(rows.to_csv(index=False), "text/csv").json()
    headerless = classifier.invoke(rows.to_csv(index=False, header=False), "text/csv").json()
    as_json = classifier.invoke(rows.to_dict(orient="records"), "application/json").json()
    wrapped = classifier.invoke({"rows": rows.to_dict(orient="records")}, "application/json; charset=utf-8").json()

    assert with_header == headerless == as_json == wrapped
    assert len(with_header["predictions"]) == 5


def test_missing_and_unknown_columns_are_400_naming_them(classifier, samples):
    rows = pd.read_csv(samples["breast_cancer"]).head(2)
    body = rows.drop(columns=["mean radius", "worst area"]).assign(colour="red")

    response = classifier.invoke(body.to_dict(orient="records"), "application/json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"missing": ["mean radius", "worst area"],
                                         "unknown": ["diagnosis", "colour"]}
    assert response.json()["message"].startswith(
        "missing columns: mean radius, worst area; unknown columns: diagnosis, colour (`diagnosis` is the target: "
        "leave it out). The model takes the columns mean radius, ")


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    ("not json", "application/json", 400, "the body is not JSON (Expecting value at line 1)"),
    ('{"age": 3}', "application/json", 400, 'send a JSON list of rows, each an object of column: value '
                                            '([{"age": 41, ...}]), or {"rows": [...]}'),
    ("1,2\n3,4\n", "text/csv", 400, "the CSV has no header line and 2 values per row, not the model's 30; send a "
                                    "header line naming the columns (mean radius, "),
    ("<x/>", "application/xml", 415, "unsupported content type `application/xml`: send text/csv or "
                                     "application/json"),
])
def test_bad_bodies_say_what_is_wrong(classifier, body, content_type, status, message):
    response = classifier.invoke(body, content_type)

    assert response.status_code == status
    assert response.json()["message"].startswith(message)


def test_regressor_from_a_model_tarball_on_the_sagemaker_port_variable(tmp_path, samples):
    model_dir = trained_model_dir(tmp_path / "build", samples["diabetes"], "diabetes")
    packed = tmp_path / "packed"
    make_model_tarball(model_dir, packed / "model.tar.gz")
    served = Served(packed, env_port=True)
    try:
        ping = served.wait_ready()
        rows = pd.read_csv(samples["diabetes"]).head(4).drop(columns=["progression"])
        response = served.invoke(rows.to_csv(index=False), "text/csv")
    finally:
        served.stop()

    assert ping["problem_type"] == "regression"
    predictions = response.json()["predictions"]
    assert response.status_code == 200 and len(predictions) == 4
    assert all(set(p) == {"value"} and 20 < p["value"] < 350 for p in predictions)


def test_a_missing_model_stops_serve_with_the_reason(tmp_path):
    served = Served(tmp_path / "empty")

    code = served.process.wait(timeout=60)

    assert code == 1
    assert "serve: the model in" in served.process.stderr.read().decode()


def test_a_header_of_unknown_names_is_read_as_a_header(classifier):
    response = classifier.invoke("colour,size\nred,3\n", "text/csv")

    assert response.status_code == 400
    assert response.json()["fields"]["unknown"] == ["colour", "size"]
    assert len(response.json()["fields"]["missing"]) == 30
