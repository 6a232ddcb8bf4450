"""One batch-inference job of the emulator's control plane: its configuration, status and counts.

A module of its own so that the job runner (imported on the first job: it needs boto3) and the control
plane that starts it both import it, instead of each other.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._options import EmulatorOptions

__all__ = ["Job", "TERMINAL_STATUSES"]


TERMINAL_STATUSES = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})


@attrs.define(kw_only=True)
class Job:
    """One model invocation job: what was asked, where it stands, and its counts (mutated by the runner)."""

    job_id: str
    arn: str
    name: str
    model_id: str
    role_arn: str
    token: str | None
    input_uri: str
    output_uri: str
    input_config: dict[str, Any]
    output_config: dict[str, Any]
    timeout_hours: int
    invocation_type: str
    options: EmulatorOptions
    submit_time: float
    status: str = "Submitted"
    message: str | None = None
    last_modified: float = 0.0
    end_time: float | None = None
    total: int | None = None
    processed: int = 0
    success: int = 0
    errors: int = 0

    def set_status(self, status: str, *, message: str | None = None) -> None:
        """Move to ``status`` (stamping the times); a finished job never moves again."""
        if self.status in TERMINAL_STATUSES:
            return
        now = self.options.clock()
        self.status, self.last_modified = status, now
        if message is not None:
            self.message = message
        if status in TERMINAL_STATUSES:
            self.end_time = now

    def summary(self) -> dict[str, Any]:
        """The job as GetModelInvocationJob (and a ListModelInvocationJobs summary) describes it."""
        described: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": self.name,
            "modelId": self.model_id,
            "roleArn": self.role_arn,
            "status": self.status,
            "submitTime": self.submit_time,
            "lastModifiedTime": self.last_modified or self.submit_time,
            "inputDataConfig": self.input_config,
            "outputDataConfig": self.output_config,
            "timeoutDurationInHours": self.timeout_hours,
            "jobExpirationTime": self.submit_time + self.timeout_hours * 3600,
            "modelInvocationType": self.invocation_type,
            "processedRecordCount": self.processed,
            "successRecordCount": self.success,
            "errorRecordCount": self.errors,
        }
        optional = {
            "clientRequestToken": self.token,
            "message": self.message,
            "endTime": self.end_time,
            "totalRecordCount": self.total,
        }
        described.update({key: value for key, value in optional.items() if value is not None})
        return described
