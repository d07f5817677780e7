"""What the directives of a config file mean: the site they describe.

Rule: imports nothing of the package but ``config``, ``settings``, ``errors`` and this
package's ``model``, ``syntax`` and ``apache``; no asyncio. Every error is a
``ConfigFileError`` whose message starts with ``FILE:LINE:``.

The directives read: ``Listen``, ``<VirtualHost>`` with ``ServerName``/``ServerAlias``,
``<Directory>`` with ``AllowOverride``, ``<IfModule>`` and mod_wsgi's ``WSGIScriptAlias``,
``WSGIDaemonProcess`` (its options are the process-group settings of
:class:`asyncwsgi.config.ProcessSettings` that name a directive), ``WSGIProcessGroup``,
``WSGICallableObject``, ``WSGIScriptReloading`` and ``WSGIRestrictEmbedded``
(``WSGIApplicationGroup`` is read and ignored: every script runs as its own module in the
main interpreter). Apache's own directives are :mod:`asyncwsgi.sites.apache`'s. Each is checked
against the contexts Apache allows it in; the settings of a mount come from its contexts
in increasing precedence (docs/DESIGN.md, "Sites").
"""

from __future__ import annotations

import glob
import ipaddress
import os
import socket
from dataclasses import dataclass, field

from asyncwsgi.config import ProcessSettings
from asyncwsgi.errors import ConfigError, ConfigFileError
from asyncwsgi.settings import BindAddress, parse_bind, table
from asyncwsgi.sites.apache import DAEMON_ACCEPTED, DAEMON_REFUSED, Notices
from asyncwsgi.sites.model import (
    COMMAND_LINE,
    DEFAULT,
    EMBEDDED,
    DaemonGroup,
    Layer,
    Mount,
    Setting,
    Site,
    StaticAlias,
    VirtualHost,
)
from asyncwsgi.sites.serverwide import SERVER_WIDE, ServerWide
from asyncwsgi.sites.syntax import Directive, ifmodule_holds, parse_text, read_file
from asyncwsgi.sites.values import DIRECTORY, HTACCESS_CONTEXT, SERVER, VHOST
from asyncwsgi.sites.values import callable_name as _callable
from asyncwsgi.sites.values import group_name as _group_name
from asyncwsgi.sites.values import on_off as _on_off
from asyncwsgi.sites.values import one as _one
from asyncwsgi.sites.values import options as _options
from asyncwsgi.sites.values import path as _path

HTACCESS = ".htaccess"


_EVERYWHERE = (SERVER, VHOST, DIRECTORY, HTACCESS_CONTEXT)
# Directive (lower case) -> the contexts Apache and mod_wsgi allow it in.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "listen": (SERVER,),
    "virtualhost": (SERVER,),
    "servername": (SERVER, VHOST),
    "serveralias": (VHOST,),
    "directory": (SERVER, VHOST),
    "allowoverride": (DIRECTORY,),
    "include": (SERVER, VHOST, DIRECTORY),
    "includeoptional": (SERVER, VHOST, DIRECTORY),
    "ifmodule": _EVERYWHERE,
    "wsgiscriptalias": (SERVER, VHOST),
    "alias": (SERVER, VHOST),
    "wsgidaemonprocess": (SERVER, VHOST),
    # The override class of these three is FileInfo: .htaccess may set them.
    "wsgiprocessgroup": _EVERYWHERE,
    "wsgicallableobject": _EVERYWHERE,
    "wsgiscriptreloading": _EVERYWHERE,
    # Read and ignored: every script runs as its own module in the main interpreter.
    "wsgiapplicationgroup": _EVERYWHERE,
    "wsgirestrictembedded": (SERVER,),
    # sites/serverwide.py's: Apache's User/Group, WSGIPythonHome, WSGIPythonPath, ...
    **{name: contexts for name, contexts in SERVER_WIDE.items()},
}
SECTIONS = ("virtualhost", "directory", "ifmodule")
OVERRIDE_CLASSES = ("all", "none", "authconfig", "fileinfo", "indexes", "limit", "options")
PROCESS_GROUP_OPTION = " (process-group=)"  # added to the origin of the option's setting


# --------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------


def _setting(d: Directive) -> tuple[str, Setting]:
    """A per-directory setting (the FileInfo class): its name and value."""
    if d.key == "wsgiscriptreloading":
        return "script_reloading", Setting(_on_off(d), d.origin)
    if d.key == "wsgicallableobject":
        return "callable", Setting(_callable(d), d.origin)
    return "process_group", Setting(_group_name(d, _one(d)), d.origin)


# WSGIDaemonProcess option -> the process-group setting it gives (the settings table's).
GROUP_OPTIONS = {e.option.directive: e for e in table(ProcessSettings) if e.option.directive}
DAEMON_OPTIONS = (*GROUP_OPTIONS, "display-name")
# What a line leaves out takes mod_wsgi's default, where that is not ours.
MODWSGI_DEFAULTS = {
    e.name: e.option.modwsgi_default
    for e in GROUP_OPTIONS.values()
    if e.option.modwsgi_default is not None
}


def _daemon_group(d: Directive, vhost: int, notices: Notices) -> DaemonGroup:
    if not d.args:
        raise d.error("WSGIDaemonProcess needs a group name")
    name = _group_name(d, d.args[0])
    if not name:
        raise d.error("WSGIDaemonProcess: %{GLOBAL} names embedded mode, not a daemon group")
    if name == "embedded":
        raise d.error(
            "WSGIDaemonProcess: 'embedded' names the mounts run in the server's own threads "
            "(python -m asyncwsgi reload embedded); give the group another name"
        )
    values: dict[str, object] = {}
    for key, text in _options(d, d.args[1:]).items():
        if key == "display-name":
            if not text:
                raise d.error("WSGIDaemonProcess: display-name= is empty")
            values["display_name"] = text
            continue
        setting = GROUP_OPTIONS.get(key)
        if setting is None and key in DAEMON_ACCEPTED:
            notices.daemon_option(d, key)
            continue
        if setting is None and key in DAEMON_REFUSED:
            raise d.error(f"WSGIDaemonProcess: option {key}=: {DAEMON_REFUSED[key]}")
        if setting is None:
            raise d.error(
                f"WSGIDaemonProcess: option {key!r} is not supported (supported: "
                f"{', '.join(DAEMON_OPTIONS)})"
            )
        try:
            values[setting.name] = setting.option.kind.parse(text)
        except ValueError as exc:
            raise d.error(f"WSGIDaemonProcess: {key}={text!r}: {exc}") from None
    return DaemonGroup(
        name=name,
        origin=d.origin,
        given=tuple(values),
        vhost=vhost,
        **{**MODWSGI_DEFAULTS, **values},
    )


def _listen(d: Directive) -> BindAddress:
    if len(d.args) not in (1, 2):
        raise d.error("Listen takes [IP:]PORT and an optional protocol")
    if len(d.args) == 2 and d.args[1].lower() != "http":
        raise d.error(
            f"Listen: protocol {d.args[1]!r}: only http (serve HTTPS with --certfile/--keyfile)"
        )
    text = d.args[0]
    if text.isdigit():
        text = ":" + text
    try:
        return parse_bind(text)
    except ConfigError as exc:
        raise d.error(f"Listen: {exc}") from None


def _vhost_address(d: Directive, word: str) -> list[tuple[str, str]]:
    if word.startswith("["):
        host, _, rest = word[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "*"
    else:
        host, sep, port = word.rpartition(":")
        if not sep:
            host, port = word, "*"
    if port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        raise d.error(f"<VirtualHost>: {word!r}: port must be a number or *")
    if host in ("*", "_default_"):
        return [("*", port)]
    try:
        return [(str(ipaddress.ip_address(host)), port)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        raise d.error(f"<VirtualHost>: cannot resolve {host!r}") from None
    return sorted({(str(info[4][0]), port) for info in infos})


def _server_name(d: Directive) -> str:
    name = _one(d).lower()
    if "://" in name:
        name = name.partition("://")[2]
    if name.startswith("["):
        return name.partition("]")[0] + "]"
    return name.partition(":")[0]


def _allow_override(d: Directive) -> bool:
    """Whether the AllowOverride line lets .htaccess set mod_wsgi's FileInfo directives."""
    if not d.args:
        raise d.error("AllowOverride needs All, None or override classes")
    allowed = False
    for word in d.args:
        name = word.lower().partition("=")[0]
        if name not in OVERRIDE_CLASSES:
            raise d.error(
                f"AllowOverride: {word!r} is not an override class (All, None, AuthConfig, "
                "FileInfo, Indexes, Limit, Options)"
            )
        if name in ("all", "none") and len(d.args) > 1:
            raise d.error(f"AllowOverride: {word} cannot be combined with other classes")
        allowed = allowed or name in ("all", "fileinfo")
    return allowed


# --------------------------------------------------------------------------------------
# Contexts
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Alias:
    path: str
    script: str
    group: Setting | None
    origin: str
    directive: Directive


@dataclass(slots=True)
class _Directory:
    path: str
    layer: Layer
    allow: Setting | None  # AllowOverride: whether FileInfo is allowed
    order: int


@dataclass(slots=True)
class _Context:
    """What one context (the server, or a virtual host) gave."""

    kind: str
    layer: Layer = field(default_factory=dict)
    aliases: list[_Alias] = field(default_factory=list)
    statics: list[StaticAlias] = field(default_factory=list)
    directories: list[_Directory] = field(default_factory=list)
    server_name: str = ""
    server_aliases: list[str] = field(default_factory=list)
    addresses: list[tuple[str, str]] = field(default_factory=list)
    origin: str = ""
    allow: Setting | None = None  # a <Directory>'s AllowOverride


class _Reader:
    def __init__(self, root: str) -> None:
        self.root = root
        self.listen: list[tuple[BindAddress, str]] = []
        self.server = _Context(SERVER)
        self.vhosts: list[_Context] = []
        self.groups: dict[str, DaemonGroup] = {}
        self.order = 0
        self.notices = Notices()
        self.restrict_embedded: Setting | None = None
        self.server_wide = ServerWide(root, self.notices)

    def walk(self, directives: list[Directive], context: str, target: _Context) -> None:
        for d in directives:
            self.one(d, context, target)

    def one(self, d: Directive, context: str, target: _Context) -> None:
        key = d.key
        allowed = CONTEXTS.get(key)
        if allowed is None:
            if self.notices.handles(d):
                return
            raise d.error(
                f"unknown directive {d.name!r} (asyncwsgi reads Listen, VirtualHost, "
                "ServerName, ServerAlias, Directory, AllowOverride, Include, IfModule and "
                "mod_wsgi's WSGIScriptAlias, WSGIDaemonProcess, WSGIProcessGroup, "
                "WSGICallableObject, WSGIScriptReloading, WSGIApplicationGroup, "
                "WSGIRestrictEmbedded; it ignores, with a notice, the directives of Apache "
                "modules that do not change what the application sees)"
            )
        if key in SECTIONS and d.children is None:
            raise d.error(f"{d.name} is a section: write <{d.name} ...> ... </{d.name}>")
        if key not in SECTIONS and d.children is not None:
            raise d.error(f"<{d.name}> is not a section")
        if context not in allowed:
            where = "<Directory>" if context == DIRECTORY else context
            raise d.error(f"{d.name} is not allowed in {where} (allowed in: {', '.join(allowed)})")
        if key == "ifmodule":
            _one(d)
            if ifmodule_holds(d):
                assert d.children is not None
                self.walk(d.children, context, target)
        elif key == "listen":
            address = _listen(d)
            for other, origin in self.listen:
                if other == address:
                    raise d.error(f"Listen {d.args[0]}: already given at {origin}")
            self.listen.append((address, d.origin))
        elif key == "virtualhost":
            self.vhost(d)
        elif key == "servername":
            target.server_name = _server_name(d)
        elif key == "serveralias":
            if not d.args:
                raise d.error("ServerAlias needs at least one name")
            target.server_aliases += [a.lower() for a in d.args]
        elif key == "directory":
            self.directory(d, target)
        elif key == "allowoverride":
            target.allow = Setting(_allow_override(d), d.origin)
        elif key == "wsgiscriptalias":
            self.alias(d, target)
        elif key == "alias":
            self.static(d, target)
        elif key == "wsgidaemonprocess":
            group = _daemon_group(d, len(self.vhosts) - 1 if context == VHOST else -1, self.notices)
            if group.name in self.groups:
                earlier = self.groups[group.name].origin
                raise d.error(f"WSGIDaemonProcess {group.name}: already defined at {earlier}")
            self.groups[group.name] = group
        elif key == "wsgiapplicationgroup":
            _one(d)
        elif key == "wsgirestrictembedded":
            self.restrict_embedded = Setting(_on_off(d), d.origin)
        elif key in SERVER_WIDE:
            self.server_wide.read(d)
        else:
            name, setting = _setting(d)
            target.layer[name] = setting

    def vhost(self, d: Directive) -> None:
        if not d.args:
            raise d.error("<VirtualHost> needs at least one address (e.g. *:80)")
        context = _Context(VHOST, origin=d.origin)
        for word in d.args:
            context.addresses += _vhost_address(d, word)
        self.vhosts.append(context)
        assert d.children is not None
        self.walk(d.children, VHOST, context)

    def directory(self, d: Directive, target: _Context) -> None:
        if d.args and d.args[0].startswith("~"):
            raise d.error("<Directory ~ regex> is not supported; give a folder")
        path = _one(d)
        if glob.has_magic(path):
            raise d.error(f"<Directory {path}>: wildcards are not supported; give a folder")
        if not os.path.isabs(path):
            raise d.error(f"<Directory {path}>: give an absolute path")
        holder = _Context(DIRECTORY)
        assert d.children is not None
        self.walk(d.children, DIRECTORY, holder)
        entry = _Directory(os.path.normpath(path), holder.layer, holder.allow, self.order)
        self.order += 1
        target.directories.append(entry)

    def static(self, d: Directive, target: _Context) -> None:
        alias = _static_alias(d, self.root)
        for other_path, origin in _mounted(target):
            if other_path == alias.path:
                raise d.error(f"Alias {d.args[0]}: already mounted at {origin}")
        target.statics.append(alias)

    def alias(self, d: Directive, target: _Context) -> None:
        if len(d.args) < 2:
            raise d.error("WSGIScriptAlias takes a URL path, a script file and options")
        url, script = d.args[0], d.args[1]
        if not url.startswith("/"):
            raise d.error(f"WSGIScriptAlias: the URL path {url!r} must start with '/'")
        # As PEP 3333 strings (UTF-8 bytes as latin-1), as request paths and SCRIPT_NAME are.
        path = url.rstrip("/").encode("utf-8").decode("latin-1")
        group: Setting | None = None
        for key, value in _options(d, d.args[2:]).items():
            if key == "process-group":
                group = Setting(_group_name(d, value), d.origin + PROCESS_GROUP_OPTION)
            elif key == "application-group":
                pass  # every application has its own module in the main interpreter
            else:
                raise d.error(
                    f"WSGIScriptAlias: option {key!r} is not supported (supported: "
                    "process-group, application-group)"
                )
        for other_path, origin in _mounted(target):
            if other_path == path:
                raise d.error(f"WSGIScriptAlias {url}: already mounted at {origin}")
        target.aliases.append(_Alias(path, _path(self.root, script), group, d.origin, d))


def _mounted(target: _Context) -> list[tuple[str, str]]:
    """The URL paths a context mounts already (WSGIScriptAlias and Alias), with origins."""
    return [(a.path, a.origin) for a in target.aliases] + [
        (s.path, s.origin) for s in target.statics
    ]


def _static_alias(d: Directive, root: str) -> StaticAlias:
    if len(d.args) != 2:
        raise d.error("Alias takes a URL path and a folder (or file)")
    url, folder = d.args
    if not url.startswith("/"):
        raise d.error(f"Alias: the URL path {url!r} must start with '/'")
    full = _path(root, folder)
    if not os.path.exists(full):
        raise d.error(f"Alias {url}: {folder!r} does not exist")
    path = url.rstrip("/").encode("utf-8").decode("latin-1")
    return StaticAlias(path=path, folder=full, origin=d.origin)


def _directory_layers(
    script: str, directories: list[tuple[int, _Directory]]
) -> tuple[list[Layer], Setting | None]:
    """The layers of the <Directory> sections that hold ``script``, shallowest first,
    and the AllowOverride that applies to its folder."""
    folder = os.path.dirname(script)
    holding = [
        (entry.path.count(os.sep) if entry.path != os.sep else 0, rank, entry.order, entry)
        for rank, entry in directories
        if folder == entry.path or folder.startswith(entry.path.rstrip(os.sep) + os.sep)
    ]
    holding.sort(key=lambda item: item[:3])
    allow: Setting | None = None
    layers: list[Layer] = []
    for *_, entry in holding:
        layers.append(entry.layer)
        if entry.allow is not None:
            allow = entry.allow
    return layers, allow


def parse_htaccess(path: str, text: str) -> Layer:
    """The settings a .htaccess file gives. Raises ``ConfigError`` (``path:LINE: ...``)."""
    layer: Layer = {}
    holder = _Context(HTACCESS_CONTEXT)
    reader = _Reader(os.path.dirname(path))
    for d in parse_text(text, path):
        if d.key in ("include", "includeoptional"):
            raise d.error(f"{d.name} is not allowed in .htaccess")
        reader.one(d, HTACCESS_CONTEXT, holder)
    layer.update(holder.layer)
    return layer


def read_htaccess(path: str) -> Layer | None:
    """The settings of the .htaccess at ``path``; None when there is no such file."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot read: {exc}") from None
    return parse_htaccess(path, text)


def read_site(path: str, *, overrides: Layer | None = None) -> Site:
    """Read and check a config file. ``overrides`` (from the command line) win over every
    context. Raises ``ConfigError`` naming the file and line."""
    display = path
    full = os.path.abspath(path)
    root = os.path.dirname(full)
    directives = read_file(full, root=root, display=display)
    reader = _Reader(root)
    reader.walk(directives, SERVER, reader.server)
    overrides = {k: Setting(v.value, COMMAND_LINE) for k, v in (overrides or {}).items()}

    server = reader.server
    for context in reader.vhosts:
        # A <VirtualHost> without a ServerName has the main server's, as in Apache.
        context.server_name = context.server_name or server.server_name
    names = [context.server_name for context in reader.vhosts]
    htaccess: dict[str, Layer] = {}
    groups = reader.groups
    assigned: dict[str, tuple[str, str, str]] = {}  # group -> script, callable, origin

    def mount(alias: _Alias, contexts: list[_Context], vhost_index: int) -> Mount:
        directories = [(rank, e) for rank, c in enumerate(contexts) for e in c.directories]
        dir_layers, allow = _directory_layers(alias.script, directories)
        layers = tuple([c.layer for c in contexts] + dir_layers)
        access = ""
        if allow is not None and allow.value:
            access = os.path.join(os.path.dirname(alias.script), HTACCESS)
            if access not in htaccess:
                htaccess[access] = read_htaccess(access) or {}
        result = Mount(
            path=alias.path,
            script=alias.script,
            origin=alias.origin,
            layers=layers,
            htaccess=access,
            group_option=alias.group,
            overrides=overrides,
        )
        _check_mount(result, htaccess.get(access), alias, groups, vhost_index, names, assigned)
        return result

    mounts = tuple(mount(a, [server], -1) for a in server.aliases)
    vhosts: list[VirtualHost] = []
    for index, context in enumerate(reader.vhosts):
        own = [mount(a, [server, context], index) for a in context.aliases]
        paths = {m.path for m in own}
        inherited = [
            mount(a, [server, context], index) for a in server.aliases if a.path not in paths
        ]
        taken = paths | {s.path for s in context.statics}
        statics = context.statics + [
            s for s in server.statics if s.path not in taken and s.path not in paths
        ]
        inherited = [m for m in inherited if m.path not in {s.path for s in context.statics}]
        vhosts.append(
            VirtualHost(
                addresses=tuple(context.addresses),
                server_name=context.server_name,
                aliases=tuple(context.server_aliases),
                mounts=tuple(own + inherited),
                origin=context.origin,
                statics=tuple(statics),
            )
        )
    if not mounts and not any(v.mounts for v in vhosts):
        raise ConfigFileError(f"{display}: no WSGIScriptAlias: nothing to serve")
    wide = reader.server_wide
    wide.apply(groups)
    served = [m for v in [None, *vhosts] for m in (v.mounts if v else mounts)]
    wide.check_imports([(m.script, m.settings(htaccess.get(m.htaccess))) for m in served])
    return Site(
        path=display,
        listen=tuple(reader.listen),
        mounts=mounts,
        vhosts=tuple(vhosts),
        groups=tuple(groups.values()),
        htaccess=htaccess,
        statics=tuple(server.statics),
        notices=tuple(reader.notices.messages()),
        restrict_embedded=reader.restrict_embedded,
        python_home=wide.python_home,
        python_path=wide.python_path,
    )


def _check_mount(
    mount: Mount,
    htaccess: Layer | None,
    alias: _Alias,
    groups: dict[str, DaemonGroup],
    vhost: int,
    names: list[str],
    assigned: dict[str, tuple[str, str, str]],
) -> None:
    d = alias.directive
    if not os.path.isfile(mount.script):
        reason = "is a folder" if os.path.isdir(mount.script) else "does not exist"
        raise d.error(f"WSGIScriptAlias: the script {mount.script!r} {reason}")
    settings = mount.settings(htaccess)
    group_setting = settings["process_group"]
    name = group_setting.value
    if name == EMBEDDED:
        return
    where = group_setting.origin.removesuffix(PROCESS_GROUP_OPTION)
    if group_setting.origin in (DEFAULT, COMMAND_LINE):
        where = alias.origin
    group = groups.get(name)
    if group is None:
        known = ", ".join(groups) or "none defined"
        raise ConfigFileError(
            f"{where}: no WSGIDaemonProcess named {name!r} (groups: {known}), "
            f"needed by WSGIScriptAlias at {alias.origin}"
        )
    # As mod_wsgi: a group defined in a <VirtualHost> serves the virtual hosts of that
    # ServerName (typically its :80 and :443 pair) and no other.
    home = names[group.vhost] if group.vhost >= 0 else ""
    if (
        group.vhost >= 0
        and vhost != group.vhost
        and not (home and vhost >= 0 and names[vhost] == home)
    ):
        raise ConfigFileError(
            f"{where}: daemon group {name!r} is defined inside another <VirtualHost> "
            f"({group.origin}); only virtual hosts named {home or 'as that one'} can use it"
        )
    app = (mount.script, settings["callable"].value, alias.origin)
    earlier = assigned.setdefault(name, app)
    if earlier[:2] != app[:2]:
        raise ConfigFileError(
            f"{alias.origin}: daemon group {name!r} already runs {earlier[0]} "
            f"({earlier[1]}, from {earlier[2]}); a daemon group runs one application, so "
            "give this one a WSGIDaemonProcess of its own"
        )
