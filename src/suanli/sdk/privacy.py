"""Privacy budgets and federated runs (the front desk relays the rounds), part of :class:`suanli.sdk.Client`."""

from __future__ import annotations

from typing import Any

from suanli.core.api_data import FederationOut, RoundMessagesOut
from suanli.sdk.base import BaseClient


class PrivacyCalls(BaseClient):
    def privacy(self, name: str) -> dict[str, Any]:
        """A dataset's privacy budget, what is spent and left, its spends and federated uses."""
        out: dict[str, Any] = self._json("GET", f"/api/v1/datasets/{name}/privacy")
        return out

    def set_privacy_budget(self, name: str, epsilon: float, delta: float) -> dict[str, Any]:
        """(Owners) Set the dataset's total differential-privacy budget."""
        body = {"epsilon": epsilon, "delta": delta}
        out: dict[str, Any] = self._json("PUT", f"/api/v1/datasets/{name}/privacy", json=body)
        return out

    def spend_privacy(
        self, name: str, epsilon: float, delta: float = 0.0, *, purpose: str = "query", note: str = ""
    ) -> dict[str, Any]:
        """Spend part of the budget before a DP release; :class:`ApiError` 409 past it."""
        body = {"epsilon": epsilon, "delta": delta, "purpose": purpose, "note": note}
        out: dict[str, Any] = self._json("POST", f"/api/v1/datasets/{name}/privacy/spends", json=body)
        return out

    # -- federated runs ---------------------------------------------------------------------------
    def grant_federated(self, name: str, tenant: str) -> None:
        """(Owners) Consent that ``tenant``'s federated runs train on ``name`` at its site."""
        self._request("PUT", f"/api/v1/datasets/{name}/federated-grants", json={"tenant": tenant})

    def create_federation(self, **body: Any) -> FederationOut:
        """``datasets, rounds, params`` and optionally ``strategy, mu, dp`` (see ``FederationIn``)."""
        return FederationOut.model_validate_json(self._request("POST", "/api/v1/federations", json=body).content)

    def federation(self, fid: str, client: str | None = None) -> FederationOut:
        params = {"client": client} if client else {}
        return self._get(f"/api/v1/federations/{fid}", FederationOut, params=params)

    def federation_message(self, fid: str, **body: Any) -> None:
        self._request("POST", f"/api/v1/federations/{fid}/messages", json=body)

    def federation_messages(self, fid: str) -> RoundMessagesOut:
        return self._get(f"/api/v1/federations/{fid}/messages", RoundMessagesOut)

    def advance_federation(self, fid: str, round_no: int, to: str) -> FederationOut:
        body = {"round": round_no, "to": to}
        response = self._request("POST", f"/api/v1/federations/{fid}/advance", json=body)
        return FederationOut.model_validate_json(response.content)

    def aggregate_federation(self, fid: str, round_no: int, params: list[float]) -> FederationOut:
        body = {"round": round_no, "params": params}
        response = self._request("POST", f"/api/v1/federations/{fid}/aggregate", json=body)
        return FederationOut.model_validate_json(response.content)

    def federation_raw_bytes_moved(self, fid: str) -> int:
        return int(self._json("GET", f"/api/v1/federations/{fid}/raw-bytes-moved")["raw_bytes_moved"])
