"""The progress of a batch run or job: counts, a progress bar and a summary (pure: time passed in)."""

from __future__ import annotations

import attrs

__all__ = ["Progress"]


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@attrs.define
class Progress:
    """Counts of a run, and their rendering as a progress bar and a summary (pure: time passed in)."""

    total: int
    started: float
    skipped: int = 0
    #: Of the records skipped, those whose only OUTPUT line is an error (they keep the run from exit 0).
    failed_before: int = 0
    malformed: int = 0
    ok: int = 0
    failed: int = 0
    tokens: int = 0
    #: Prompt-cache tokens read and written, summed over the run's replies.
    cache_read: int = 0
    cache_write: int = 0
    interrupted: bool = False
    #: Records already done when watching started (a batch job attached to midway): not in the rate.
    baseline: int = 0

    @property
    def done(self) -> int:
        """Records finished in this run (ok or failed)."""
        return self.ok + self.failed

    def bar(self, now: float, width: int = 24, *, tokens: bool = True) -> str:
        """``[#####-----] 50/100 done, 2 failed | 12.3 req/s | 456 tok/s | ETA 0:04`` (tok/s only if ``tokens``)."""
        elapsed = max(now - self.started, 1e-9)
        rate = max(self.done - self.baseline, 0) / elapsed
        filled = width * min(self.done, self.total) // self.total if self.total else width
        eta = _duration(max(self.total - self.done, 0) / rate) if rate > 0 else "?"
        token_rate = f" | {self.tokens / elapsed:.0f} tok/s" if tokens else ""
        return (
            f"[{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total} done, {self.failed} failed"
            f" | {rate:.1f} req/s{token_rate} | ETA {eta}"
        )

    def summary(self, now: float, output: str) -> str:
        """The one line printed at the end."""
        elapsed = now - self.started
        state = "interrupted (rerun to resume)" if self.interrupted else "done"
        parts = [f"{self.ok} ok", f"{self.failed} failed"]
        if self.skipped:
            errors = f" ({self.failed_before} of them errors)" if self.failed_before else ""
            parts.append(f"{self.skipped} already in the output{errors}")
        if self.malformed:
            parts.append(f"{self.malformed} malformed input lines skipped")
        cache = f"cache read {self.cache_read:,}, cache write {self.cache_write:,}"
        return (
            f"bedrock-chat batch: {state}: {', '.join(parts)}; {self.tokens:,} tokens ({cache}) "
            f"in {elapsed:.1f} s -> {output}"
        )
