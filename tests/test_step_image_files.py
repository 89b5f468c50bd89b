"""The step image's files, checked without a container engine (none here): the Dockerfile copies what exists
and keeps SageMaker's `docker run IMAGE train|serve` working, the image pins what the project pins, and the
entry points it puts on PATH follow the container contracts the pipeline definition relies on."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from builds.step_image import CONTEXT_DIRS, DOCKERFILE, REPO_ROOT, context_files

IMAGE_DIR = REPO_ROOT / "image"
ENTRY_POINTS = {"train": "mlaas_steps.train", "serve": "mlaas_steps.serve",
                "preprocess": "mlaas_steps.preprocess", "evaluate": "mlaas_steps.evaluate"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / DOCKERFILE).read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: `{line}` is not pinned with =="
            pins[re.sub(r"\[.*\]", "", name).strip().lower().replace("_", "-")] = version.strip()
    return pins


def test_dockerfile_copies_only_files_of_the_context():
    copies = [shlex.split(args) for keyword, args in dockerfile_instructions() if keyword in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    files = context_files()
    for *sources, _destination in copies:
        for source in sources:
            assert not source.startswith("--"), f"COPY {source}: no --from/--chown needed"
            assert (REPO_ROOT / source).exists(), f"COPY {source}: no such path in the repository"
            assert source.split("/")[0] in CONTEXT_DIRS, f"COPY {source}: outside the published build context"
            assert any(name == source.rstrip("/") or name.startswith(source.rstrip("/") + "/") for name in files)


def test_dockerfile_keeps_sagemakers_program_argument():
    keywords = [keyword for keyword, _ in dockerfile_instructions()]
    assert keywords[0] == "FROM"
    # `docker run IMAGE train` / `serve` and a processing job's ContainerEntrypoint must reach the shell PATH.
    assert "ENTRYPOINT" not in keywords and "CMD" not in keywords
    env = " ".join(args for keyword, args in dockerfile_instructions() if keyword == "ENV")
    assert "PYTHONPATH=/opt/mlaas" in env
    assert ("COPY", "mlaas_steps /opt/mlaas/mlaas_steps") in dockerfile_instructions()
    assert ("COPY", "image/bin/ /usr/local/bin/") in dockerfile_instructions()
    assert ("EXPOSE", "8080") in dockerfile_instructions()


def test_dockerfile_uses_the_projects_python():
    base = next(args for keyword, args in dockerfile_instructions() if keyword == "FROM")
    assert base.startswith(f"python:{sys.version_info.major}.{sys.version_info.minor}-")


@pytest.mark.parametrize("program", sorted(ENTRY_POINTS))
def test_entry_point_scripts_exist_and_run_their_module(program):
    script = IMAGE_DIR / "bin" / program
    assert script.is_file() and os.access(script, os.X_OK), f"image/bin/{program} missing or not executable"
    lines = [line for line in script.read_text().splitlines() if line and not line.startswith("#")]
    assert lines == [f'exec python3 -m {ENTRY_POINTS[program]} "$@"']
    assert f"/usr/local/bin/{program}" in next(args for keyword, args in dockerfile_instructions()
                                                if keyword == "RUN" and "chmod" in args)
    module = REPO_ROOT / (ENTRY_POINTS[program].replace(".", "/") + ".py")
    if program == "serve" and not module.exists():
        pytest.skip("mlaas_steps/serve.py belongs to the serving work; the script is checked, the module not yet")
    assert module.exists(), f"{ENTRY_POINTS[program]} does not exist"
    assert "def main(" in module.read_text()


def test_image_requirements_match_the_projects_pins():
    image = requirement_pins(IMAGE_DIR / "requirements.txt")
    project = requirement_pins(REPO_ROOT / "requirements.txt")
    assert {name: project.get(name) for name in image} == image


def _third_party_imports() -> set[str]:
    names = set()
    for path in (REPO_ROOT / "mlaas_steps").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name != "mlaas_steps"}


def test_image_requirements_cover_every_import_of_the_step_package():
    distributions = importlib.metadata.packages_distributions()
    image = requirement_pins(IMAGE_DIR / "requirements.txt")
    imported = _third_party_imports()
    assert {"numpy", "pandas", "pyarrow", "sklearn", "joblib"} <= imported
    missing = {name for name in imported
               if not {d.lower().replace("_", "-") for d in distributions.get(name, [name])} & set(image)}
    assert missing == set(), f"mlaas_steps imports {sorted(missing)}, which image/requirements.txt does not pin"


def test_entry_points_follow_the_container_contracts(tmp_path):
    """preprocess -> train (as a tuning job's trial) -> evaluate, each as the image runs it: the script on
    PATH, the arguments and files the pipeline definition hands over, under an /opt/ml-shaped root."""
    from mlaas_steps.contract import make_model_tarball
    from mlaas_steps.sample_data import write_sample_csvs

    root = tmp_path / "opt-ml"
    data = root / "processing/input/data"
    data.mkdir(parents=True)
    (data / "wine.csv").write_bytes(write_sample_csvs(tmp_path / "samples")["wine"].read_bytes())
    env = {"PATH": f"{IMAGE_DIR / 'bin'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
           "PYTHONPATH": str(REPO_ROOT), "MLAAS_ML_ROOT": str(root), "SM_NUM_CPUS": "1", "HOME": str(tmp_path)}

    def run(*command: str) -> subprocess.CompletedProcess:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    out = root / "processing/output"
    run("preprocess", "--input", str(data), "--output", str(out), "--target", "cultivar",
        "--problem-type", "classification")
    for channel in ("train", "validation"):
        (root / "input/data").mkdir(parents=True, exist_ok=True)
        (root / "input/data" / channel).symlink_to(out / channel)
    hyperparameters = {"algorithm": "random_forest", "target": "cultivar", "problem_type": "classification",
                       "objective_metric": "f1", "hyperparameters": "{}", "tuning_ranges": "{}",
                       "u0": "0.5", "u1": "0.5", "u2": "0.5", "u3": "0.5"}  # strings, as SageMaker writes them
    (root / "input/config").mkdir(parents=True)
    (root / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    trained = run("train")
    scores = re.findall(r"objective_score=([-+0-9.eE]+)", trained.stdout + trained.stderr)
    assert scores, f"no objective_score for the tuner in: {trained.stdout[-500:]}"
    assert 0.0 <= float(scores[-1]) <= 1.0
    assert (root / "model/model.joblib").exists()

    model_input = tmp_path / "model-input"
    make_model_tarball(root / "model", model_input / "model.tar.gz")  # what SageMaker hands to Evaluate
    run("evaluate", "--model", str(model_input), "--test", str(out / "test"), "--output",
        str(out / "evaluation"), "--target", "cultivar", "--problem-type", "classification",
        "--objective-metric", "f1")
    report = json.loads((out / "evaluation/evaluation.json").read_text())
    assert 0.0 <= report["objective"]["score"] <= 1.0
    assert "f1" in json.dumps(report["metrics"])
