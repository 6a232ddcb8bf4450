"""How the emulator's batch inference jobs reach S3, how fast they run and which records they fail.

Kept apart from :class:`~._options.EmulatorOptions` (which holds one of these as ``jobs``) because these
knobs only matter to the control plane (``_control_plane``, ``_job_runner``).
"""

from __future__ import annotations

import re

import attrs

__all__ = ["JobOptions"]


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _positive_or_none(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"{attribute.name} must be >= 1 or None, got {value!r}")


def _pattern(_instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{attribute.name} is not a regular expression: {exc}") from None


@attrs.frozen(kw_only=True)
class JobOptions:
    """Batch inference jobs: where their S3 is, and the failures they inject.

    Args:
        s3_endpoint_url: the S3 (or S3-compatible) endpoint jobs read input from and write output to;
            None: boto3's default for the emulator's region.
        s3_access_key, s3_secret_key: credentials for that S3; None: the emulator's own keys.
        record_delay: seconds spent on each record, so that tests can watch a job in progress.
        fail_every: every Nth record of a job (1-based, in input order) gets an error line.
        fail_pattern: records whose recordId matches this regular expression (``re.search``) get an
            error line.
        drop_pattern: records whose recordId matches are left out of the output altogether, as if the
            service lost them.
    """

    s3_endpoint_url: str | None = None
    s3_access_key: str | None = None
    s3_secret_key: str | None = attrs.field(default=None, repr=False)
    record_delay: float = attrs.field(default=0.0, validator=_non_negative)
    fail_every: int | None = attrs.field(default=None, validator=_positive_or_none)
    fail_pattern: str | None = attrs.field(default=None, validator=_pattern)
    drop_pattern: str | None = attrs.field(default=None, validator=_pattern)
