"""Bedrock batch inference jobs: the same batch file, run on AWS's fleet (about half the on-demand price).

Theory of operation
-------------------
1. **Prepare** (:func:`prepare_input`, no I/O but local files): every input line is parsed and validated
   exactly as ``bedrock-chat batch`` does it (``_cli.batch``: Bedrock's ``{"recordId", "modelInput"}``
   lines and our ``create()`` lines, the latter built into the InvokeModel body ``create`` would send).
   Malformed lines, duplicate ids, invalid model inputs, a line naming another model than the job's and
   too few records are :class:`BatchInputError`, naming every line, before anything is uploaded. Records
   are written as ``{"recordId", "modelInput"}`` lines into part files within the per-file limits.
2. **Submit** (:meth:`BatchJobs.submit`): the parts go to ``<s3>/<digest>/input/part-NNNNN.jsonl`` (boto3's
   S3 transfer: multipart for big files), and CreateModelInvocationJob is called with output
   ``<s3>/<digest>/output/`` and a ``clientRequestToken`` derived from the SHA-256 of the uploaded
   content, the model and the job name: rerunning the same input attaches to the same job instead of
   paying twice. ``<digest>`` is the first 16 hex digits of that content hash.
3. **Wait** (:meth:`BatchJobs.wait`): GetModelInvocationJob every ``poll_interval`` seconds until a final
   status; cancelling the wait leaves the job running (attach again with its ARN).
4. **Results** (:meth:`BatchJobs.results`): every ``*.jsonl.out`` under ``<output>/<job id>/`` is downloaded
   and its lines yielded in the local run's shape (``recordId``, ``modelInput``, then ``modelOutput`` or
   ``error``); :meth:`BatchJobs.manifest` reads ``manifest.json.out``.

boto3 is not a dependency of bedrock_chat: it is imported on first use, and every boto3 call runs in a
worker thread (``anyio.to_thread``) so the event loop never blocks. The quotas in :class:`BatchLimits`
are AWS's documented defaults as far as we know them: UNVERIFIED (BEDROCK_PROTOCOL.md §9), so they are
parameters.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import attrs

from .._core.config import check_resolves_to_loopback, default_endpoint_url
from .._core.models import resolve_model
from .._errors import BedrockError, ConfigurationError, Scrubber, from_the_server
from .._http.credentials import StaticCredentialSource
from .._http.endpoint import parse_endpoint
from .._http.loops import PerLoop
from .records import Malformed, bedrock_record, input_lines, line_fields, our_record

if TYPE_CHECKING:
    from .._client import AnthropicBedrock

__all__ = [
    "FINAL_STATUSES",
    "BatchInputError",
    "BatchJobs",
    "BatchLimits",
    "JobStatus",
    "PreparedInput",
    "SubmittedJob",
    "prepare_input",
]

FINAL_STATUSES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
_RESULT_KEYS = ("recordId", "modelInput", "modelOutput", "error")


class BatchInputError(BedrockError):
    """The input cannot become a batch job; ``problems`` lists (line number, reason), line 0 for the whole file."""

    def __init__(self, problems: list[tuple[int, str]], source: str = "input") -> None:
        self.problems = problems
        shown = "; ".join(f"line {line}: {reason}" if line else reason for line, reason in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(f"{source}: {len(problems)} problem(s), nothing uploaded: {shown}{more}")


@attrs.frozen(kw_only=True)
class BatchLimits:
    """The service's quotas a job must respect; defaults are AWS's documented ones, UNVERIFIED (see the module)."""

    min_records_per_job: int = 100
    max_records_per_job: int | None = None
    max_records_per_file: int = 50_000
    max_bytes_per_file: int = 1_000_000_000


@attrs.frozen(kw_only=True)
class PreparedInput:
    """Validated records, written as Bedrock input part files, and the hash that names them."""

    directory: Path | None  # None: validated and hashed only, nothing written
    files: tuple[Path, ...]
    record_ids: frozenset[str]
    model_id: str
    digest: str

    @property
    def records(self) -> int:
        """How many records the parts hold."""
        return len(self.record_ids)


@attrs.frozen(kw_only=True)
class JobStatus:
    """A job as GetModelInvocationJob describes it (counts may be None before the service has them)."""

    arn: str
    name: str
    status: str
    message: str | None
    total: int | None
    processed: int | None
    succeeded: int | None
    failed: int | None
    output_uri: str

    @property
    def finished(self) -> bool:
        """Whether the status is final."""
        return self.status in FINAL_STATUSES

    @property
    def job_id(self) -> str:
        """The last segment of the ARN (the output prefix's folder)."""
        return self.arn.rsplit("/", 1)[-1]

    @classmethod
    def from_response(cls, described: dict[str, Any]) -> JobStatus:
        """From GetModelInvocationJob's response."""
        return cls(
            arn=described["jobArn"],
            name=described.get("jobName", ""),
            status=described["status"],
            message=described.get("message"),
            total=described.get("totalRecordCount"),
            processed=described.get("processedRecordCount"),
            succeeded=described.get("successRecordCount"),
            failed=described.get("errorRecordCount"),
            output_uri=described["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"],
        )


@attrs.frozen(kw_only=True)
class SubmittedJob:
    """What :meth:`BatchJobs.submit` did: the job's ARN, its token and the uploaded input."""

    arn: str
    token: str
    input_uri: str
    output_uri: str
    prepared: PreparedInput


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) < 6:
        raise ConfigurationError(f"not an S3 URI (s3://bucket/prefix): {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ConfigurationError(f"the S3 URI names no bucket: {uri!r}")
    return bucket, key.strip("/")


def _join(bucket: str, *parts: str) -> str:
    return "s3://" + "/".join([bucket, *(part.strip("/") for part in parts if part.strip("/"))]) + "/"


def prepare_input(
    client: AnthropicBedrock,
    path: Path,
    *,
    model: str,
    directory: Path | None,
    skip: Iterable[str] = (),
    limits: BatchLimits = BatchLimits(),
) -> PreparedInput:
    """Validate ``path`` (skipping record ids in ``skip``) and write its records as part files in ``directory``.

    With ``directory=None`` nothing is written: only the validation and the digest (what ``find`` needs).

    Raises:
        BatchInputError: malformed lines, duplicate ids, invalid inputs, another model, wrong record count.
    """

    resolved = resolve_model(model)
    client._check_model_region(resolved)
    skipped = set(skip)
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    lines: list[bytes] = []
    for number, raw in input_lines(path):
        try:
            record_id, data = line_fields(raw, number)
        except Malformed as exc:
            problems.append((number, f"malformed: {exc}"))
            continue
        if record_id in seen:
            problems.append((number, f"record id {record_id!r} repeats line {seen[record_id]}"))
            continue
        seen[record_id] = number
        if record_id in skipped:
            continue
        line_model = data.get("modelId") if "modelInput" in data else data.get("model")
        if line_model is not None and line_model != model:
            try:
                same = isinstance(line_model, str) and resolve_model(line_model).model_id == resolved.model_id
            except BedrockError:
                same = False
            if not same:
                problems.append((number, f"model {line_model!r} is not the job's model {model!r}"))
                continue
        if "modelInput" in data:
            record = bedrock_record(client, record_id, data, model)
        elif "messages" in data:
            record = our_record(client, record_id, data, model)
        else:
            problems.append((number, "needs modelInput (Bedrock's form) or messages (create()'s)"))
            continue
        if record.error is not None:
            problems.append((number, f"{type(record.error).__name__}: {record.error}"))
            continue
        lines.append(
            json.dumps({"recordId": record_id, "modelInput": record.model_input}, ensure_ascii=False).encode() + b"\n"
        )
    if not problems and len(lines) < limits.min_records_per_job:
        problems.append((0, f"{len(lines)} records to send; a job needs at least {limits.min_records_per_job}"))
    if limits.max_records_per_job is not None and len(lines) > limits.max_records_per_job:
        problems.append((0, f"{len(lines)} records; a job takes at most {limits.max_records_per_job}"))
    if problems:
        raise BatchInputError(problems, str(path))
    digest = hashlib.sha256(resolved.model_id.encode() + b"\n")
    files: list[Path] = []
    part: list[bytes] = []
    size = 0

    def flush() -> None:
        if directory is not None:
            name = directory / f"part-{len(files) + 1:05d}.jsonl"
            name.write_bytes(b"".join(part))
            files.append(name)

    for line in lines:
        if len(line) > limits.max_bytes_per_file:
            raise BatchInputError([(seen[json.loads(line)["recordId"]], "the record alone exceeds the file limit")])
        if part and (len(part) >= limits.max_records_per_file or size + len(line) > limits.max_bytes_per_file):
            flush()
            part, size = [], 0
        part.append(line)
        size += len(line)
        digest.update(line)
    flush()
    record_ids = frozenset(json.loads(line)["recordId"] for line in lines)
    return PreparedInput(
        directory=directory,
        files=tuple(files),
        record_ids=record_ids,
        model_id=resolved.model_id,
        digest=digest.hexdigest(),
    )


def default_job_name(prepared: PreparedInput) -> str:
    """``bedrock-chat-`` and 16 hex digits of the input's digest: the same input names the same job."""
    return f"bedrock-chat-{prepared.digest[:16]}"


def result_line(line: dict[str, Any]) -> dict[str, Any]:
    """A service output line in the local run's shape: its keys in the local order, nothing else."""
    return {key: line[key] for key in _RESULT_KEYS if key in line}


#: A ``"recordId": "..."`` pair, found in a line that does not parse (to tell which record it was about).
_RECORD_ID = re.compile(rb'"recordId"\s*:\s*("(?:[^"\\]|\\.)*")')


def service_line(raw: bytes, key: str, number: int) -> dict[str, Any]:
    """One line of a job's ``.jsonl.out`` in the local run's shape; a line that is not a JSON object becomes an error.

    A job's output is the service's (or a hand-edited copy's): one bad line must neither stop the
    download of the others nor vanish. It becomes an error result for its record when its record id can
    still be read, so it is counted as failed and ``--retry-errors`` redoes it; without an id, it has no
    ``recordId`` and its record is reported as not returned by the job.
    """
    try:
        line = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested past the decoder's depth
        line = None
    if isinstance(line, dict):
        return result_line(line)
    error: dict[str, Any] = {
        "error": {"errorCode": 500, "errorMessage": f"line {number} of the job's output {key} is not a JSON object"}
    }
    found = _RECORD_ID.search(raw)
    if found is not None:
        with contextlib.suppress(ValueError):
            return {"recordId": json.loads(found[1]), **error}
    return error


#: The Authorization header of the worker thread's last boto3 attempt (each call runs in one thread).
_last_authorization = threading.local()


def _remember_authorization(request: Any, **_: Any) -> None:
    """botocore's ``before-send`` hook: note the signed Authorization, which a server may echo into an error."""
    value = request.headers.get("Authorization")
    _last_authorization.value = value.decode("latin-1") if isinstance(value, bytes) else value


def _botocore_failure(exc: Exception) -> BedrockError:
    """botocore's error as ours, unscrubbed yet: a ClientError's code and message, or the exception's type and text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return BedrockError(f"{error.get('Code', 'Error')}: {error.get('Message', exc)}")
    return BedrockError(f"{type(exc).__name__}: {exc}")


class BatchJobs:
    """Bedrock batch inference jobs for one :class:`AnthropicBedrock` client (its credentials and region).

    Args:
        client: whose credentials (explicit keys or profile) and region the jobs use.
        bedrock_endpoint_url: the control plane (``bedrock``, not ``bedrock-runtime``); default: the
            client's ``control_plane_endpoint_url`` (given, or the region's as botocore derives it), never
            its runtime ``endpoint_url``.
        s3_endpoint_url: an S3-compatible endpoint; default boto3's.
        limits: the quotas :func:`prepare_input` enforces.
    """

    def __init__(
        self,
        client: AnthropicBedrock,
        *,
        bedrock_endpoint_url: str | None = None,
        s3_endpoint_url: str | None = None,
        limits: BatchLimits = BatchLimits(),
    ) -> None:
        self._client = client
        if bedrock_endpoint_url is not None:
            parse_endpoint(
                bedrock_endpoint_url, allow_insecure_http=client._allow_insecure_http, field="bedrock_endpoint_url"
            )
        self._bedrock_endpoint_url = bedrock_endpoint_url
        self._s3_endpoint_url = s3_endpoint_url
        self.limits = limits
        self._boto: tuple[Any, Any] | None = None
        self._session: Any = None
        self._lock = PerLoop(anyio.Lock)

    async def _clients(self) -> tuple[Any, Any]:
        """(bedrock, s3) boto3 clients, made once in a worker thread."""
        async with self._lock.get():
            if self._boto is None:
                client = self._client
                if client._api_key is not None:
                    raise ConfigurationError("batch jobs need AWS credentials (S3 does not take a Bedrock API key)")
                keys = None
                if isinstance(client._credentials, StaticCredentialSource):
                    found = await client._credentials.get()
                    keys = (found.access_key, found.secret_key, found.session_token)
                profile = client._botocore_source._profile if client._botocore_source is not None else None
                region = client.region
                if region is None and client._botocore_source is not None:
                    region = await client._botocore_source.region()
                endpoint = self._bedrock_endpoint_url or client.control_plane_endpoint_url
                if endpoint is None and region is not None:
                    endpoint = default_endpoint_url(
                        region, fips=client._fips, dualstack=client._dualstack, service="bedrock"
                    )
                self._boto = await anyio.to_thread.run_sync(self._make_clients, keys, profile, region, endpoint)
            assert self._boto is not None
            return self._boto

    def _make_clients(
        self, keys: tuple[str, str, str | None] | None, profile: str | None, region: str | None, endpoint: str | None
    ) -> Any:
        """Runs in a worker thread: boto3's clients, after checking a plain-http ``localhost`` resolves to loopback."""
        if endpoint is not None:
            parsed = parse_endpoint(endpoint, allow_insecure_http=self._client._allow_insecure_http)
            if parsed.verify_loopback:
                host = parsed.url.host
                try:
                    found = socket.getaddrinfo(host, parsed.url.port or 80, type=socket.SOCK_STREAM)
                except OSError as exc:
                    raise ConfigurationError(f"control_plane_endpoint_url: cannot resolve {host!r}: {exc}") from exc
                check_resolves_to_loopback("control_plane_endpoint_url", host, (str(info[4][0]) for info in found))
        try:
            # boto3 is optional and slow to import: loaded on first use (start-up time)
            import boto3
        except ImportError:
            raise ConfigurationError("batch jobs need boto3: pip install boto3") from None
        if keys is not None:
            session = boto3.session.Session(
                aws_access_key_id=keys[0], aws_secret_access_key=keys[1], aws_session_token=keys[2], region_name=region
            )
        else:
            session = boto3.session.Session(profile_name=profile, region_name=region)
        bedrock = session.client("bedrock", endpoint_url=endpoint)
        s3 = session.client("s3", endpoint_url=self._s3_endpoint_url)
        for made in (bedrock, s3):
            made.meta.events.register("before-send", _remember_authorization)
        self._session = session
        return bedrock, s3

    async def _call(self, function: Callable[..., Any], **kwargs: Any) -> Any:
        """A boto3 call in a worker thread, its errors translated to a BedrockError there (one boundary)."""
        return await anyio.to_thread.run_sync(lambda: self._call_in_thread(function, kwargs))

    def _call_in_thread(self, function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
        """Runs in the worker thread (where the attempt's Authorization was noted, and credentials may refresh).

        What the server sent (ClientError's code and message, a parser error quoting the body) passes
        :func:`from_the_server` with the call's secrets; botocore's exception is not chained, since its
        text is unscrubbed and its frames hold the signed request.
        """
        # botocore is slow to import: loaded on first use (start-up time)
        import botocore.exceptions

        _last_authorization.value = None
        try:
            return function(**kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            failure = _botocore_failure(exc)  # built in its own frame: no local here holds the raw text
        raise from_the_server(failure, Scrubber(self._secrets))

    def _secrets(self) -> list[str | None]:
        """The call's secrets (worker thread): its Authorization and signature, the secret key and the token."""
        authorization: str | None = _last_authorization.value
        signature = (
            authorization.rpartition("Signature=")[2] if authorization and "Signature=" in authorization else None
        )
        found = self._session.get_credentials() if self._session is not None else None
        frozen = found.get_frozen_credentials() if found is not None else None
        if frozen is None:
            return [authorization, signature]
        return [authorization, signature, frozen.secret_key, frozen.token]

    async def submit(
        self,
        path: str | Path,
        *,
        s3_uri: str,
        role_arn: str,
        model: str,
        job_name: str | None = None,
        skip: Iterable[str] = (),
        timeout_hours: int | None = None,
    ) -> SubmittedJob:
        """Validate and upload ``path``, then create the job (or find the one this same input created)."""
        bucket, prefix = _split_s3(s3_uri)
        bedrock, s3 = await self._clients()
        with tempfile.TemporaryDirectory(prefix="bedrock-chat-batch-") as temporary:
            prepared = await anyio.to_thread.run_sync(
                lambda: prepare_input(
                    self._client, Path(path), model=model, directory=Path(temporary), skip=skip, limits=self.limits
                )
            )
            folder = f"{prefix}/{prepared.digest[:16]}" if prefix else prepared.digest[:16]
            for file in prepared.files:
                await self._call(s3.upload_file, Filename=str(file), Bucket=bucket, Key=f"{folder}/input/{file.name}")
        name = job_name or default_job_name(prepared)
        token = hashlib.sha256(f"{prepared.digest}\n{name}".encode()).hexdigest()
        input_uri, output_uri = _join(bucket, folder, "input"), _join(bucket, folder, "output")
        request: dict[str, Any] = {
            "jobName": name,
            "roleArn": role_arn,
            "modelId": prepared.model_id,
            "clientRequestToken": token,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": output_uri}},
        }
        if timeout_hours is not None:
            request["timeoutDurationInHours"] = timeout_hours
        created = await self._call(bedrock.create_model_invocation_job, **request)
        prepared = attrs.evolve(prepared, files=())  # the part files went with the temporary directory
        return SubmittedJob(
            arn=created["jobArn"], token=token, input_uri=input_uri, output_uri=output_uri, prepared=prepared
        )

    async def find(
        self, path: str | Path, *, model: str, job_name: str | None = None, skip: Iterable[str] = ()
    ) -> JobStatus | None:
        """The newest job that :meth:`submit` created (or would create) for this input, or None.

        The input is validated as ``submit`` validates it (nothing is uploaded); the job is found by
        its name, which defaults to one derived from the input's content, so the same file, model and
        ``skip`` find the same job.
        """
        prepared = await anyio.to_thread.run_sync(
            lambda: prepare_input(self._client, Path(path), model=model, directory=None, skip=skip, limits=self.limits)
        )
        name = job_name or default_job_name(prepared)
        bedrock, _ = await self._clients()
        request: dict[str, Any] = {"nameContains": name, "sortBy": "CreationTime", "sortOrder": "Descending"}
        while True:
            page = await self._call(bedrock.list_model_invocation_jobs, **request)
            for summary in page.get("invocationJobSummaries", []):
                if summary.get("jobName") == name:
                    return JobStatus.from_response(summary)
            if not page.get("nextToken"):
                return None
            request["nextToken"] = page["nextToken"]

    async def status(self, job_arn: str) -> JobStatus:
        """GetModelInvocationJob."""
        bedrock, _ = await self._clients()
        return JobStatus.from_response(await self._call(bedrock.get_model_invocation_job, jobIdentifier=job_arn))

    async def stop(self, job_arn: str) -> None:
        """StopModelInvocationJob: the service stops it and writes what was done."""
        bedrock, _ = await self._clients()
        await self._call(bedrock.stop_model_invocation_job, jobIdentifier=job_arn)

    async def wait(
        self,
        job_arn: str,
        *,
        poll_interval: float = 30.0,
        on_status: Callable[[JobStatus], Awaitable[None] | None] | None = None,
    ) -> JobStatus:
        """Poll until the job's status is final; ``on_status`` sees every poll. Cancelling leaves the job running."""
        while True:
            current = await self.status(job_arn)
            if on_status is not None:
                pending = on_status(current)
                if pending is not None:
                    await pending
            if current.finished:
                return current
            await anyio.sleep(poll_interval)

    async def _output_keys(self, job: JobStatus) -> tuple[str, list[str]]:
        _, s3 = await self._clients()
        bucket, prefix = _split_s3(job.output_uri)
        folder = f"{prefix}/{job.job_id}/" if prefix else f"{job.job_id}/"
        paginator = s3.get_paginator("list_objects_v2")
        pages = await self._call(lambda **kw: list(paginator.paginate(**kw)), Bucket=bucket, Prefix=folder)
        return bucket, sorted(item["Key"] for page in pages for item in page.get("Contents", ()))

    async def manifest(self, job_arn: str) -> dict[str, Any] | None:
        """The job's ``manifest.json.out`` (record and token counts), or None when there is none."""
        job = await self.status(job_arn)
        bucket, keys = await self._output_keys(job)
        _, s3 = await self._clients()
        for key in keys:
            if key.endswith("/manifest.json.out"):
                body = await self._call(lambda **kw: s3.get_object(**kw)["Body"].read(), Bucket=bucket, Key=key)
                manifest: dict[str, Any] = json.loads(body)
                return manifest
        return None

    async def results(self, job_arn: str) -> AsyncIterator[dict[str, Any]]:
        """Every output line of the job, in the local run's shape (one ``.jsonl.out`` file downloaded at a time).

        A line that is not a JSON object comes as an error result (see :func:`service_line`), never as an exception.
        """
        job = await self.status(job_arn)
        bucket, keys = await self._output_keys(job)
        _, s3 = await self._clients()
        with tempfile.TemporaryDirectory(prefix="bedrock-chat-results-") as temporary:
            local = Path(temporary) / "part.jsonl.out"
            for key in keys:
                if not key.endswith(".jsonl.out"):
                    continue
                await self._call(s3.download_file, Bucket=bucket, Key=key, Filename=str(local))
                with local.open("rb") as lines:
                    for number, raw in enumerate(lines, 1):
                        if raw.strip():
                            yield service_line(raw, key, number)
