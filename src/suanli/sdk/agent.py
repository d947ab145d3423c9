"""The site agent's client: :class:`suanli.sdk.Client` plus the calls only a site's agent makes
(with its site token), kept out of the users' API (``suanli.agent.cycle.AgentClient`` is the
protocol the agent needs)."""

from __future__ import annotations

from typing import IO, Any

import httpx

from suanli.core.protocol import (
    CheckpointReceipt,
    HeartbeatRequest,
    HeartbeatResponse,
    RegisterRequest,
    RegisterResponse,
)
from suanli.sdk.client import Client
from suanli.sdk.workdir import ProgressReader


class SiteClient(Client):
    """A client for one site's agent."""

    # -- agents ---------------------------------------------------------------------------
    def agent_register(self, request: RegisterRequest) -> RegisterResponse:
        response = self._request("POST", "/api/v1/agents/register", json=request.model_dump(mode="json"))
        return RegisterResponse.model_validate_json(response.content)

    def agent_heartbeat(self, request: HeartbeatRequest) -> HeartbeatResponse:
        response = self._request(
            "POST",
            "/api/v1/agents/heartbeat",
            json=request.model_dump(mode="json"),
            timeout=request.wait_s + 30.0,
        )
        return HeartbeatResponse.model_validate_json(response.content)

    def download_workdir(self, digest: str, dest: IO[bytes]) -> int:
        """Write the workdir archive ``digest`` into ``dest``; returns bytes written."""
        return self._download(f"/api/v1/agents/workdirs/{digest}", dest)

    def download_dataset(self, name: str, attempt_id: int, dest: IO[bytes]) -> int:
        """(Agents) Write dataset ``name``, from this site's copy, into ``dest``; returns bytes written."""
        return self._download(f"/api/v1/agents/datasets/{name}", dest, {"attempt": attempt_id})

    def record_dataset_read(self, name: str, attempt_id: int, root: str) -> dict[str, Any]:
        """(Agents) Put the read of ``name`` from this site's own store on the ledger (before the job gets it)."""
        out: dict[str, Any] = self._json(
            "POST", f"/api/v1/agents/datasets/{name}/reads", params={"attempt": attempt_id}, json={"root": root}
        )
        return out

    def register_output_at_site(self, attempt_id: int, manifest: dict[str, Any], digest: str) -> dict[str, Any]:
        """(Agents) Register a succeeded attempt's output, kept in this site's store, by its manifest."""
        out: dict[str, Any] = self._json(
            "POST",
            "/api/v1/agents/outputs/at-site",
            params={"attempt": attempt_id},
            json={"manifest": manifest, "archive_sha256": digest},
        )
        return out

    def upload_checkpoint(self, attempt_id: int, archive: IO[bytes], size: int) -> CheckpointReceipt:
        """(Agents) Send a job's checkpoint folder, packed as a ``.tar.gz`` of ``size`` bytes,
        for ``attempt_id`` at this agent's site; it becomes the job's latest checkpoint."""
        response = self._upload_archive("/api/v1/agents/checkpoints", attempt_id, archive, size)
        return CheckpointReceipt.model_validate_json(response.content)

    def upload_output(self, attempt_id: int, archive: IO[bytes], size: int) -> dict[str, Any]:
        """(Agents) Send a succeeded attempt's ``SUANLI_OUTPUT_DIR``, packed as a ``.tar.gz`` of
        ``size`` bytes; it becomes the derived dataset its job's ``output.dataset`` names."""
        out: dict[str, Any] = self._upload_archive("/api/v1/agents/outputs", attempt_id, archive, size).json()
        return out

    def _upload_archive(self, path: str, attempt_id: int, archive: IO[bytes], size: int) -> httpx.Response:
        """(Agents) Stream a ``.tar.gz`` of ``size`` bytes to ``path`` for ``attempt_id``."""
        return self._request(
            "POST",
            path,
            params={"attempt": attempt_id},
            content=iter(ProgressReader(archive, size, None)),
            headers={"Content-Type": "application/gzip", "Content-Length": str(size)},
        )

    def download_checkpoint(self, digest: str, attempt_id: int, dest: IO[bytes]) -> int:
        """(Agents) Write checkpoint ``digest``, the one ``attempt_id`` starts from, into ``dest``;
        returns bytes written."""
        return self._download(f"/api/v1/agents/checkpoints/{digest}", dest, {"attempt": attempt_id})
