"""The emulator's batch inference control plane, driven by boto3's ``bedrock`` client against a real S3 server."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import attrs
import boto3
import botocore.exceptions
import pytest

from bedrock_chat.emulator import BedrockEmulator

ROLE = "arn:aws:iam::123456789012:role/BatchRole"
MODEL = "anthropic.claude-3-5-haiku-20241022-v1:0"
_DEADLINE = 30.0


def _session(emu: BedrockEmulator) -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id=emu.access_key, aws_secret_access_key=emu.secret_key, region_name=emu.region
    )


@pytest.fixture
def bedrock(emu: BedrockEmulator) -> Any:
    """boto3's control-plane client, pointed at the emulator."""
    return _session(emu).client("bedrock", endpoint_url=emu.endpoint_url)


@pytest.fixture
def s3(emu: BedrockEmulator, s3_endpoint: str) -> Any:
    """boto3's S3 client for the S3 server."""
    return _session(emu).client("s3", endpoint_url=s3_endpoint)


@pytest.fixture
def bucket(s3: Any) -> str:
    """A fresh bucket."""
    name = f"jobs-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def _record(i: int) -> dict[str, Any]:
    body = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": f"question number {i}"}],
    }
    return {"recordId": f"R{i:05d}", "modelInput": body}


def _upload(s3: Any, bucket: str, key: str, records: list[dict[str, Any]]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode())


def _create(bedrock: Any, bucket: str, name: str, **extra: Any) -> str:
    response = bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE,
        modelId=MODEL,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/", "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
        **extra,
    )
    arn: str = response["jobArn"]
    return arn


def _wait(bedrock: Any, arn: str, statuses: frozenset[str]) -> dict[str, Any]:
    deadline = time.monotonic() + _DEADLINE
    while True:
        job: dict[str, Any] = bedrock.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in statuses or time.monotonic() > deadline:
            return job
        time.sleep(0.02)  # polling interval, not synchronisation


_FINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped"})


def _outputs(s3: Any, bucket: str, arn: str) -> dict[str, bytes]:
    job_id = arn.rsplit("/", 1)[-1]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"out/{job_id}/").get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_job_runs_to_completion_and_writes_outputs_and_manifest(bedrock: Any, s3: Any, bucket: str) -> None:
    """A job reads both input files, answers every record and writes one .jsonl.out per file plus the manifest."""
    _upload(s3, bucket, "in/a.jsonl", [_record(i) for i in range(3)])
    _upload(s3, bucket, "in/b.jsonl", [_record(i) for i in range(3, 5)])
    arn = _create(bedrock, bucket, "job-one")
    job = _wait(bedrock, arn, _FINAL)
    assert job["status"] == "Completed"
    assert (job["totalRecordCount"], job["processedRecordCount"], job["successRecordCount"]) == (5, 5, 5)
    assert job["errorRecordCount"] == 0
    job_id = arn.rsplit("/", 1)[-1]
    outputs = _outputs(s3, bucket, arn)
    assert sorted(outputs) == [f"out/{job_id}/{n}" for n in ("a.jsonl.out", "b.jsonl.out", "manifest.json.out")]
    lines = [json.loads(line) for line in outputs[f"out/{job_id}/a.jsonl.out"].splitlines()]
    assert [line["recordId"] for line in lines] == ["R00000", "R00001", "R00002"]
    assert lines[0]["modelInput"] == _record(0)["modelInput"]
    assert lines[0]["modelOutput"]["type"] == "message"
    manifest = json.loads(outputs[f"out/{job_id}/manifest.json.out"])
    assert manifest["totalRecordCount"] == manifest["successRecordCount"] == 5
    assert manifest["inputTokenCount"] == 5 * 3  # "question number N": three words each


def test_injected_failures_and_drops(emu: BedrockEmulator, bedrock: Any, s3: Any, bucket: str) -> None:
    """fail_every and fail_pattern give error lines; drop_pattern records have no line; the job is partial."""
    emu.options = attrs.evolve(
        emu.options, jobs=attrs.evolve(emu.options.jobs, fail_every=4, fail_pattern="R00001$", drop_pattern="R00009")
    )
    _upload(s3, bucket, "in/a.jsonl", [_record(i) for i in range(10)])
    arn = _create(bedrock, bucket, "job-failing")
    job = _wait(bedrock, arn, _FINAL)
    assert job["status"] == "PartiallyCompleted"
    lines = {
        line["recordId"]: line
        for line in map(json.loads, _outputs(s3, bucket, arn)[f"out/{arn.rsplit('/', 1)[-1]}/a.jsonl.out"].splitlines())
    }
    assert "R00009" not in lines
    failed = sorted(record_id for record_id, line in lines.items() if "error" in line)
    assert failed == ["R00001", "R00003", "R00007"]  # the 4th and 8th records, and the pattern's
    assert lines["R00003"]["error"]["errorCode"] == 500
    assert (job["errorRecordCount"], job["successRecordCount"], job["processedRecordCount"]) == (3, 6, 10)


def test_invalid_model_input_is_that_records_error(bedrock: Any, s3: Any, bucket: str) -> None:
    """A record InvokeModel would refuse gets its 400 as an error line, not a failed job."""
    bad = {"recordId": "BAD", "modelInput": {"anthropic_version": "bedrock-2023-05-31", "messages": []}}
    _upload(s3, bucket, "in/a.jsonl", [_record(0), bad])
    arn = _create(bedrock, bucket, "job-bad-record")
    job = _wait(bedrock, arn, _FINAL)
    assert job["status"] == "PartiallyCompleted"
    out = _outputs(s3, bucket, arn)[f"out/{arn.rsplit('/', 1)[-1]}/a.jsonl.out"]
    line = json.loads(out.splitlines()[1])
    assert line["recordId"] == "BAD"
    assert line["error"]["errorCode"] == 400


def test_client_request_token_makes_create_idempotent(bedrock: Any, s3: Any, bucket: str) -> None:
    """The same token and name return the first job; the token with another name is a conflict."""
    _upload(s3, bucket, "in/a.jsonl", [_record(0)])
    first = _create(bedrock, bucket, "job-token", clientRequestToken="tok123")
    assert _create(bedrock, bucket, "job-token", clientRequestToken="tok123") == first
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        _create(bedrock, bucket, "job-other", clientRequestToken="tok123")
    assert caught.value.response["Error"]["Code"] == "ConflictException"
    # The bedrock service model gives ConflictException HTTP 400 (botocore's service-2.json), not 409.
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len(bedrock.list_model_invocation_jobs()["invocationJobSummaries"]) == 1


def test_stop_a_running_job(emu: BedrockEmulator, bedrock: Any, s3: Any, bucket: str) -> None:
    """Stopping an in-progress job ends it as Stopped with the records done so far written."""
    emu.options = attrs.evolve(emu.options, jobs=attrs.evolve(emu.options.jobs, record_delay=0.05))
    _upload(s3, bucket, "in/a.jsonl", [_record(i) for i in range(200)])
    arn = _create(bedrock, bucket, "job-stop")
    assert _wait(bedrock, arn, frozenset({"InProgress"}))["status"] == "InProgress"
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    job = _wait(bedrock, arn, _FINAL)
    assert job["status"] == "Stopped"
    assert 0 < job["processedRecordCount"] < 200
    lines = _outputs(s3, bucket, arn)[f"out/{arn.rsplit('/', 1)[-1]}/a.jsonl.out"].splitlines()
    assert len(lines) == job["processedRecordCount"]
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert caught.value.response["Error"]["Code"] == "ValidationException"


def test_missing_input_fails_the_job(bedrock: Any, bucket: str) -> None:
    """An input prefix with no .jsonl file fails the job with a message."""
    arn = _create(bedrock, bucket, "job-empty")
    job = _wait(bedrock, arn, _FINAL)
    assert job["status"] == "Failed"
    assert "no .jsonl file" in job["message"]


def test_list_filters_and_pages(bedrock: Any, s3: Any, bucket: str) -> None:
    """ListModelInvocationJobs filters by name and status and pages with nextToken."""
    _upload(s3, bucket, "in/a.jsonl", [_record(0)])
    arns = [_create(bedrock, bucket, f"listed-{i}") for i in range(3)]
    for arn in arns:
        _wait(bedrock, arn, _FINAL)
    page = bedrock.list_model_invocation_jobs(nameContains="listed-", maxResults=2)
    assert len(page["invocationJobSummaries"]) == 2
    rest = bedrock.list_model_invocation_jobs(nameContains="listed-", maxResults=2, nextToken=page["nextToken"])
    names = {s["jobName"] for s in page["invocationJobSummaries"] + rest["invocationJobSummaries"]}
    assert names == {"listed-0", "listed-1", "listed-2"}
    assert bedrock.list_model_invocation_jobs(statusEquals="Failed")["invocationJobSummaries"] == []


def test_unknown_job_and_bad_signature(emu: BedrockEmulator, bedrock: Any) -> None:
    """An unknown job is 404 ResourceNotFoundException; a wrong secret is refused like on the runtime routes."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock.get_model_invocation_job(jobIdentifier="nosuchjob123")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFoundException"
    wrong = boto3.session.Session(
        aws_access_key_id=emu.access_key, aws_secret_access_key="wrong", region_name=emu.region
    ).client("bedrock", endpoint_url=emu.endpoint_url)
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        wrong.list_model_invocation_jobs()
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_create_validates_the_request(bedrock: Any, bucket: str) -> None:
    """A bad job name or a non-S3 output URI is a ValidationException before any job exists."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        bedrock.create_model_invocation_job(
            jobName="job-x",
            roleArn=ROLE,
            modelId=MODEL,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket}/in/"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "https://example.com/out/"}},
        )
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    assert bedrock.list_model_invocation_jobs()["invocationJobSummaries"] == []
