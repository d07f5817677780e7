"""What the command line changes in a site, and what ``--check-config`` prints.

Rule: imports nothing of the package but ``config``, ``settings`` and this package's
``model``; no asyncio. Values in, values (or text) out.
"""

from __future__ import annotations

import dataclasses

from asyncwsgi.config import ProcessSettings
from asyncwsgi.settings import EVERY_GROUP, BindAddress, table
from asyncwsgi.sites.model import (
    COMMAND_LINE,
    EMBEDDED,
    DaemonGroup,
    Mount,
    Site,
    StaticAlias,
)

# --------------------------------------------------------------------------------------
# What the command line changes
# --------------------------------------------------------------------------------------

# Command-line settings that apply to every daemon group of a site.
GROUP_OVERRIDES = tuple(e.name for e in table(ProcessSettings) if e.option.site == EVERY_GROUP)


def override_groups(site: Site, options: dict[str, object]) -> Site:
    """The site with the command line's daemon options (``GROUP_OVERRIDES``) in every
    WSGIDaemonProcess."""
    given = {k: v for k, v in options.items() if k in GROUP_OVERRIDES}
    if not given:
        return site
    groups = tuple(
        dataclasses.replace(g, overridden=tuple(given), **given)  # type: ignore[arg-type]
        for g in site.groups
    )
    return dataclasses.replace(site, groups=groups)


def any_port(site: Site) -> Site:
    """The site with every <VirtualHost> port taken as ``*``: for addresses that do not
    come from the file's Listen lines (``--bind``), whose ports the file cannot know."""
    vhosts = tuple(
        dataclasses.replace(v, addresses=tuple((host, "*") for host, _ in v.addresses))
        for v in site.vhosts
    )
    return dataclasses.replace(site, vhosts=vhosts)


def unserved(site: Site, binds: tuple[BindAddress, ...]) -> list[str]:
    """The TCP addresses where every request would get 404: no <VirtualHost> answers
    there and the main server mounts nothing."""
    if site.mounts:
        return []
    found = []
    for address in binds:
        if address.kind != "tcp" or address.port == 0:
            continue
        port = str(address.port)
        wildcard = address.host in ("0.0.0.0", "::", "")
        if not any(
            p in (port, "*") and (h == "*" or wildcard or h == address.host)
            for vhost in site.vhosts
            for h, p in vhost.addresses
        ):
            found.append(str(address))
    return found


# --------------------------------------------------------------------------------------
# --check-config
# --------------------------------------------------------------------------------------

_LABELS = {
    "script_reloading": "WSGIScriptReloading",
    "callable": "WSGICallableObject",
    "process_group": "WSGIProcessGroup",
}


def _show(name: str, value: object) -> str:
    if name == "script_reloading":
        return "On" if value else "Off"
    if name == "process_group" and value == EMBEDDED:
        return "%{GLOBAL} (embedded)"
    return str(value)


def _origin(name: str, group: DaemonGroup) -> str:
    if name in group.overridden:
        return " (command line)"
    return f" ({group.origin})" if name in group.given else " (default)"


def describe_site(site: Site, binds: tuple[BindAddress, ...], bind_origin: str) -> str:
    """What ``--check-config`` prints: every address, group, virtual host and mount with
    its effective settings and the file:line each came from."""
    out: list[str] = [f"{site.path}: syntax OK", ""]
    if site.listen and bind_origin != COMMAND_LINE:
        out += [f"Listen {address}  ({origin})" for address, origin in site.listen]
    else:
        out += [f"Listen {address}  ({bind_origin})" for address in binds]
    out += [
        f"warning: requests to {address} get 404: no <VirtualHost> answers there and the "
        "main server has no WSGIScriptAlias"
        for address in unserved(site, binds)
    ]
    used = {
        m.settings(site.htaccess.get(m.htaccess))["process_group"].value
        for _, m in site.all_mounts()
    }
    for group in site.groups:
        options = []
        for item in table(ProcessSettings):
            key = item.option.directive
            if key is None:
                continue
            value = item.option.kind.show(getattr(group, item.name))
            options.append(f"{key}={value}{_origin(item.name, group)}")
        options.append(f"display-name={group.title!r}{_origin('display_name', group)}")
        note = "" if group.name in used else "  -- no application uses it; not started"
        out += ["", f"WSGIDaemonProcess {group.name}  ({group.origin}){note}"]
        out += [f"    {option}" for option in options]

    def mounts(label: str, items: tuple[Mount, ...], statics: tuple[StaticAlias, ...]) -> None:
        out.extend(["", label])
        for alias in sorted(statics, key=lambda a: -len(a.path)):
            shown = alias.path.encode("latin-1").decode("utf-8", "replace") or "/"
            out.append(f"  {shown} -> {alias.folder}  (Alias, static files; {alias.origin})")
        for m in sorted(items, key=lambda m: -len(m.path)):
            shown = m.path.encode("latin-1").decode("utf-8", "replace") or "/"
            out.append(f"  {shown} -> {m.script}  ({m.origin})")
            settings = m.settings(site.htaccess.get(m.htaccess))
            for name, setting in settings.items():
                out.append(
                    f"    {_LABELS[name]:<20} {_show(name, setting.value):<24} {setting.origin}"
                )
            if m.htaccess:
                out.append(f"    {'.htaccess':<20} {m.htaccess} (read; re-read when it changes)")

    for label, setting in (
        ("WSGIPythonHome", site.python_home),
        ("WSGIPythonPath", site.python_path),
    ):
        if setting is not None:
            value = setting.value if isinstance(setting.value, str) else ":".join(setting.value)
            out += ["", f"{label} {value}  ({setting.origin})"]
    if site.restrict_embedded is not None:
        on = "On" if site.restrict_embedded.value else "Off"
        out += ["", f"WSGIRestrictEmbedded {on}  ({site.restrict_embedded.origin})"]
    if site.notices:
        out.append("")
        out += [f"{level}: {message}" for level, message in site.notices]
    if site.mounts or not site.vhosts:
        mounts(
            "Main server (requests that match no <VirtualHost> address)",
            site.mounts,
            site.statics,
        )
    for vhost in site.vhosts:
        names = f", aliases {' '.join(vhost.aliases)}" if vhost.aliases else ""
        mounts(f"<VirtualHost> {vhost.label}{names}  ({vhost.origin})", vhost.mounts, vhost.statics)
    return "\n".join(out) + "\n"
