"""What callers read and do of the network's sites and nodes: the listings (as the capacity view
sees them now) and draining a node for repair."""

from __future__ import annotations

from suanli.app import sites
from suanli.app.access import require
from suanli.app.control import ControlPlane
from suanli.core.api import NodeOut, SiteOut
from suanli.core.identity import Identity, Scope


def _view(control: ControlPlane) -> sites.CapacityView:
    with control.db.read() as session:
        return sites.capacity_view(session, control.clock.now(), control.settings.lease_s)


def list_sites(control: ControlPlane, who: Identity) -> list[SiteOut]:
    require(who, Scope.NETWORK_READ)
    now = control.clock.now()
    with control.db.read() as session:
        view = sites.capacity_view(session, now, control.settings.lease_s)
    return sites.site_outs(view, now, control.settings.lease_s)


def list_nodes(control: ControlPlane, who: Identity, site: str | None = None) -> list[NodeOut]:
    require(who, Scope.NETWORK_READ)
    return sites.node_outs(_view(control), site)


def nodes_table(control: ControlPlane) -> list[NodeOut]:
    """Every node, by site then name (the dashboard's nodes page; it checks who may see it)."""
    return sorted(sites.node_outs(_view(control)), key=lambda n: (n.site, n.name))


def _node(control: ControlPlane, name: str) -> NodeOut:
    return next(n for n in sites.node_outs(_view(control)) if n.name == name)


def drain_node(control: ControlPlane, who: Identity, name: str, reason: str) -> NodeOut:
    """Take a node out of scheduling (for repair); its running attempts finish first."""
    with control.db.session() as session:
        sites.drain_node(session, name, reason, control.clock.now(), who)
    return _node(control, name)


def undrain_node(control: ControlPlane, who: Identity, name: str) -> NodeOut:
    with control.db.session() as session:
        sites.undrain_node(session, name, control.clock.now(), who)
    control.capacity_changed()
    return _node(control, name)
