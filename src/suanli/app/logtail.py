"""The last lines of a job's output, read from its newest log chunks (``suanli logs --tail N``,
``GET /api/v1/jobs/{id}/logs?tail=N``, the dashboard's job page): a job that printed millions
of lines costs a few indexed reads, never the whole log."""

from __future__ import annotations

from suanli.app import jobs as job_service
from suanli.app.control import ControlPlane
from suanli.app.errors import Unprocessable
from suanli.app.follow import LogFormatter, is_multi_node
from suanli.core.identity import Identity
from suanli.core.logview import LogView, parse_since

#: Chunks read first; the read grows fourfold until it holds enough lines.
FIRST_CHUNKS = 64
#: The most chunks one tail reads (then it shows the lines those hold).
MAX_CHUNKS = 65536


def log_tail(text: str, lines: int, chars: int) -> tuple[str, bool]:
    """The last ``lines`` lines of ``text`` and at most its last ``chars`` characters (from a
    line start), and whether anything was left out."""
    kept = text
    if len(kept) > chars:
        kept = kept[-chars:]
        kept = kept[kept.find("\n") + 1 :] if "\n" in kept[:-1] else kept
    parts = kept.split("\n")
    limit = lines + 1 if kept.endswith("\n") else lines
    if len(parts) > limit:
        kept = "\n".join(parts[-limit:])
    return kept, kept != text


def tail_of(
    control: ControlPlane, who: Identity, job_id: str, lines: int, view: LogView = LogView()
) -> tuple[str, int]:
    """The job's last ``lines`` lines that ``view`` shows, formatted as ``logs`` formats them
    (attempt separators, rank prefixes, timestamps), and the id of the newest chunk read (a
    follower continues after it)."""
    with control.db.read() as session:
        job = job_service.get_job(session, job_id, who)
        attempts = {a.id: a for a in job_service.attempts_of(session, [job])[job.seq]}
        multi = is_multi_node(job)
        limit = FIRST_CHUNKS
        while True:
            chunks = job_service.last_log_chunks(session, job, limit, view)
            text = "".join(LogFormatter(multi, attempts, timestamps=view.timestamps).feed(chunks, final=True))
            if text.count("\n") > lines or len(chunks) < limit or limit >= MAX_CHUNKS:
                break
            limit *= 4
    kept, _ = log_tail(text, lines, len(text))
    return kept, chunks[-1].id if chunks else 0


def log_view(control: ControlPlane, since: str | None, rank: int | None, timestamps: bool) -> LogView:
    """The view the logs API's ``since``/``rank``/``timestamps`` ask for; ``since`` counts back
    from the server's clock (422 with a sentence when it is neither a duration nor a time)."""
    try:
        start = None if since is None else parse_since(since, control.clock.now())
    except ValueError as exc:
        raise Unprocessable(str(exc)) from None
    return LogView(since=start, rank=rank, timestamps=timestamps)
