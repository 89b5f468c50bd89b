"""The emulator's AWS state survives a restart: clean stop (SIGTERM) and hard kill (SIGKILL).

The emulator runs as `make run` runs it (`python -m emulator`), in
a child process: moto's state is process-wide and the session emulator of
the other tests already holds it in this one.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from core.aws.clients import AwsConfig, make_client
from emulator import __main__ as cli
from emulator import persistence
from emulator.persistence import SnapshotInUse, StateStore

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "mlaas-persist-bucket"
KEY = "uploads/data.csv"
INFERENCE = {
    "Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/train:1",
                    "ModelDataUrl": f"s3://{BUCKET}/models/1/model.tar.gz"}],
    "SupportedContentTypes": ["text/csv"],
    "SupportedResponseMIMETypes": ["text/csv"],
}


class Emulator:
    """One `python -m emulator` child process, with its state and snapshot in `directory`."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.state_file = directory / "emulator.json"
        self.snapshot = directory / "emulator-state.pickle"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "emulator", "--port", "0", "--state", str(self.state_file),
             "--snapshot", str(self.snapshot), *extra],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.ready = self.process.stdout.readline()
        if not self.ready.startswith("AWS emulator ready"):
            self.process.kill()
            raise AssertionError(f"emulator did not start: {self.ready!r} {self.process.communicate()[1]}")
        self.state = json.loads(self.state_file.read_text())
        self._clients: dict[str, object] = {}

    def config(self, **credentials: str) -> AwsConfig:
        return AwsConfig(region="us-east-1", endpoint_url=self.state["endpoint"], max_attempts=1,
                         **(credentials or {"access_key_id": self.state["access_key_id"],
                                            "secret_access_key": self.state["secret_access_key"]}))

    def client(self, service: str):
        """The platform identity's client (made once: a boto3 client costs ~0.1 s)."""
        if service not in self._clients:
            self._clients[service] = make_client(service, self.config())
        return self._clients[service]

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, str]:
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, err

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def emulators(tmp_path: Path) -> Iterator[list[Emulator]]:
    """Start emulators with `emulators.append(Emulator(tmp_path))`; any left running are killed."""
    started: list[Emulator] = []
    yield started
    for emulator in started:
        emulator.kill()


def _populate(emulator: Emulator) -> dict[str, object]:
    """A versioned object (2 versions), a role and its session, an SQS message, a model package, a log stream."""
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"a,b\n1,2\n")["VersionId"]
    second = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"a,b\n3,4\n")["VersionId"]
    iam = emulator.client("iam")
    iam.create_role(RoleName="tenant-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": emulator.state["user_arn"]},
                       "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="tenant-role", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}]}))
    session = emulator.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{emulator.state['account_id']}:role/tenant-role", RoleSessionName="persist-test",
    )["Credentials"]
    sqs = emulator.client("sqs")
    queue = sqs.create_queue(QueueName="persist-intake")["QueueUrl"]
    sqs.send_message(QueueUrl=queue, MessageBody="object created")
    sagemaker = emulator.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName="tenant-models")
    package = sagemaker.create_model_package(ModelPackageGroupName="tenant-models", InferenceSpecification=INFERENCE,
                                             ModelApprovalStatus="PendingManualApproval")["ModelPackageArn"]
    logs = emulator.client("logs")
    logs.create_log_group(logGroupName="/mlaas/builds")
    logs.create_log_stream(logGroupName="/mlaas/builds", logStreamName="build-1/train")
    logs.put_log_events(logGroupName="/mlaas/builds", logStreamName="build-1/train",
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "accuracy 0.97"}])
    return {"versions": [second, first], "session": session, "package": package}


def _observed(emulator: Emulator, session: dict[str, str]) -> dict[str, object]:
    s3 = emulator.client("s3")
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=KEY)["Versions"]
    tenant = emulator.config(access_key_id=session["AccessKeyId"], secret_access_key=session["SecretAccessKey"],
                             session_token=session["SessionToken"])
    sqs = emulator.client("sqs")
    queue = sqs.get_queue_url(QueueName="persist-intake")["QueueUrl"]
    packages = emulator.client("sagemaker").list_model_packages(ModelPackageGroupName="tenant-models")
    events = emulator.client("logs").get_log_events(logGroupName="/mlaas/builds", logStreamName="build-1/train")
    return {
        "versions": [v["VersionId"] for v in versions],
        "first version": s3.get_object(Bucket=BUCKET, Key=KEY, VersionId=versions[-1]["VersionId"])["Body"].read(),
        "read by the role's session": make_client("s3", tenant).get_object(Bucket=BUCKET, Key=KEY)["Body"].read(),
        "messages": [m["Body"] for m in sqs.receive_message(QueueUrl=queue).get("Messages", [])],
        "packages": [(p["ModelPackageArn"], p["ModelApprovalStatus"]) for p in packages["ModelPackageSummaryList"]],
        "log": [e["message"] for e in events["events"]],
    }


def _refused(config: AwsConfig) -> str:
    try:
        make_client("s3", config).list_buckets()
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "allowed"


@pytest.mark.slow  # two emulator processes: 8-16 s on a shared machine
def test_state_survives_a_clean_stop_and_start(tmp_path: Path, emulators: list[Emulator]) -> None:
    emulators.append(first := Emulator(tmp_path))
    made = _populate(first)
    platform = first.config()

    status, err = first.stop(signal.SIGTERM)
    emulators.append(second := Emulator(tmp_path))

    assert status == 0, err
    assert "restored from and saved to" in second.ready
    assert (second.state["access_key_id"], second.state["user_arn"]) == (first.state["access_key_id"],
                                                                         first.state["user_arn"])
    platform = AwsConfig(region="us-east-1", endpoint_url=second.state["endpoint"], max_attempts=1,
                         access_key_id=platform.access_key_id, secret_access_key=platform.secret_access_key)
    assert make_client("sts", platform).get_caller_identity()["Arn"] == first.state["user_arn"]
    assert _observed(second, made["session"]) == {
        "versions": made["versions"],
        "first version": b"a,b\n1,2\n",
        "read by the role's session": b"a,b\n3,4\n",
        "messages": ["object created"],
        "packages": [(made["package"], "PendingManualApproval")],
        "log": ["accuracy 0.97"],
    }
    # IAM enforcement is back on: an unknown key is refused, not let through.
    assert _refused(second.config(access_key_id="AKIAUNKNOWNKEY000000", secret_access_key="x")) == \
        "InvalidAccessKeyId"


def test_state_survives_a_hard_kill_after_the_snapshot_interval(tmp_path: Path, emulators: list[Emulator]) -> None:
    emulators.append(first := Emulator(tmp_path, "--snapshot-interval", "0.2"))
    s3 = first.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    version = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"written before the kill")["VersionId"]
    written = time.time()
    deadline = time.monotonic() + 10
    while _snapshot_written_at(first.snapshot) <= written and time.monotonic() < deadline:
        time.sleep(0.1)

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    emulators.append(second := Emulator(tmp_path))

    got = second.client("s3").get_object(Bucket=BUCKET, Key=KEY)
    assert (got["VersionId"], got["Body"].read()) == (version, b"written before the kill")
    assert second.state["access_key_id"] == first.state["access_key_id"]


def _snapshot_written_at(path: Path) -> float:
    try:
        return pickle.loads(path.read_bytes())["written_at"]
    except (OSError, pickle.UnpicklingError, EOFError, KeyError):
        return 0.0


def test_snapshot_of_s3_keys_keeps_every_version() -> None:
    """moto's key store yields only the latest version of a key: pickled as a plain dict it would lose the rest."""
    from moto.s3.utils import _VersionedKeyStore

    store = _VersionedKeyStore()
    store["uploads/data.csv"] = "version 1"
    store["uploads/data.csv"] = "version 2"
    out = io.BytesIO()
    persistence._Pickler(out, names={}).dump(store)

    copy = pickle.loads(out.getvalue())

    assert (type(copy), copy.getlist("uploads/data.csv")) == (_VersionedKeyStore, ["version 1", "version 2"])


def test_unreadable_snapshot_is_set_aside_and_the_state_starts_empty(tmp_path: Path) -> None:
    snapshot = tmp_path / "emulator-state.pickle"
    snapshot.write_bytes(b"not a pickle")

    restored = StateStore(snapshot).restore()

    kept = [p.name for p in tmp_path.iterdir()]
    assert (restored, snapshot.exists(), len(kept), kept[0].startswith("emulator-state.pickle.unreadable-")) == \
        (None, False, 1, True)
    assert next(tmp_path.iterdir()).read_bytes() == b"not a pickle"


def test_second_emulator_on_the_same_snapshot_is_refused(tmp_path: Path) -> None:
    owner = StateStore(tmp_path / "emulator-state.pickle")
    owner.acquire()
    try:
        with pytest.raises(SnapshotInUse, match="another emulator keeps its state in"):
            StateStore(tmp_path / "emulator-state.pickle").acquire()
    finally:
        owner.release()
    StateStore(tmp_path / "emulator-state.pickle").acquire()  # free again once released


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon", "3601"])
def test_cli_refuses_a_bad_snapshot_interval(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--snapshot-interval", value, "--state", os.devnull])

    assert (exited.value.code, "--snapshot-interval: must be" in capsys.readouterr().err) == (2, True)
