"""Shared fixtures: every test runs with a private, empty AWS environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
