import time
import pytest
from botocore.exceptions import ClientError
from mlaas_portal.aws.clients import make_client, platform_config
from tenants.credentials import tenant_assume


def test_probe(make_tenant):
    t0 = time.monotonic()
    a = make_tenant(isolation="pool")
    b = make_tenant(isolation="pool")
    s = make_tenant(isolation="silo")
    print("provision 3", time.monotonic() - t0)
    creds = tenant_assume(a, purpose="t")
    s3 = make_client("s3", creds.as_config(platform_config()))
    for label, kw in [("own", dict(Bucket=a.bucket, Prefix=a.prefix)), ("other", dict(Bucket=a.bucket, Prefix=b.prefix)),
                      ("noprefix", dict(Bucket=a.bucket)), ("silo", dict(Bucket=s.bucket))]:
        try:
            r = s3.list_objects_v2(**kw)
            print(label, "ALLOWED", [o["Key"] for o in r.get("Contents", [])])
        except ClientError as e:
            print(label, "DENIED", e.response["Error"]["Code"])
    print([(st.name, st.status, st.resource_arn) for st in a.provisioning_steps.all()])
    print([(st.name, st.status, st.resource_arn) for st in s.provisioning_steps.all()])


def test_closed_port_timing(settings, emulator):
    from mlaas_portal.aws.clients import reset_client_cache
    from mlaas_portal.aws import gateways
    import socket
    sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
    settings.AWS_ENDPOINT_URL = f"http://127.0.0.1:{port}"
    reset_client_cache()
    t0 = time.monotonic()
    try:
        gateways.platform_sts().account_id()
    except Exception as e:
        print(type(e), e)
    print("closed port", time.monotonic() - t0)
    reset_client_cache()
