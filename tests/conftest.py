"""Shared fixtures: every test runs with a private, empty AWS environment; batch-job tests get S3 and an emulator.

``run_batch`` runs ``bedrock-chat batch`` in-process against the ``bedrock_emulator`` fixture.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import moto_s3_server
from hypothesis import HealthCheck, settings

from bedrock_chat._cli.main import main
from bedrock_chat.emulator import BedrockEmulator, EmulatorOptions, run_emulator_in_thread
from bedrock_chat.emulator._job_options import JobOptions

# Property tests check correctness, never speed (benchmarks do that): on a loaded machine a slow example or a
# slow input draw must not fail a test, so Hypothesis's timing checks are off for the whole suite.
settings.register_profile("bedrock_chat", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("bedrock_chat")


@pytest.fixture(autouse=True)
def aws_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Clear every AWS_* variable and point botocore at empty files, so no test sees the developer's ~/.aws.

    Returns the directory holding the ``config`` and ``credentials`` files, for tests that write profiles.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    directory = tmp_path_factory.mktemp("aws")
    for name, variable in (("config", "AWS_CONFIG_FILE"), ("credentials", "AWS_SHARED_CREDENTIALS_FILE")):
        (directory / name).write_text("")
        monkeypatch.setenv(variable, str(directory / name))
    # No test may wait on the instance metadata service (there is no network here anyway).
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return directory


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's) on a free loopback port, one per test module that asks."""
    with moto_s3_server() as url:
        yield url


@pytest.fixture
def emu(s3_endpoint: str) -> Iterator[BedrockEmulator]:
    """An emulator (runtime and control plane) whose batch jobs use the S3 server; it must log no error."""
    with run_emulator_in_thread(EmulatorOptions(jobs=JobOptions(s3_endpoint_url=s3_endpoint))) as emulator:
        yield emulator
    assert not emulator.errors


@pytest.fixture
def run_batch(bedrock_emulator: BedrockEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """``run_batch(*args)``: ``bedrock-chat batch ARGS`` in-process against the fixture's emulator; the exit code."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", bedrock_emulator.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", bedrock_emulator.secret_key)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> int:
        endpoint = ["--endpoint-url", bedrock_emulator.endpoint_url, "--region", bedrock_emulator.region]
        return main(["batch", *args, *endpoint, "--backoff", "0"])

    return run
