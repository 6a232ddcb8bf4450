"""Runs one batch inference job: S3 input in, the fake model's answers, S3 output out.

Theory of operation
-------------------
1. **Validating**: the input ``s3Uri`` is one ``.jsonl`` object, or a prefix whose ``.jsonl`` objects
   (sorted by key) are the input files. Each file is read whole; S3 calls are boto3's, made in a
   worker thread (``anyio.to_thread``) so the emulator's loop keeps serving. An unreadable input (no
   bucket, no file) fails the job with a message.
2. **InProgress**: every line is one record, answered as InvokeModel answers its ``modelInput`` (the
   same route handler, so the same validation and the same deterministic reply): a 200 becomes
   ``modelOutput``; anything else, a malformed line, or an injected failure (``JobOptions.fail_every``,
   ``fail_pattern``) becomes ``"error": {"errorCode", "errorMessage"}``. ``drop_pattern`` records get
   no line at all. Counts move as records are done, and a stop request is honoured between records.
3. **Output**: for input key ``<prefix>/<name>.jsonl``, ``<output s3Uri>/<job id>/<name>.jsonl.out``
   (the key relative to the input prefix, plus ``.out``), then ``<output s3Uri>/<job id>/manifest.json.out``
   with the record and token counts. Written when the job ends (stopped jobs too, with what was done).
   Lines in an ``.out`` file follow input order here, which the real service does not promise.

The layout under ``<job id>/`` follows AWS's documentation; its exact shape is UNVERIFIED, as are the
error code and message of an injected failure and of a malformed line.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._handlers import MODEL_ROUTES, Call
from ._job import Job
from ._responses import new_request_id

__all__ = ["parse_s3_uri", "run_job"]

_HEADERS = ((b"content-type", b"application/json"), (b"accept", b"application/json"))
_INJECTED = {"errorCode": 500, "errorMessage": "Injected failure (emulator JobOptions)"}
#: Records answered between two checkpoints (yield to the loop, look for a stop request).
_CHECKPOINT = 50


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> (bucket, key prefix)."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _s3_client(job: Job) -> Any:
    import boto3  # a test dependency: only jobs need it

    jobs = job.options.jobs
    session = boto3.session.Session()  # one per job: boto3's default session is not thread-safe
    return session.client(
        "s3",
        endpoint_url=jobs.s3_endpoint_url,
        region_name=job.options.region,
        aws_access_key_id=jobs.s3_access_key or job.options.access_key,
        aws_secret_access_key=jobs.s3_secret_key or job.options.secret_key,
    )


def _read_inputs(s3: Any, uri: str) -> list[tuple[str, bytes]]:
    """(relative name, content) of every input file."""
    bucket, key = parse_s3_uri(uri)
    if key.endswith(".jsonl"):
        return [(key.rsplit("/", 1)[-1], s3.get_object(Bucket=bucket, Key=key)["Body"].read())]
    prefix = key if not key or key.endswith("/") else key + "/"
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", ()) if item["Key"].endswith(".jsonl")]
    if not keys:
        raise FileNotFoundError(f"no .jsonl file under {uri}")
    return [(name[len(prefix) :], s3.get_object(Bucket=bucket, Key=name)["Body"].read()) for name in sorted(keys)]


def _write_outputs(s3: Any, job: Job, files: list[tuple[str, bytes]]) -> None:
    bucket, key = parse_s3_uri(job.output_uri)
    base = f"{key.rstrip('/')}/{job.job_id}/" if key.strip("/") else f"{job.job_id}/"
    for name, data in files:
        s3.put_object(Bucket=bucket, Key=base + name, Body=data)


def _answer(job: Job, model_input: object) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(modelOutput, None) or ({}, error) for one record's modelInput, as InvokeModel answers it."""
    route = MODEL_ROUTES["invoke"]
    body = json.dumps(model_input).encode()
    call = Call(
        options=job.options,
        route=route,
        model_id=job.model_id,
        body=body,
        request_id=new_request_id(),
        headers=_HEADERS,
    )
    reply = route.handler(call)
    document = json.loads(b"".join(reply.parts))
    if reply.status == 200:
        return document, None
    return {}, {"errorCode": reply.status, "errorMessage": str(document.get("message", ""))}


def _line(job: Job, index: int, raw: bytes, counts: dict[str, int]) -> tuple[bytes | None, bool]:
    """(output line or None if dropped, whether it is an error) of the job's ``index``-th record (1-based)."""
    jobs = job.options.jobs
    try:
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError("a record must be a JSON object")
    except ValueError as exc:
        record = {"recordId": f"{index:011d}"}
        error: dict[str, Any] | None = {"errorCode": 400, "errorMessage": f"Malformed record: {exc}"}
        output: dict[str, Any] = {}
    else:
        record.setdefault("recordId", f"{index:011d}")
        error, output = None, {}
    record_id = str(record["recordId"])
    if jobs.drop_pattern is not None and re.search(jobs.drop_pattern, record_id):
        return None, False
    if error is None:
        injected = (jobs.fail_every is not None and index % jobs.fail_every == 0) or (
            jobs.fail_pattern is not None and re.search(jobs.fail_pattern, record_id) is not None
        )
        if injected:
            error = dict(_INJECTED)
        else:
            output, error = _answer(job, record.get("modelInput"))
    line: dict[str, Any] = {"recordId": record_id, "modelInput": record.get("modelInput")}
    if error is None:
        line["modelOutput"] = output
        usage = output.get("usage", {})
        counts["input"] += int(usage.get("input_tokens", 0))
        counts["output"] += int(usage.get("output_tokens", 0))
    else:
        line["error"] = error
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n", error is not None


async def run_job(job: Job) -> None:
    """Take ``job`` from Submitted to a final status (see the module docstring)."""
    job.set_status("Validating")
    try:
        s3 = await anyio.to_thread.run_sync(_s3_client, job)
        inputs = await anyio.to_thread.run_sync(_read_inputs, s3, job.input_uri)
    except Exception as exc:  # the service reports an unreadable input on the job, not as a crash
        job.set_status("Failed", message=f"Unable to read the input: {exc}")
        return
    files = [(name, [raw for raw in data.splitlines() if raw.strip()]) for name, data in inputs]
    job.total = sum(len(lines) for _, lines in files)
    if job.status == "Validating":
        job.set_status("InProgress")
    counts = {"input": 0, "output": 0}
    outputs: list[tuple[str, bytes]] = []
    index = 0
    delay = job.options.jobs.record_delay
    for name, lines in files:
        written: list[bytes] = []
        for raw in lines:
            if job.status == "Stopping":
                break
            index += 1
            line, failed = _line(job, index, raw, counts)
            job.processed += 1
            if line is not None:
                written.append(line)
                job.errors += failed
                job.success += not failed
            if delay:
                await anyio.sleep(delay)
            elif index % _CHECKPOINT == 0:
                await anyio.lowlevel.checkpoint()
        outputs.append((name + ".out", b"".join(written)))
    manifest = {
        "totalRecordCount": job.total,
        "processedRecordCount": job.processed,
        "successRecordCount": job.success,
        "errorRecordCount": job.errors,
        "inputTokenCount": counts["input"],
        "outputTokenCount": counts["output"],
    }
    outputs.append(("manifest.json.out", json.dumps(manifest).encode()))
    try:
        await anyio.to_thread.run_sync(_write_outputs, s3, job, outputs)
    except Exception as exc:  # as above: the job's failure, not the emulator's
        job.set_status("Failed", message=f"Unable to write the output: {exc}")
        return
    if job.status == "Stopping":
        job.set_status("Stopped")
    else:
        job.set_status("PartiallyCompleted" if job.errors else "Completed")
