"""The dashboard's FastAPI dependencies: the control plane the server was built on, and the
jobs table's filters as the page's query string carries them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from suanli.app.control import ControlPlane
from suanli.app.jobs import JobFilter


def get_control(request: Request) -> ControlPlane:
    """The control plane ``create_app`` put on the app the dashboard is mounted on."""
    control: ControlPlane = request.app.state.control
    return control


Control = Annotated[ControlPlane, Depends(get_control)]


@dataclass
class JobFilters:
    """The jobs table's filters as the form and its links carry them (empty: not filtered)."""

    states: list[str] = field(default_factory=list)
    tenant: str = ""
    site: str = ""
    #: A prefix of the job's name, as the API's ``name`` filter.
    name: str = ""

    def query_string(self) -> list[tuple[str, str]]:
        pairs = [("state", s) for s in self.states]
        pairs += [(k, v) for k, v in (("tenant", self.tenant), ("site", self.site), ("name", self.name)) if v]
        return pairs

    def wanted(self) -> JobFilter:
        return JobFilter(states=self.states, tenant=self.tenant or None, site=self.site or None, name=self.name or None)
