"""routing.py in-process: which virtual host, then which mount, answers a request.

Pure values in, a choice out: ``host_name()`` normalises a Host header, ``match()`` picks
the longest whole-segment mount, ``Routes`` picks the virtual host as Apache does (exact
IP:port before ``*``, name before alias before wildcard alias, else the first host of the
address, else the main server) and caches the answer under a bound.
"""

from __future__ import annotations

import pytest

from asyncwsgi.sites import routing
from asyncwsgi.sites.model import VirtualHost
from asyncwsgi.sites.routing import Routes, host_name, match

Mounts = list[tuple[str, str]]
Local = tuple[str, int] | None


def vhost(server_name: str, *addresses: str, aliases: tuple[str, ...] = ()) -> VirtualHost:
    """A VirtualHost on ``"ip:port"`` words (the last ``:`` splits; either part may be *)."""
    pairs = []
    for word in addresses:
        host, _, port = word.rpartition(":")
        pairs.append((host, port))
    return VirtualHost(
        addresses=tuple(pairs),
        server_name=server_name,
        aliases=aliases,
        mounts=(),
        origin=f"test:{server_name}",
    )


# -- host_name() -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "", id="none"),
        pytest.param(b"", "", id="empty"),
        pytest.param(b"Example.COM", "example.com", id="lower-case"),
        pytest.param(b"example.com:8080", "example.com", id="port-dropped"),
        pytest.param(b"example.com.", "example.com", id="trailing-dot"),
        pytest.param(b"Example.com.:443", "example.com", id="trailing-dot-and-port"),
        pytest.param(b"  example.com \t", "example.com", id="surrounding-whitespace"),
        pytest.param(b"[::1]:8443", "[::1]", id="ipv6-port-dropped"),
        pytest.param(b"[FE80::1]:80", "[fe80::1]", id="ipv6-lower-case"),
        pytest.param(b"\xc9xample.com", "\xe9xample.com", id="latin-1-byte"),
    ],
)
def test_host_name(value: bytes | None, expected: str) -> None:
    assert host_name(value) == expected


# -- match() ---------------------------------------------------------------------------

# Longest first, as Routes hands them over.
SITE_MOUNTS: Mounts = [
    ("/app/admin", "ADMIN"),
    ("/apple", "APPLE"),
    ("/app", "APP"),
    ("", "ROOT"),
]


@pytest.mark.parametrize(
    ("mounts", "path", "expected"),
    [
        pytest.param(SITE_MOUNTS, "/", ("", "ROOT"), id="root-path"),
        pytest.param(SITE_MOUNTS, "/other/x", ("", "ROOT"), id="unmounted-to-root"),
        pytest.param(SITE_MOUNTS, "/app", ("/app", "APP"), id="exact-mount"),
        pytest.param(SITE_MOUNTS, "/app/", ("/app", "APP"), id="mount-trailing-slash"),
        pytest.param(SITE_MOUNTS, "/apple", ("/apple", "APPLE"), id="apple-not-app"),
        pytest.param(SITE_MOUNTS, "/apples", ("", "ROOT"), id="partial-segment-to-root"),
        pytest.param(SITE_MOUNTS, "/app/admin/x", ("/app/admin", "ADMIN"), id="longest-wins"),
        pytest.param(SITE_MOUNTS, "/app/administrator", ("/app", "APP"), id="admin-prefix-only"),
        pytest.param([("/app", "APP")], "/apple", None, id="no-root-partial-segment"),
        pytest.param([], "/app", None, id="no-mounts"),
    ],
)
def test_match(mounts: Mounts, path: str, expected: tuple[str, str] | None) -> None:
    assert match(mounts, path) == expected


# -- Routes.mounts_for() ---------------------------------------------------------------

LOCAL = vhost("local.test", "127.0.0.1:8080", aliases=("www.local.test",))
OTHER = vhost("other.test", "127.0.0.1:8080", aliases=("*.other.test", "a?.test"))
EXACT = vhost("exact.test", "192.0.2.1:80")
STAR_A = vhost("a.test", "*:80", aliases=("alias-a.test", "a?.test"))
STAR_B = vhost("b.test", "*:80", aliases=("*.test",))
ANYPORT = vhost("anyport.test", "10.0.0.5:*")
SIX = vhost("six.test", "::1:8443")
STAR_443 = vhost("secure.test", "*:443", "198.51.100.7:8443")

MOUNTS: dict[str, Mounts] = {
    "LOCAL": [("/app/admin", "L-ADMIN"), ("/app", "L-APP"), ("", "L-ROOT")],
    "OTHER": [("", "OTHER")],
    "EXACT": [("", "EXACT")],
    "STAR_A": [("", "STAR_A")],
    "STAR_B": [("/b", "STAR_B")],
    "ANYPORT": [("", "ANYPORT")],
    "SIX": [("", "SIX")],
    "STAR_443": [("", "STAR_443")],
    "MAIN": [("/main", "MAIN-APP"), ("", "MAIN")],
}


def make_routes() -> Routes[str]:
    # LOCAL's and MAIN's mounts arrive shortest first: Routes must put longest first.
    return Routes(
        [
            (LOCAL, list(reversed(MOUNTS["LOCAL"]))),
            (OTHER, MOUNTS["OTHER"]),
            (EXACT, MOUNTS["EXACT"]),
            (STAR_A, MOUNTS["STAR_A"]),
            (STAR_B, MOUNTS["STAR_B"]),
            (ANYPORT, MOUNTS["ANYPORT"]),
            (SIX, MOUNTS["SIX"]),
            (STAR_443, MOUNTS["STAR_443"]),
        ],
        list(reversed(MOUNTS["MAIN"])),
    )


ROUTING_CASES = [
    # exact IP:port, by name
    pytest.param(("127.0.0.1", 8080), b"local.test", "LOCAL", id="ip-port-server-name"),
    pytest.param(("127.0.0.1", 8080), b"www.local.test", "LOCAL", id="exact-alias"),
    pytest.param(("127.0.0.1", 8080), b"x.other.test", "OTHER", id="wildcard-alias-star"),
    pytest.param(("127.0.0.1", 8080), b"OTHER.test:8080", "OTHER", id="host-normalised"),
    # default of the address: the first of its vhosts
    pytest.param(("127.0.0.1", 8080), b"nobody.test", "LOCAL", id="unknown-name-default"),
    pytest.param(("127.0.0.1", 8080), None, "LOCAL", id="no-host-default"),
    # "*" hosts on the port
    pytest.param(("192.0.2.9", 80), b"b.test", "STAR_B", id="star-port-name-b"),
    pytest.param(("192.0.2.9", 80), b"alias-a.test", "STAR_A", id="star-port-exact-alias"),
    pytest.param(("192.0.2.9", 80), b"a1.test", "STAR_A", id="question-mark-wildcard"),
    pytest.param(("192.0.2.9", 80), b"zz.test", "STAR_B", id="star-wildcard-later-vhost"),
    pytest.param(("192.0.2.9", 80), b"zz.example", "STAR_A", id="star-port-default"),
    # exact IP beats "*" even when the name belongs to a "*" host
    pytest.param(("192.0.2.1", 80), b"a.test", "EXACT", id="exact-ip-beats-star-name"),
    pytest.param(("192.0.2.1", 81), b"exact.test", "MAIN", id="exact-ip-wrong-port-main"),
    # port "*" on an exact IP
    pytest.param(("10.0.0.5", 80), b"a.test", "ANYPORT", id="ip-any-port-beats-star-80"),
    # a vhost with two addresses, reached on the second
    pytest.param(("198.51.100.7", 8443), None, "STAR_443", id="second-address-of-vhost"),
    # IPv6 and IPv4-mapped IPv6 local addresses
    pytest.param(("::1", 8443), b"[::1]:8443", "SIX", id="ipv6-local"),
    pytest.param(("::1", 8080), b"local.test", "MAIN", id="ipv6-not-ipv4-vhost"),
    pytest.param(("::ffff:127.0.0.1", 8080), b"other.test", "OTHER", id="mapped-ipv4-name"),
    pytest.param(("::ffff:10.0.0.5", 7), None, "ANYPORT", id="mapped-ipv4-any-port"),
    pytest.param(("::ffff:192.0.2.9", 80), b"b.test", "STAR_B", id="mapped-ipv4-star"),
    # nothing listens as a vhost on the address: the main server
    pytest.param(("127.0.0.1", 9999), b"local.test", "MAIN", id="main-fallback-port"),
    pytest.param(("192.0.2.9", 8080), b"other.test", "MAIN", id="main-fallback-ip"),
    # UNIX socket: every vhost is a candidate
    pytest.param(None, b"other.test", "OTHER", id="unix-any-vhost-by-name"),
    pytest.param(None, b"nobody.example", "LOCAL", id="unix-default-first-vhost"),
]


@pytest.mark.parametrize(("local", "host", "expected"), ROUTING_CASES)
def test_mounts_for(local: Local, host: bytes | None, expected: str) -> None:
    assert make_routes().mounts_for(local, host) == MOUNTS[expected]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        # As Apache: the hosts are tried in order, each by its name, then its aliases
        # (wildcards included); an earlier wildcard beats a later exact name.
        pytest.param(b"b.test", "A", id="earlier-wildcard-beats-later-name"),
        pytest.param(b"ab.test", "A", id="earlier-wildcard-beats-later-alias"),
        pytest.param(b"q.test", "A", id="wildcard-alias"),
        pytest.param(b"zz.test", "A", id="first-matching-wildcard-in-order"),
        pytest.param(b"zz.example", "B", id="only-later-wildcard"),
        pytest.param(b"d.test", "D", id="first-host-by-name"),
        pytest.param(b"test", "D", id="star-needs-its-dot-default"),
    ],
)
def test_first_matching_host_in_order(host: bytes, expected: str) -> None:
    routes: Routes[str] = Routes(
        [
            (vhost("d.test", "*:80"), [("", "D")]),
            (vhost("a.test", "*:80", aliases=("*.test",)), [("", "A")]),
            (vhost("b.test", "*:80", aliases=("ab.test", "z*")), [("", "B")]),
        ],
        [("", "MAIN")],
    )
    assert routes.mounts_for(("192.0.2.1", 80), host) == [("", expected)]


def test_bracketed_alias_is_literal() -> None:
    # Apache's wildcards are only * and ?: "[::1]" is a name, not a character class.
    routes: Routes[str] = Routes(
        [
            (vhost("first.test", "*:80"), [("", "FIRST")]),
            (vhost("v6.test", "*:80", aliases=("[::1]",)), [("", "V6")]),
        ],
        [],
    )
    assert routes.mounts_for(("192.0.2.1", 80), b"[::1]") == [("", "V6")]
    assert routes.mounts_for(("192.0.2.1", 80), b"1") == [("", "FIRST")]
    wild: Routes[str] = Routes(
        [
            (vhost("first.test", "*:80"), [("", "FIRST")]),
            (vhost("w.test", "*:80", aliases=("www[12].*",)), [("", "W")]),
        ],
        [],
    )
    assert wild.mounts_for(("192.0.2.1", 80), b"www1.example.com") == [("", "FIRST")]
    assert wild.mounts_for(("192.0.2.1", 80), b"www[12].example.com") == [("", "W")]


@pytest.mark.parametrize(
    ("local", "host", "path", "expected"),
    [
        pytest.param(("127.0.0.1", 8080), b"local.test", "/app/admin/u", "L-ADMIN", id="admin"),
        pytest.param(("127.0.0.1", 8080), b"local.test", "/app/x", "L-APP", id="app"),
        pytest.param(("127.0.0.1", 8080), b"local.test", "/apple", "L-ROOT", id="apple-root"),
        pytest.param(("127.0.0.1", 9999), None, "/main/x", "MAIN-APP", id="main-longest"),
        pytest.param(("192.0.2.9", 80), b"b.test", "/", None, id="vhost-without-root-404"),
    ],
)
def test_route_then_match(
    local: Local, host: bytes | None, path: str, expected: str | None
) -> None:
    found = match(make_routes().mounts_for(local, host), path)
    assert (found[1] if found else None) == expected


@pytest.mark.parametrize(
    ("local", "host"),
    [
        pytest.param(("127.0.0.1", 8080), b"anything.test", id="vhost-address"),
        pytest.param(None, b"x", id="unix"),
    ],
)
def test_no_vhosts_main_only(local: Local, host: bytes) -> None:
    routes: Routes[str] = Routes([], [("", "MAIN")])
    assert routes.mounts_for(local, host) == [("", "MAIN")]
    assert routes.vhost_for(local, host_name(host)) is None


# -- the cache -------------------------------------------------------------------------


def test_cache_same_answer_on_repeat() -> None:
    routes = make_routes()
    first = routes.mounts_for(("127.0.0.1", 8080), b"other.test")
    again = routes.mounts_for(("127.0.0.1", 8080), b"other.test")
    assert again is first
    assert again == MOUNTS["OTHER"]
    assert len(routes._cache) == 1


def test_cache_keys_by_address_and_host() -> None:
    routes = make_routes()
    assert routes.mounts_for(("127.0.0.1", 8080), b"other.test") == MOUNTS["OTHER"]
    assert routes.mounts_for(("127.0.0.1", 9999), b"other.test") == MOUNTS["MAIN"]
    assert routes.mounts_for(None, b"other.test") == MOUNTS["OTHER"]
    assert routes.mounts_for(("127.0.0.1", 8080), b"local.test") == MOUNTS["LOCAL"]
    # The cached answers stay apart.
    assert routes.mounts_for(("127.0.0.1", 8080), b"other.test") == MOUNTS["OTHER"]
    assert routes.mounts_for(("127.0.0.1", 9999), b"other.test") == MOUNTS["MAIN"]
    assert len(routes._cache) == 4


def test_cache_bounded_under_made_up_hosts() -> None:
    routes = make_routes()
    bound = routing._CACHE_MAX
    assert bound > 0
    for n in range(bound + 50):
        assert routes.mounts_for(("192.0.2.9", 80), b"h%d.example" % n) == MOUNTS["STAR_A"]
        assert len(routes._cache) <= bound
    # Still right after the cache was emptied and refilled.
    assert routes.mounts_for(("192.0.2.9", 80), b"b.test") == MOUNTS["STAR_B"]
    assert routes.mounts_for(("192.0.2.9", 80), b"b.test") == MOUNTS["STAR_B"]


# -- Routes.vhost_for() ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "host", "expected"),
    [
        pytest.param(("127.0.0.1", 8080), "www.local.test", LOCAL, id="by-alias"),
        pytest.param(("127.0.0.1", 8080), "", LOCAL, id="default-of-address"),
        pytest.param(("192.0.2.1", 80), "b.test", EXACT, id="exact-ip-beats-star"),
        pytest.param(("127.0.0.1", 9999), "local.test", None, id="main-server-none"),
        pytest.param(None, "", LOCAL, id="unix-default"),
    ],
)
def test_vhost_for(local: Local, host: str, expected: VirtualHost | None) -> None:
    assert make_routes().vhost_for(local, host) is expected
