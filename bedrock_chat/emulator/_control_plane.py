"""Bedrock's control plane for batch inference: Create/Get/List/StopModelInvocationJob.

Theory of operation
-------------------
The routes are botocore's ``bedrock`` service (rest-json, SigV4 signing name ``bedrock``)::

    POST /model-invocation-job                       CreateModelInvocationJob -> {"jobArn"}
    GET  /model-invocation-job/{jobIdentifier}       GetModelInvocationJob    (identifier: ARN or job id)
    GET  /model-invocation-jobs                      ListModelInvocationJobs  (filters in the query)
    POST /model-invocation-job/{jobIdentifier}/stop  StopModelInvocationJob   -> {}

:class:`ControlPlane` answers them (authenticated exactly like the runtime routes, by ``_auth``) from
an in-memory table of :class:`Job` values, and runs each created job as a task of its own task group
(``_job_runner``), which the server starts and cancels with itself. A job's lifecycle::

    Submitted -> Validating -> InProgress -> Completed | PartiallyCompleted | Failed
                       \\-- StopModelInvocationJob: Stopping -> Stopped

``PartiallyCompleted`` when some records have error lines, ``Failed`` when the input cannot be read.
Idempotency: a ``clientRequestToken`` seen before, with the same job name, returns the first job's
ARN; with another name it is a 409 ConflictException. A job name already used by another token is a
409 ConflictException too. Job ids are 12 lower-case alphanumerics, ARNs
``arn:aws:bedrock:<region>:123456789012:model-invocation-job/<id>``. The account id, the conflict
rules, the stop-of-a-finished-job error and every error message are UNVERIFIED.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import anyio
import anyio.abc

from ._auth import INVOKE_SIGNING_NAMES
from ._handlers import Dispatched, authenticate
from ._job import Job
from ._options import EmulatorOptions
from ._responses import Reply, error_reply, new_request_id, ok_json_reply
from ._wire_errors import ServiceError

__all__ = ["ACCOUNT_ID", "ControlPlane"]

#: The account id in the ARNs the emulator makes (AWS's documentation example).
ACCOUNT_ID = "123456789012"
_STOPPABLE = frozenset({"Submitted", "Validating", "Scheduled", "InProgress"})
_JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
_TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
_ID_ALPHABET = string.ascii_lowercase + string.digits
_JOB_PATH = "/model-invocation-job"
_LIST_PATH = "/model-invocation-jobs"
_INVOCATION_TYPES = frozenset({"InvokeModel"})  # Converse records are not emulated


def _validation(message: str) -> ServiceError:
    return ServiceError("ValidationException", message)


def _s3_uri(config: object, outer: str, inner: str) -> str | ServiceError:
    """``config[inner]["s3Uri"]``, checked to be an ``s3://bucket/...`` URI."""
    section = config.get(inner) if isinstance(config, dict) else None
    uri = section.get("s3Uri") if isinstance(section, dict) else None
    if not isinstance(uri, str) or not uri.startswith("s3://") or len(uri) < 6:
        return _validation(f"{outer}.{inner}.s3Uri must be an S3 URI (s3://bucket/key)")
    return uri


class ControlPlane:
    """The four job operations, and the task group that runs the jobs; one per emulator."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._by_token: dict[str, str] = {}
        self._task_group: anyio.abc.TaskGroup | None = None

    @property
    def jobs(self) -> Mapping[str, Job]:
        """Every job, by job id, in creation order."""
        return self._jobs

    async def run(self) -> None:
        """Own the task group the jobs run in, until cancelled with the server."""
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            try:
                await anyio.sleep_forever()
            finally:
                self._task_group = None

    def dispatch(
        self, options: EmulatorOptions, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes
    ) -> Dispatched | None:
        """The reply to a control-plane request; None when ``target`` is not a control-plane path."""
        path, _, query = target.partition("?")
        if path == _LIST_PATH:
            operation, identifier = ("ListModelInvocationJobs" if method == "GET" else None), None
        elif path == _JOB_PATH:
            operation, identifier = ("CreateModelInvocationJob" if method == "POST" else None), None
        elif path.startswith(_JOB_PATH + "/"):
            rest = path[len(_JOB_PATH) + 1 :]
            if rest.endswith("/stop"):
                operation, identifier = ("StopModelInvocationJob" if method == "POST" else None), rest[:-5]
            else:
                operation, identifier = ("GetModelInvocationJob" if method == "GET" else None), rest
        else:
            return None
        request_id = new_request_id()
        if operation is None:
            error = ServiceError("UnknownOperationException", f"Unknown operation: {method} {path}")
            return Dispatched(error_reply(error, request_id))
        if options.verify_signatures:
            failure = authenticate(
                options, method=method, target=target, headers=headers, body=body, signing_names=INVOKE_SIGNING_NAMES
            )
            if failure is not None:
                return Dispatched(error_reply(failure, request_id), operation)
        if operation == "CreateModelInvocationJob":
            answer = self._create(options, body)
        elif operation == "ListModelInvocationJobs":
            answer = self._list(urllib.parse.parse_qs(query))
        else:
            assert identifier is not None
            job = self._find(urllib.parse.unquote(identifier))
            if isinstance(job, ServiceError):
                answer = job
            elif operation == "GetModelInvocationJob":
                answer = job.summary()
            else:
                answer = self._stop(job)
        reply: Reply
        if isinstance(answer, ServiceError):
            reply = error_reply(answer, request_id)
        else:
            reply = ok_json_reply(answer, request_id=request_id)
        return Dispatched(reply, operation, authenticated=True)

    # -- operations ----------------------------------------------------------------------------

    def _create(self, options: EmulatorOptions, body: bytes) -> dict[str, Any] | ServiceError:
        try:
            request = json.loads(body)
        except ValueError as exc:
            return ServiceError("SerializationException", f"Malformed request body: {exc}")
        if not isinstance(request, dict):
            return ServiceError("SerializationException", "The request body must be a JSON object")
        name, role, model = request.get("jobName"), request.get("roleArn"), request.get("modelId")
        for field, value in (("jobName", name), ("roleArn", role), ("modelId", model)):
            if not isinstance(value, str) or not value:
                return _validation(f"1 validation error detected: Value at '{field}' failed to satisfy constraint")
        assert isinstance(name, str)
        assert isinstance(role, str)
        assert isinstance(model, str)
        if not _JOB_NAME.fullmatch(name):
            return _validation(
                f"Value '{name}' at 'jobName' failed to satisfy constraint: Member must satisfy "
                "regular expression pattern"
            )
        token = request.get("clientRequestToken")
        if token is not None and (not isinstance(token, str) or not _TOKEN.fullmatch(token)):
            return _validation("Value at 'clientRequestToken' failed to satisfy constraint")
        invocation_type = request.get("modelInvocationType", "InvokeModel")
        if invocation_type not in _INVOCATION_TYPES:
            return _validation(f"modelInvocationType {invocation_type!r} is not supported by the emulator")
        timeout = request.get("timeoutDurationInHours", 168)
        if not isinstance(timeout, int) or not 24 <= timeout <= 168:
            return _validation("timeoutDurationInHours must be between 24 and 168")
        input_config, output_config = request.get("inputDataConfig"), request.get("outputDataConfig")
        input_uri = _s3_uri(input_config, "inputDataConfig", "s3InputDataConfig")
        if isinstance(input_uri, ServiceError):
            return input_uri
        output_uri = _s3_uri(output_config, "outputDataConfig", "s3OutputDataConfig")
        if isinstance(output_uri, ServiceError):
            return output_uri
        assert isinstance(input_config, dict)
        assert isinstance(output_config, dict)
        if token is not None and token in self._by_token:
            existing = self._jobs[self._by_token[token]]
            if existing.name != name:
                return ServiceError("ConflictException", "The clientRequestToken was used by another job")
            return {"jobArn": existing.arn}
        if any(job.name == name for job in self._jobs.values()):
            return ServiceError("ConflictException", f"A job named {name} already exists")
        if self._task_group is None:  # pragma: no cover - the server starts run() before it serves
            return ServiceError("InternalServerException", "The job runner is not running")
        job_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
        job = Job(
            job_id=job_id,
            arn=f"arn:aws:bedrock:{options.region}:{ACCOUNT_ID}:model-invocation-job/{job_id}",
            name=name,
            model_id=model,
            role_arn=role,
            token=token,
            input_uri=input_uri,
            output_uri=output_uri,
            input_config=input_config,
            output_config=output_config,
            timeout_hours=timeout,
            invocation_type=invocation_type,
            options=options,
            submit_time=options.clock(),
        )
        self._jobs[job_id] = job
        if token is not None:
            self._by_token[token] = job_id
        from ._job_runner import run_job  # imports boto3 lazily, only when jobs are used

        self._task_group.start_soon(run_job, job)
        return {"jobArn": job.arn}

    def _find(self, identifier: str) -> Job | ServiceError:
        job = self._jobs.get(identifier.rsplit("/", 1)[-1])
        if job is None or (identifier.startswith("arn:") and identifier != job.arn):
            return ServiceError("ResourceNotFoundException", f"Could not find job {identifier}")
        return job

    def _list(self, query: Mapping[str, list[str]]) -> dict[str, Any] | ServiceError:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        jobs = list(self._jobs.values())
        status, contains = one("statusEquals"), one("nameContains")
        if status is not None:
            jobs = [job for job in jobs if job.status == status]
        if contains is not None:
            jobs = [job for job in jobs if contains in job.name]
        jobs.sort(key=lambda job: job.submit_time, reverse=one("sortOrder") != "Ascending")
        try:
            start = int(one("nextToken") or 0)
            size = int(one("maxResults") or 1000)
        except ValueError:
            return _validation("nextToken and maxResults must be integers")
        if not 1 <= size <= 1000 or start < 0:
            return _validation("maxResults must be between 1 and 1000")
        page: dict[str, Any] = {"invocationJobSummaries": [job.summary() for job in jobs[start : start + size]]}
        if start + size < len(jobs):
            page["nextToken"] = str(start + size)
        return page

    def _stop(self, job: Job) -> dict[str, Any] | ServiceError:
        if job.status not in _STOPPABLE:
            return _validation(f"The job {job.arn} cannot be stopped: its status is {job.status}")
        job.set_status("Stopping")
        return {}
