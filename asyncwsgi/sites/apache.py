"""Apache's own directives in a config file: read, then ignored with a notice, or warned
about.

Rule: imports nothing of the package but this package's ``syntax``; no asyncio.

A config file written for Apache carries directives of modules that do not change what
the WSGI application sees: logging, ``DocumentRoot``, ``LoadModule``, MPM and
``KeepAlive`` tuning, ``Options``, sections such as ``<Location>`` and ``<Files>``. Each is
read and ignored, with one notice per directive name listing where it was seen.
Access control (``Require``, ``Allow``, ``Deny``, ``Auth*``) is not applied either; a
rule that restricts anyone gets a warning saying so, as the application or a proxy in
front must do it. (``Require all granted`` and ``Allow from all`` grant what the server
does anyway: a notice.) A mod_wsgi directive that asks for what asyncwsgi always does,
or that names an Apache mechanism asyncwsgi has no use for, is accepted with a notice.
A directive nobody knows stays an error (``directives``).
"""

from __future__ import annotations

from asyncwsgi.sites.syntax import Directive


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Directive (lower case) -> the Apache module it comes from.
_MODULES: dict[str, tuple[str, ...]] = {
    "core": _words(
        "AcceptFilter AcceptPathInfo AccessFileName AddDefaultCharset DefaultRuntimeDir "
        "DefaultType DocumentRoot EnableMMAP EnableSendfile ErrorDocument ErrorLog "
        "ErrorLogFormat FileETag HostnameLookups HttpProtocolOptions KeepAlive "
        "KeepAliveTimeout LimitRequestBody LimitRequestFields LimitRequestFieldSize "
        "LimitRequestLine LogLevel MaxKeepAliveRequests Mutex NameVirtualHost Options "
        "PidFile RLimitCPU RLimitMEM RLimitNPROC ServerAdmin ServerRoot ServerSignature "
        "ServerTokens SetHandler SetInputFilter SetOutputFilter TimeOut TraceEnable "
        "UseCanonicalName UseCanonicalPhysicalPort AddOutputFilterByType"
    ),
    "mod_so": ("LoadModule", "LoadFile"),
    "mpm": _words(
        "StartServers MinSpareServers MaxSpareServers MaxRequestWorkers MaxClients "
        "ServerLimit ThreadsPerChild ThreadLimit MaxConnectionsPerChild "
        "MaxRequestsPerChild MinSpareThreads MaxSpareThreads ThreadStackSize "
        "ListenBacklog AsyncRequestWorkerFactor GracefulShutdownTimeout"
    ),
    "mod_unixd": ("ChrootDir",),
    "mod_log_config": ("CustomLog", "LogFormat", "TransferLog", "BufferedLogs"),
    "mod_logio": ("LogIOTrackTTFB",),
    "mod_mime": ("AddType", "AddHandler", "AddEncoding", "AddCharset", "TypesConfig"),
    "mod_dir": ("DirectoryIndex", "DirectorySlash", "FallbackResource"),
    "mod_autoindex": ("IndexOptions", "IndexIgnore", "HeaderName", "ReadmeName"),
    "mod_headers": ("Header", "RequestHeader"),
    "mod_expires": ("ExpiresActive", "ExpiresByType", "ExpiresDefault"),
    "mod_deflate": ("DeflateCompressionLevel", "DeflateBufferSize"),
    "mod_setenvif": ("SetEnvIf", "SetEnvIfNoCase", "BrowserMatch"),
    "mod_env": ("SetEnv", "UnsetEnv", "PassEnv"),
    "mod_ssl": _words(
        "SSLEngine SSLCertificateFile SSLCertificateKeyFile SSLCertificateChainFile "
        "SSLProtocol SSLCipherSuite SSLHonorCipherOrder SSLOptions SSLSessionCache "
        "SSLCompression SSLUseStapling SSLStaplingCache"
    ),
    "mod_reqtimeout": ("RequestReadTimeout",),
    "mod_status": ("ExtendedStatus",),
}
IGNORED: dict[str, str] = {
    name.lower(): module for module, names in _MODULES.items() for name in names
}
# Access control: read, not applied.
ACCESS = frozenset(
    _words(
        "require allow deny order satisfy authtype authname authuserfile authgroupfile "
        "authbasicprovider authbasicauthoritative authdigestprovider authzgroupfileauthoritative "
        "authldapurl authldapbinddn authldapbindpassword"
    )
)
# Sections ignored with everything in them (a WSGI directive inside one is an error).
IGNORED_SECTIONS = frozenset(
    _words(
        "location locationmatch files filesmatch directorymatch limit limitexcept "
        "ifdefine ifversion requireall requireany requirenone proxy proxymatch if elseif "
        "else"
    )
)
# mod_wsgi directives accepted with no effect, and why.
WSGI_ACCEPTED: dict[str, str] = {
    "wsgipassauthorization": "the Authorization header always reaches the application",
    "wsgichunkedrequest": "chunked request bodies are always accepted",
    "wsgisocketprefix": "daemon processes are reached over socket pairs, not named sockets",
    "wsgiacceptmutex": "no accept mutex: the event loop accepts",
    "wsgilazyinitialization": "Python starts with the server",
    "wsgirestrictstdin": "stdin is not the client's",
    "wsgirestrictstdout": "print() goes to the server's output",
    "wsgirestrictsignal": "applications may set signal handlers",
    "wsgiverbosedebugging": "no such tracing",
    "wsgidestroyinterpreter": "one interpreter per process, ended by the process",
    "wsgipythoneggs": "eggs are not unpacked",
    "wsgipythonoptimize": "the interpreter's own -O applies",
    "wsgierroroverride": "the application's error pages are sent as they are",
}


# WSGIDaemonProcess options accepted with no effect, and why.
DAEMON_ACCEPTED: dict[str, str] = {
    "listen-backlog": "daemon processes are reached over socket pairs, not a listening socket",
    "socket-timeout": "the front and its daemons share the machine; --send-timeout bounds "
    "a slow client",
    "connect-timeout": "no connection is made: the front starts its daemons",
    "socket-user": "no named socket",
    "socket-rotation": "no named socket",
    "header-buffer-size": "--limit-request-field-size bounds the request head",
    "response-buffer-size": "the response credit of the daemon link bounds it",
    "response-socket-timeout": "--send-timeout bounds a slow client",
    "receive-buffer-size": "the kernel's defaults are used",
    "send-buffer-size": "the kernel's defaults are used",
    "stack-size": "threads get Python's default stack",
    "server-metrics": "the front's status command gives the numbers",
    "eviction-timeout": "graceful-timeout bounds a replaced process",
}
# WSGIDaemonProcess options refused, and why.
DAEMON_REFUSED: dict[str, str] = {
    "deadlock-timeout": "not supported: a daemon process that stops answering is replaced "
    "after 3 s anyway (a PING each second), and request-timeout= bounds a request",
    "chroot": "not supported: the daemon processes run the server's own interpreter",
    "cpu-time-limit": "not supported; give restart-interval= or maximum-requests=",
    "cpu-priority": "not supported; start the server with nice",
    "script-user": "not supported",
    "supplementary-groups": "not supported: user= gives the user's own groups",
}


def _grants_everyone(d: Directive) -> bool:
    words = [a.lower() for a in d.args]
    if d.key == "require":
        return words == ["all", "granted"]
    if d.key == "allow":
        return words == ["from", "all"]
    return d.key in ("order", "satisfy")


def _is_wsgi(d: Directive) -> bool:
    return d.key.startswith("wsgi") or d.key in ("alias", "aliasmatch")


class Notices:
    """What a config file's directives were read and not applied: one notice per
    directive name with where it was seen, and one warning per access rule."""

    def __init__(self) -> None:
        # Directive name (lower case) -> what was done with it, why, where it was seen.
        self._ignored: dict[str, tuple[str, str, list[str]]] = {}
        self._unenforced: list[tuple[str, str]] = []  # (the rule as written, origin)

    def handles(self, d: Directive) -> bool:
        """Read ``d`` if it is one of Apache's or an accepted mod_wsgi one (True); else
        leave it to the reader (False). Raises for a WSGI directive in an ignored section."""
        key = d.key
        if key in IGNORED_SECTIONS and d.children is not None:
            self._section(d, d.children)
            self._note(d, f"<{d.name}>", "not applied: sections by URL or file name are not read")
            return True
        if d.children is not None:
            return False
        if key in ACCESS:
            self._access(d)
            return True
        if key in IGNORED:
            self._note(d, d.name, f"{IGNORED[key]}; does not change what the application sees")
            return True
        if key in WSGI_ACCEPTED:
            self._note(d, d.name, WSGI_ACCEPTED[key], verb="accepted, no effect")
            return True
        return False

    def accepted(self, d: Directive, why: str) -> None:
        """A directive read and accepted, with nothing more to do."""
        self._note(d, d.name, why, verb="accepted")

    def daemon_option(self, d: Directive, key: str) -> None:
        """A WSGIDaemonProcess option accepted with no effect."""
        self._note(d, f"WSGIDaemonProcess {key}=", DAEMON_ACCEPTED[key], verb="accepted, no effect")

    def _section(self, section: Directive, body: list[Directive]) -> None:
        for d in body:
            if _is_wsgi(d):
                raise d.error(
                    f"{d.name} inside <{section.name}> ({section.origin}) is not supported: "
                    "give it at server or <VirtualHost> level, or in a <Directory> of the "
                    "script's folder"
                )
            if d.children is not None:
                self._section(section, d.children)
            elif d.key in ACCESS:
                self._access(d)

    def _access(self, d: Directive) -> None:
        if _grants_everyone(d):
            self._note(d, d.name, "grants every client, as asyncwsgi does anyway")
        else:
            self._unenforced.append((" ".join([d.name, *d.args]), d.origin))

    def _note(self, d: Directive, name: str, why: str, verb: str = "ignored") -> None:
        entry = self._ignored.setdefault(name.lower(), (f"{name} {verb}", why, []))
        entry[2].append(d.origin)

    def messages(self) -> list[tuple[str, str]]:
        """(``"notice"`` or ``"warning"``, text), one notice per directive name."""
        found = [
            ("notice", f"{what} ({why}): {', '.join(origins)}")
            for what, why, origins in self._ignored.values()
        ]
        found += [
            (
                "warning",
                f"{origin}: {rule!r}: access control is not applied; the application or a "
                "proxy in front must do it",
            )
            for rule, origin in self._unenforced
        ]
        return found
