"""The local AWS emulator: moto server in-process, IAM enforced, presigned requests adapted.

One emulator serves the whole module (moto state is process-wide).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from core.aws.clients import AwsConfig, make_client
from emulator import EmulatorError, RunningEmulator, start_emulator
from emulator import __main__ as cli
from emulator.launcher import STATE_FIELDS, write_state_file

BUCKET_A = "mlaas-t-bucket-a"
BUCKET_B = "mlaas-t-bucket-b"
PORTAL_ORIGIN = "http://localhost:8000"
REPO_ROOT = Path(__file__).resolve().parent.parent
INTAKE_PATTERN = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {
        "bucket": {"name": [{"prefix": "mlaas-t-"}]},
        "object": {"key": [{"prefix": "uploads/"}]},
    },
}


@pytest.fixture(scope="module")
def state_path(emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session emulator (root conftest) writes its state here, as the launcher does."""
    path = tmp_path_factory.mktemp("emulator") / "not-yet-created" / "emulator.json"
    write_state_file(path, emulator.state())
    return path


@pytest.fixture(scope="module")
def platform(emulator: RunningEmulator) -> AwsConfig:
    return emulator.aws_config()


@pytest.fixture(scope="module")
def buckets(platform: AwsConfig) -> None:
    s3 = make_client("s3", platform)
    for bucket in (BUCKET_A, BUCKET_B):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
        s3.put_bucket_cors(
            Bucket=bucket,
            CORSConfiguration={
                "CORSRules": [
                    {"AllowedOrigins": [PORTAL_ORIGIN], "AllowedMethods": ["GET", "PUT", "POST"],
                     "AllowedHeaders": ["*"]}
                ]
            },
        )
    # Exists, so that a refusal on B cannot be a 404 in disguise.
    s3.put_object(Bucket=BUCKET_B, Key="uploads/x.csv", Body=b"tenant b\n")


@pytest.fixture(scope="module")
def tenant_a(emulator: RunningEmulator, platform: AwsConfig, buckets: None) -> AwsConfig:
    """Assumed-role credentials of tenant A: Get/Put on its uploads/, List on its bucket."""
    iam = make_client("iam", platform)
    iam.create_role(
        RoleName="tenant-a",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"AWS": emulator.user_arn}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
    )
    iam.put_role_policy(
        RoleName="tenant-a",
        PolicyName="tenant-a-data",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:GetObject", "s3:PutObject"],
                        "Resource": f"arn:aws:s3:::{BUCKET_A}/uploads/*",
                    },
                    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET_A}"},
                ],
            }
        ),
    )
    credentials = make_client("sts", platform).assume_role(
        RoleArn=f"arn:aws:iam::{emulator.account_id}:role/tenant-a", RoleSessionName="tenant-a-test"
    )["Credentials"]
    return AwsConfig(
        region=emulator.region,
        endpoint_url=emulator.endpoint,
        access_key_id=credentials["AccessKeyId"],
        secret_access_key=credentials["SecretAccessKey"],
        session_token=credentials["SessionToken"],
    )


def _error_code(response: requests.Response) -> str:
    return response.text.split("<Code>")[1].split("</Code>")[0] if "<Code>" in response.text else ""


def _presigned_post(config: AwsConfig, bucket: str, key: str, body: bytes) -> requests.Response:
    post = make_client("s3", config).generate_presigned_post(bucket, key)
    return requests.post(post["url"], data=post["fields"], files={"file": ("data.csv", body)}, timeout=10)


# --- enforcement --------------------------------------------------------------


def test_platform_identity_creates_bucket(platform: AwsConfig) -> None:
    s3 = make_client("s3", platform)
    s3.create_bucket(Bucket="mlaas-platform-scratch")

    assert "mlaas-platform-scratch" in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_unknown_access_key_is_refused(emulator: RunningEmulator) -> None:
    stranger = AwsConfig(
        region=emulator.region,
        endpoint_url=emulator.endpoint,
        access_key_id="AKIAUNKNOWNKEY000000",
        secret_access_key="not-a-real-secret",
        max_attempts=1,
    )

    with pytest.raises(ClientError) as refused:
        make_client("s3", stranger).list_buckets()

    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_wrong_secret_is_refused(emulator: RunningEmulator) -> None:
    forged = AwsConfig(
        region=emulator.region,
        endpoint_url=emulator.endpoint,
        access_key_id=emulator.access_key_id,
        secret_access_key="not-the-secret",
        max_attempts=1,
    )

    with pytest.raises(ClientError) as refused:
        make_client("s3", forged).list_buckets()

    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_anonymous_request_is_refused_not_crashed(emulator: RunningEmulator, buckets: None) -> None:
    # Unpatched moto answers 500 (KeyError: HTTP_AUTHORIZATION) to these.
    answers = [
        requests.get(f"{emulator.endpoint}/{BUCKET_B}", timeout=10),
        requests.get(f"{emulator.endpoint}/{BUCKET_B}/uploads/missing.csv", timeout=10),
        requests.put(f"{emulator.endpoint}/{BUCKET_B}/uploads/anonymous.csv", data=b"x", timeout=10),
    ]

    assert [(a.status_code, _error_code(a)) for a in answers] == [(403, "AccessDenied")] * 3


def test_tenant_role_is_confined_to_its_bucket(tenant_a: AwsConfig) -> None:
    s3 = make_client("s3", tenant_a)

    with pytest.raises(ClientError) as refused:
        s3.list_objects_v2(Bucket=BUCKET_B)

    assert refused.value.response["Error"]["Code"] == "AccessDenied"


# --- presigned requests under enforcement --------------------------------------


def test_presigned_put_and_get_on_own_bucket_succeed(tenant_a: AwsConfig) -> None:
    s3 = make_client("s3", tenant_a)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET_A, "Key": "uploads/x.csv"})
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET_A, "Key": "uploads/x.csv"})

    put = requests.put(put_url, data=b"a,b\n1,2\n", timeout=10)
    get = requests.get(get_url, timeout=10)

    assert "X-Amz-Credential" in put_url and "X-Amz-Security-Token" in put_url
    assert (put.status_code, get.status_code, get.content) == (200, 200, b"a,b\n1,2\n")


def test_presigned_put_and_get_on_other_bucket_are_refused(tenant_a: AwsConfig) -> None:
    s3 = make_client("s3", tenant_a)
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET_B, "Key": "uploads/x.csv"})
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET_B, "Key": "uploads/x.csv"})

    put = requests.put(put_url, data=b"intruder\n", timeout=10)
    get = requests.get(get_url, timeout=10)

    assert [(put.status_code, _error_code(put)), (get.status_code, _error_code(get))] == [
        (403, "AccessDenied"),
        (403, "AccessDenied"),
    ]


def test_sigv2_presigned_get_uses_the_signers_policies(tenant_a: AwsConfig) -> None:
    s3v2 = make_client("s3", tenant_a, signature_version="s3")
    own = s3v2.generate_presigned_url("get_object", Params={"Bucket": BUCKET_A, "Key": "uploads/sigv2.csv"})
    other = s3v2.generate_presigned_url("get_object", Params={"Bucket": BUCKET_B, "Key": "uploads/x.csv"})
    make_client("s3", tenant_a).put_object(Bucket=BUCKET_A, Key="uploads/sigv2.csv", Body=b"v2\n")

    assert "AWSAccessKeyId=" in own
    assert [requests.get(own, timeout=10).status_code, requests.get(other, timeout=10).status_code] == [200, 403]


def test_presigned_post_into_own_uploads_succeeds(tenant_a: AwsConfig, platform: AwsConfig) -> None:
    response = _presigned_post(tenant_a, BUCKET_A, "uploads/posted.csv", b"c\n3\n")

    stored = make_client("s3", platform).get_object(Bucket=BUCKET_A, Key="uploads/posted.csv")["Body"].read()
    assert (response.status_code, stored) == (204, b"c\n3\n")


def test_presigned_post_into_other_bucket_is_refused(tenant_a: AwsConfig) -> None:
    response = _presigned_post(tenant_a, BUCKET_B, "uploads/posted.csv", b"intruder\n")

    assert (response.status_code, _error_code(response)) == (403, "AccessDenied")


def test_presigned_post_outside_allowed_prefix_is_refused(tenant_a: AwsConfig, platform: AwsConfig) -> None:
    # The bucket is the tenant's own; only the key is outside uploads/*.
    response = _presigned_post(tenant_a, BUCKET_A, "other/x", b"intruder\n")

    listed = make_client("s3", platform).list_objects_v2(Bucket=BUCKET_A, Prefix="other/")
    assert (response.status_code, _error_code(response), listed["KeyCount"]) == (403, "AccessDenied", 0)


# --- CORS ------------------------------------------------------------------------


@pytest.mark.parametrize(("origin", "expected_status", "expected_allow_origin"), [
    (PORTAL_ORIGIN, 200, PORTAL_ORIGIN),
    ("http://evil.example", 403, None),
])
def test_cors_preflight_follows_bucket_rules(
    emulator: RunningEmulator, buckets: None, origin: str, expected_status: int, expected_allow_origin: str | None
) -> None:
    # One key that exists (moto's anonymous-read check used to refuse those) and one that does not.
    answers = [
        requests.options(
            f"{emulator.endpoint}/{BUCKET_B}/{key}",
            headers={"Origin": origin, "Access-Control-Request-Method": "PUT"},
            timeout=10,
        )
        for key in ("uploads/x.csv", "uploads/new.csv")
    ]

    assert [(a.status_code, a.headers.get("Access-Control-Allow-Origin")) for a in answers] == [
        (expected_status, expected_allow_origin)
    ] * 2


# --- S3 -> EventBridge -> SQS ------------------------------------------------------


def test_presigned_post_upload_reaches_intake_queue(tenant_a: AwsConfig, platform: AwsConfig) -> None:
    sqs = make_client("sqs", platform)
    events = make_client("events", platform)
    queue_url = sqs.create_queue(QueueName="intake-test")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="intake-test", EventPattern=json.dumps(INTAKE_PATTERN))
    events.put_targets(Rule="intake-test", Targets=[{"Id": "intake", "Arn": queue_arn}])
    key = f"uploads/{uuid.uuid4().hex}.csv"

    accepted = _presigned_post(tenant_a, BUCKET_A, key, b"a\n1\n")
    refused = _presigned_post(tenant_a, BUCKET_B, "uploads/refused.csv", b"a\n1\n")
    make_client("s3", platform).put_object(Bucket=BUCKET_A, Key="models/not-an-upload.bin", Body=b"m")
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2, MaxNumberOfMessages=10).get("Messages", [])

    version_id = make_client("s3", platform).head_object(Bucket=BUCKET_A, Key=key)["VersionId"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert (accepted.status_code, refused.status_code) == (204, 403)
    assert [(b["source"], b["detail-type"], b["detail"]["bucket"], b["detail"]["object"]["key"]) for b in bodies] == [
        ("aws.s3", "Object Created", {"name": BUCKET_A}, key)
    ]
    assert bodies[0]["detail"]["object"]["version-id"] == version_id


# --- state file and CLI ----------------------------------------------------------


def test_state_file_is_private_and_minimal(emulator: RunningEmulator, state_path: Path) -> None:
    state = json.loads(state_path.read_text())

    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert state == {
        "endpoint": emulator.endpoint,
        "access_key_id": emulator.access_key_id,
        "secret_access_key": emulator.secret_access_key,
        "account_id": emulator.account_id,
        "user_arn": emulator.user_arn,
        "region": "us-east-1",
        "pid": os.getpid(),
    }
    assert emulator.endpoint.startswith("http://127.0.0.1:")
    assert emulator.secret_access_key not in repr(emulator)


def test_write_state_file_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{}")
    path.chmod(0o644)

    write_state_file(path, {name: "x" for name in STATE_FIELDS} | {"extra": "dropped"})

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(json.loads(path.read_text())) == sorted(STATE_FIELDS)


def test_second_emulator_in_one_process_is_refused(emulator: RunningEmulator) -> None:
    with pytest.raises(EmulatorError, match="already runs in this process"):
        start_emulator()


def test_non_loopback_host_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback only"):
        start_emulator(host="0.0.0.0")


@pytest.fixture
def restore_signal_handlers():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_cli_reuses_running_emulator(
    emulator: RunningEmulator, state_path: Path, restore_signal_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    port = emulator.endpoint.rsplit(":", 1)[1]

    status = cli.main(["--port", port, "--state", str(state_path), "--exit-if-running"])

    out = capsys.readouterr().out
    assert (status, f"already running at {emulator.endpoint}" in out, "reusing" in out) == (0, True, True)
    assert emulator.secret_access_key not in out


def test_cli_port_held_by_something_else_fails(
    tmp_path: Path, restore_signal_handlers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]

        status = cli.main(["--port", str(port), "--state", str(tmp_path / "none.json")])

    assert (status, f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err) == (cli.EXIT_PORT_TAKEN, True)


def test_cli_runs_until_sigterm_and_cleans_up(tmp_path: Path) -> None:
    state = tmp_path / "cli" / "emulator.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--state", str(state)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = process.stdout.readline()
        endpoint = json.loads(state.read_text())["endpoint"]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert ready.startswith(f"AWS emulator ready at {endpoint} ") and str(state) in ready, err
    assert (process.returncode, out, state.exists()) == (0, "AWS emulator stopped\n", False)
