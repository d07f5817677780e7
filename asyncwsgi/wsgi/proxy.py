"""Trusting a reverse proxy's ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers.

Rule: nothing here imports asyncio or touches a socket. Headers are only believed when the
connection comes from an address the operator listed (``--forwarded-allow-ips``).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from asyncwsgi.wsgi.types import Environ

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyTrust:
    """The set of proxy addresses whose forwarding headers are believed."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.everyone = False
        networks: list[_Network] = []
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            if item == "*":
                self.everyone = True
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"not an IP address or network: {item!r}") from None
        self._networks = tuple(networks)
        self.trusts = lru_cache(maxsize=1024)(self._trusts)

    def _trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)

    def apply(self, environ: Environ) -> None:
        """Rewrite REMOTE_ADDR and wsgi.url_scheme from the headers of a trusted proxy."""
        if not self.trusts(environ.get("REMOTE_ADDR", "")):
            return
        proto = environ.get("HTTP_X_FORWARDED_PROTO")
        if proto:
            scheme = proto.rpartition(",")[2].strip().lower()
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
        forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
        if forwarded_for:
            # Walk from the nearest hop back; the first address we do not trust is the
            # client, since anything further left could have been written by it.
            hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
            client = hops[0] if hops else ""
            for hop in reversed(hops):
                client = hop
                if not self.trusts(hop):
                    break
            if client:
                environ["REMOTE_ADDR"] = client
                environ.pop("REMOTE_PORT", None)


def trust_for(spec: str) -> ProxyTrust | None:
    """The trust ``--forwarded-allow-ips`` asks for; None when it trusts nobody."""
    return ProxyTrust(spec) if spec else None
