"""Shared fixtures: every test runs with a private, empty AWS environment; batch-job tests get S3 and an emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import moto_s3_server

from bedrock_chat.emulator import BedrockEmulator, EmulatorOptions, run_emulator_in_thread
from bedrock_chat.emulator._job_options import JobOptions


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
