"""Reading Apache httpd / mod_wsgi configuration (``asyncwsgi.sites``: syntax, directives,
report), table-driven:
words and lines as Apache splits them, sections, the precedence chain of the contexts
(server < <VirtualHost> < <Directory> < .htaccess < process-group= < command line), and
every error naming ``FILE:LINE:``. Config files and scripts are real files in ``tmp_path``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from asyncwsgi.errors import ConfigError, ConfigFileError
from asyncwsgi.settings import BindAddress
from asyncwsgi.sites.directives import parse_htaccess, read_site
from asyncwsgi.sites.model import (
    COMMAND_LINE,
    DEFAULT,
    EMBEDDED,
    MOUNT_DEFAULTS,
    Layer,
    Mount,
    Setting,
    Site,
)
from asyncwsgi.sites.report import describe_site
from asyncwsgi.sites.syntax import Directive, logical_lines, parse_text, split_words

SCRIPTS = ("app/app.wsgi", "app/sub/deep.wsgi", "other/other.wsgi")
SCRIPT_TEXT = "def application(environ, start_response):\n    return []\n"


def write_tree(root: Path, files: dict[str, str]) -> None:
    """The scripts every case may mount, then ``files`` ({root} is ``root``)."""
    for name in SCRIPTS:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SCRIPT_TEXT)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{root}", str(root)))


def build(root: Path, files: dict[str, str], overrides: Layer | None = None) -> Site:
    write_tree(root, files)
    return read_site(str(root / "site.conf"), overrides=overrides)


def at(root: Path, spec: str) -> str:
    """``site.conf:3`` -> the full origin read_site gives (``default`` and ``command line``
    stay as they are)."""
    if spec in (DEFAULT, COMMAND_LINE):
        return spec
    return f"{root}/{spec}"


def effective(site: Site, mount: Mount) -> dict[str, tuple[Any, str]]:
    settings = mount.settings(site.htaccess.get(mount.htaccess))
    return {name: (s.value, s.origin) for name, s in settings.items()}


def find_mount(site: Site, vhost: int | None, path: str) -> Mount:
    mounts = site.mounts if vhost is None else site.vhosts[vhost].mounts
    found = [m for m in mounts if m.path == path]
    assert len(found) == 1, [m.path for m in mounts]
    return found[0]


# --------------------------------------------------------------------------------------
# split_words
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        pytest.param("a b c", ["a", "b", "c"], id="plain"),
        pytest.param("\ta \t b  ", ["a", "b"], id="tabs-and-runs-of-blanks"),
        pytest.param('"a b" c', ["a b", "c"], id="double-quotes-keep-blanks"),
        pytest.param(r'"say \"hi\"" x', ['say "hi"', "x"], id="escaped-double-quote"),
        pytest.param(r"'it\'s'", ["it's"], id="escaped-single-quote"),
        pytest.param('"it\'s" \'a "b"\'', ["it's", 'a "b"'], id="other-quote-is-literal"),
        pytest.param(r'"C:\dir\x"', [r"C:\dir\x"], id="backslash-before-other-kept"),
        pytest.param('"" x', ["", "x"], id="empty-quoted-word"),
        pytest.param('"a"b', ["a", "b"], id="closing-quote-ends-the-word"),
        pytest.param(
            'display-name="my app"', ['display-name="my', 'app"'], id="quote-mid-word-no-quoting"
        ),
        pytest.param(
            r'"a\\" b',
            ["a\\", "b"],
            id="escaped-backslash-before-closing-quote",
        ),
    ],
)
def test_split_words(text: str, words: list[str]) -> None:
    assert split_words(text) == words


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('"abc', id="double"),
        pytest.param(r'"abc\"', id="escaped-closing-quote"),
        pytest.param("\"abc'", id="other-quote-does-not-close"),
    ],
)
def test_split_words_unterminated_quote(text: str) -> None:
    with pytest.raises(ValueError, match="no closing"):
        split_words(text)


# --------------------------------------------------------------------------------------
# logical_lines
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param("\n# c\n  # indented\nA 1\n\n", [(4, "A 1")], id="blank-and-comments"),
        pytest.param("A 1 \\\n  2\nB\n", [(1, "A 1   2"), (3, "B")], id="continuation"),
        pytest.param("A \\ \nB", [(1, "A \\"), (2, "B")], id="blank-after-backslash-no-cont"),
        pytest.param("# c \\\nA 1\nB 2", [(3, "B 2")], id="comment-continues-too"),
        pytest.param("A 1\r\nB \\\r\n 2\r\n", [(1, "A 1"), (2, "B  2")], id="crlf"),
        pytest.param("A \\", [(1, "A \\")], id="backslash-on-the-last-line"),
        pytest.param("A 1 # x", [(1, "A 1 # x")], id="hash-after-directive-is-no-comment"),
        pytest.param("A 1\\\\\nB", [(1, "A 1\\\\"), (2, "B")], id="escaped-backslash-no-cont"),
    ],
)
def test_logical_lines(text: str, lines: list[tuple[int, str]]) -> None:
    assert list(logical_lines(text)) == lines


# --------------------------------------------------------------------------------------
# parse_text
# --------------------------------------------------------------------------------------

Shape = tuple[str, list[str], int, Any]  # name, args, line, children (None: no section)


def shape(directives: list[Directive]) -> list[Shape]:
    return [
        (d.name, d.args, d.line, None if d.children is None else shape(d.children))
        for d in directives
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "Listen 80\n\nWSGIScriptAlias / 'a b.wsgi' process-group=g\n",
            [
                ("Listen", ["80"], 1, None),
                ("WSGIScriptAlias", ["/", "a b.wsgi", "process-group=g"], 3, None),
            ],
            id="flat",
        ),
        pytest.param(
            "<VirtualHost *:80>\n"
            "  ServerName a\n"
            "  <Directory /srv>\n"
            "    <IfModule mod_wsgi.c>\n"
            "      WSGICallableObject app\n"
            "    </IfModule>\n"
            "  </Directory>\n"
            "</VirtualHost>\n"
            "Listen 81\n",
            [
                (
                    "VirtualHost",
                    ["*:80"],
                    1,
                    [
                        ("ServerName", ["a"], 2, None),
                        (
                            "Directory",
                            ["/srv"],
                            3,
                            [
                                (
                                    "IfModule",
                                    ["mod_wsgi.c"],
                                    4,
                                    [("WSGICallableObject", ["app"], 5, None)],
                                )
                            ],
                        ),
                    ],
                ),
                ("Listen", ["81"], 9, None),
            ],
            id="nested-three-deep",
        ),
        pytest.param(
            '<Directory "/a b">\n</directory>\n<Directory /c>\n</DIRECTORY >\n',
            [("Directory", ["/a b"], 1, []), ("Directory", ["/c"], 3, [])],
            id="quoted-arg-and-closing-case",
        ),
        pytest.param(
            "<VirtualHost\t*:80 *:81>\n\tWSGIProcessGroup\tg\n</VirtualHost>",
            [("VirtualHost", ["*:80", "*:81"], 1, [("WSGIProcessGroup", ["g"], 2, None)])],
            id="tabs",
        ),
        pytest.param(
            "A \\\n  1\n<B x>\nC\n</B>",
            [("A", ["1"], 1, None), ("B", ["x"], 3, [("C", [], 4, None)])],
            id="line-numbers-after-continuation",
        ),
    ],
)
def test_parse_text(text: str, expected: list[Shape]) -> None:
    directives = parse_text(text, "x.conf")
    assert shape(directives) == expected
    assert all(d.file == "x.conf" for d in directives)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param(
            "<VirtualHost *:80>\nA\n", 1, "<VirtualHost> has no </VirtualHost>", id="unclosed"
        ),
        pytest.param(
            "<VirtualHost *>\n<Directory /x>\n</Directory>\n<IfModule m>\nA\n",
            4,
            "<IfModule> has no </IfModule>",
            id="unclosed-inner-section",
        ),
        pytest.param(
            "<VirtualHost *>\n<Directory /x>\n</VirtualHost>\n",
            3,
            "</VirtualHost> closes <Directory>, opened at x.conf:2",
            id="mismatched",
        ),
        pytest.param(
            "A\n</Directory>\n", 2, "without a matching <Directory>", id="close-without-open"
        ),
        pytest.param("\n<VirtualHost *:80\n", 2, "ends with '>'", id="open-tag-without-gt"),
        pytest.param('A\nB "x\n', 2, "no closing", id="unterminated-quote"),
        pytest.param(
            "<Directory '/x>\n</Directory>", 1, "no closing", id="unterminated-quote-in-tag"
        ),
    ],
)
def test_parse_text_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_text(text, "x.conf")
    message = str(info.value)
    assert message.startswith(f"x.conf:{line}: "), message
    assert fragment in message


# --------------------------------------------------------------------------------------
# read_site: the effective settings of a mount and where each came from
# --------------------------------------------------------------------------------------


@dataclass
class Case:
    files: dict[str, str]
    # setting -> (value, origin as "FILE:LINE" under tmp_path); unlisted: the default
    expected: dict[str, tuple[Any, str]]
    vhost: int | None = None  # None: the main server
    path: str = ""
    overrides: Layer | None = None


APP = "WSGIScriptAlias / app/app.wsgi\n"
HTACCESS_SITE = (
    "<Directory {root}/app>\n"
    "    AllowOverride {allow}\n"
    "    WSGICallableObject fromdir\n"
    "    WSGIScriptReloading Off\n"
    "</Directory>\n" + APP
)
HTACCESS = {"app/.htaccess": "# read when allowed\nWSGICallableObject fromhtaccess\n"}


def htaccess_case(allow: str, read: bool) -> Case:
    callable_ = ("fromhtaccess", "app/.htaccess:2") if read else ("fromdir", "site.conf:3")
    return Case(
        {"site.conf": HTACCESS_SITE.replace("{allow}", allow), **HTACCESS},
        {"callable": callable_, "script_reloading": (False, "site.conf:4")},
    )


PRECEDENCE = [
    pytest.param(Case({"site.conf": APP}, {}), id="defaults"),
    pytest.param(
        Case(
            {"site.conf": "WSGIScriptReloading Off\nWSGICallableObject app\n" + APP},
            {"script_reloading": (False, "site.conf:1"), "callable": ("app", "site.conf:2")},
        ),
        id="server-config",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "WSGIScriptReloading Off\n"
                "WSGICallableObject app\n"
                "<VirtualHost *:80>\n"
                "    WSGIScriptReloading On\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n"
            },
            {"script_reloading": (True, "site.conf:4"), "callable": ("app", "site.conf:2")},
            vhost=0,
        ),
        id="vhost-over-server",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    WSGICallableObject fromdir\n"
                "</Directory>\n"
                "<VirtualHost *:80>\n"
                "    WSGICallableObject fromvhost\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n"
            },
            {"callable": ("fromdir", "site.conf:2")},
            vhost=0,
        ),
        id="server-directory-over-vhost",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    WSGICallableObject deep\n"
                "</Directory>\n"
                "<Directory {root}>\n"
                "    WSGICallableObject shallow\n"
                "    WSGIScriptReloading Off\n"
                "</Directory>\n" + APP
            },
            {"callable": ("deep", "site.conf:2"), "script_reloading": (False, "site.conf:6")},
        ),
        id="deeper-directory-over-shallower-whatever-the-order",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    WSGICallableObject first\n"
                "</Directory>\n"
                '<Directory "{root}/app/">\n'
                "    WSGICallableObject second\n"
                "</Directory>\n" + APP
            },
            {"callable": ("second", "site.conf:5")},
        ),
        id="same-directory-later-section-wins",
    ),
    pytest.param(
        Case(
            {"site.conf": "<Directory />\n    WSGIScriptReloading Off\n</Directory>\n" + APP},
            {"script_reloading": (False, "site.conf:2")},
        ),
        id="directory-slash-holds-everything",
    ),
    pytest.param(
        Case(
            {"site.conf": "<Directory {root}/ap>\n    WSGICallableObject no\n</Directory>\n" + APP},
            {},
        ),
        id="directory-of-a-name-prefix-does-not-apply",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<VirtualHost *:80>\n"
                "    <Directory {root}/app>\n"
                "        WSGICallableObject vhostdir\n"
                "    </Directory>\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n"
                "<Directory {root}/app>\n"
                "    WSGICallableObject serverdir\n"
                "</Directory>\n"
            },
            {"callable": ("vhostdir", "site.conf:3")},
            vhost=0,
        ),
        id="vhost-directory-over-server-directory-same-path",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    WSGICallableObject serverdeep\n"
                "</Directory>\n"
                "<VirtualHost *:80>\n"
                "    <Directory {root}>\n"
                "        WSGICallableObject vhostshallow\n"
                "    </Directory>\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n"
            },
            {"callable": ("serverdeep", "site.conf:2")},
            vhost=0,
        ),
        id="deeper-server-directory-over-shallower-vhost-directory",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<VirtualHost *:80>\n"
                "    ServerName a\n"
                "    <Directory {root}/app>\n"
                "        WSGICallableObject a\n"
                "    </Directory>\n"
                "    WSGIScriptAlias / other/other.wsgi\n"
                "</VirtualHost>\n"
                "<VirtualHost *:80>\n"
                "    ServerName b\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n"
            },
            {},
            vhost=1,
        ),
        id="another-vhosts-directory-does-not-apply",
    ),
    pytest.param(htaccess_case("FileInfo", True), id="htaccess-fileinfo"),
    pytest.param(htaccess_case("All", True), id="htaccess-all"),
    pytest.param(htaccess_case("None", False), id="htaccess-none"),
    pytest.param(htaccess_case("AuthConfig", False), id="htaccess-authconfig-only"),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    AllowOverride All\n"
                "    AllowOverride None\n"
                "</Directory>\n" + APP,
                **HTACCESS,
            },
            {},
        ),
        id="htaccess-last-allowoverride-in-a-section-wins",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    AllowOverride None\n"
                "</Directory>\n"
                "<Directory {root}>\n"
                "    AllowOverride All\n"
                "</Directory>\n" + APP,
                **HTACCESS,
            },
            {},
        ),
        id="htaccess-deeper-none-over-shallower-all",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}/app>\n"
                "    AllowOverride FileInfo\n"
                "</Directory>\n"
                "<Directory />\n"
                "    AllowOverride None\n"
                "</Directory>\n" + APP,
                **HTACCESS,
            },
            {"callable": ("fromhtaccess", "app/.htaccess:2")},
        ),
        id="htaccess-deeper-fileinfo-over-shallower-none",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<Directory {root}>\n    AllowOverride FileInfo\n</Directory>\n" + APP,
                **HTACCESS,
            },
            {"callable": ("fromhtaccess", "app/.htaccess:2")},
        ),
        id="htaccess-allowed-by-a-parent-directory",
    ),
    pytest.param(Case({"site.conf": APP, **HTACCESS}, {}), id="htaccess-no-allowoverride"),
    pytest.param(
        Case(
            {
                "site.conf": "<VirtualHost *:80>\n"
                "    <Directory {root}/app>\n"
                "        AllowOverride FileInfo\n"
                "    </Directory>\n"
                "    WSGICallableObject fromvhost\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n",
                **HTACCESS,
            },
            {"callable": ("fromhtaccess", "app/.htaccess:2")},
            vhost=0,
        ),
        id="htaccess-allowed-by-a-vhost-directory",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "WSGIDaemonProcess g1\n"
                "WSGIDaemonProcess g2\n"
                "<Directory {root}/app>\n"
                "    AllowOverride FileInfo\n"
                "</Directory>\n"
                "WSGIScriptAlias / app/app.wsgi process-group=g2\n",
                "app/.htaccess": "WSGIProcessGroup g1\n",
            },
            {"process_group": ("g2", "site.conf:6 (process-group=)")},
        ),
        id="process-group-option-over-htaccess",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "WSGIDaemonProcess g\n"
                "WSGICallableObject app\n"
                "WSGIScriptAlias / app/app.wsgi process-group=g\n"
            },
            {"process_group": (EMBEDDED, COMMAND_LINE), "callable": ("cli", COMMAND_LINE)},
            overrides={
                "process_group": Setting(EMBEDDED, "x"),
                "callable": Setting("cli", "y"),
            },
        ),
        id="command-line-over-everything",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "WSGIDaemonProcess g\n"
                "WSGIProcessGroup g\n"
                "<VirtualHost *:80>\n"
                "    WSGIProcessGroup %{GLOBAL}\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n"
            },
            {"process_group": (EMBEDDED, "site.conf:4")},
            vhost=0,
        ),
        id="global-in-vhost-over-server-group",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "WSGIDaemonProcess g\n"
                "<Directory {root}/app>\n"
                "    WSGIProcessGroup g\n"
                "</Directory>\n" + APP
            },
            {"process_group": ("g", "site.conf:3")},
        ),
        id="group-from-directory",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<IfModule mod_wsgi.c>\n"
                "    WSGICallableObject a\n"
                "</IfModule>\n"
                "<IfModule wsgi_module>\n"
                "    WSGIScriptReloading Off\n"
                "</IfModule>\n" + APP
            },
            {"callable": ("a", "site.conf:2"), "script_reloading": (False, "site.conf:5")},
        ),
        id="ifmodule-wsgi-taken",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<IfModule !mod_wsgi.c>\n"
                "    Bogus directive\n"
                "    WSGICallableObject not-even-an-identifier\n"
                "</IfModule>\n"
                "<IfModule mod_ssl.c>\n"
                "    SSLEngine on\n"
                "    <Directory relative>\n"
                "    </Directory>\n"
                "</IfModule>\n" + APP
            },
            {},
        ),
        id="ifmodule-not-wsgi-skipped-unchecked",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<IfModule !mod_ssl.c>\n"
                "    <IfModule mod_wsgi.c>\n"
                "        WSGICallableObject nested\n"
                "    </IfModule>\n"
                "</IfModule>\n" + APP
            },
            {"callable": ("nested", "site.conf:3")},
        ),
        id="ifmodule-negated-other-module-taken",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<ifmodule !mod_ssl.c>\n"
                "<virtualhost *:80>\n"
                "wsgicallableobject lower\n"
                "WSGISCRIPTALIAS / app/app.wsgi\n"
                "</VIRTUALHOST>\n"
                "</IFMODULE>\n"
            },
            {"callable": ("lower", "site.conf:3")},
            vhost=0,
        ),
        id="names-not-case-sensitive",
    ),
    pytest.param(
        Case(
            {"site.conf": "# comment\n\nWSGICallableObject \\\n    cont\n" + APP},
            {"callable": ("cont", "site.conf:3")},
        ),
        id="continued-line-origin-is-its-first-line",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "Include conf/extra.conf\n" + APP,
                "conf/extra.conf": "# extra\nWSGICallableObject inc\n",
            },
            {"callable": ("inc", "conf/extra.conf:2")},
        ),
        id="include-file",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "Include conf.d\n" + APP,
                "conf.d/a.conf": "WSGICallableObject a\nWSGIScriptReloading Off\n",
                "conf.d/b.conf": "WSGICallableObject b\n",
            },
            {"callable": ("b", "conf.d/b.conf:1"), "script_reloading": (False, "conf.d/a.conf:2")},
        ),
        id="include-folder-in-name-order",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "Include conf.d\n" + APP,
                "conf.d/a.conf": "WSGICallableObject a\n",
                "conf.d/m/x.conf": "WSGICallableObject m\n",
                "conf.d/z.conf": "WSGICallableObject z\n",
            },
            {"callable": ("z", "conf.d/z.conf:1")},
        ),
        id="include-folder-subfolder-sorted-with-files",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "Include conf.d/*.conf\n" + APP,
                "conf.d/b.conf": "WSGICallableObject b\n",
                "conf.d/a.conf": "WSGICallableObject a\n",
                "conf.d/notes.txt": "not a config file\n",
            },
            {"callable": ("b", "conf.d/b.conf:1")},
        ),
        id="include-wildcard",
    ),
    pytest.param(
        Case(
            {"site.conf": "IncludeOptional missing/*.conf\nIncludeOptional missing.conf\n" + APP},
            {},
        ),
        id="includeoptional-of-nothing",
    ),
    pytest.param(
        Case(
            {
                "site.conf": "<VirtualHost *:80>\n"
                "    Include vhost.conf\n"
                "    WSGIScriptAlias / app/app.wsgi\n"
                "</VirtualHost>\n",
                "vhost.conf": "ServerAlias www.test\nWSGICallableObject invhost\n",
            },
            {"callable": ("invhost", "vhost.conf:2")},
            vhost=0,
        ),
        id="include-inside-vhost",
    ),
]


@pytest.mark.parametrize("case", PRECEDENCE)
def test_effective_settings(tmp_path: Path, case: Case) -> None:
    site = build(tmp_path, case.files, case.overrides)
    mount = find_mount(site, case.vhost, case.path)
    want = {name: (s.value, s.origin) for name, s in MOUNT_DEFAULTS.items()}
    want.update({name: (v, at(tmp_path, o)) for name, (v, o) in case.expected.items()})
    assert effective(site, mount) == want


def test_htaccess_path_only_where_allowed(tmp_path: Path) -> None:
    site = build(
        tmp_path,
        {
            "site.conf": "<Directory {root}/app>\n    AllowOverride FileInfo\n</Directory>\n"
            "WSGIScriptAlias /a app/app.wsgi\n"
            "WSGIScriptAlias /o other/other.wsgi\n",
            "other/.htaccess": "this would be an error if it were read\n",
        },
    )
    assert find_mount(site, None, "/a").htaccess == str(tmp_path / "app" / ".htaccess")
    assert find_mount(site, None, "/o").htaccess == ""
    assert site.htaccess == {str(tmp_path / "app" / ".htaccess"): {}}


# --------------------------------------------------------------------------------------
# read_site: virtual hosts and inherited mounts
# --------------------------------------------------------------------------------------

VHOSTS = """\
WSGIScriptAlias /shared other/other.wsgi
WSGIScriptAlias /deep app/sub/deep.wsgi
<VirtualHost *:80 127.0.0.1:8080>
    ServerName WWW.Example.COM:80
    ServerAlias example.com *.Example.com
    WSGICallableObject inA
    WSGIScriptAlias / app/app.wsgi
</VirtualHost>
<VirtualHost [::1]:*>
    ServerName http://docs.test
    WSGIScriptAlias /shared/ app/app.wsgi
</VirtualHost>
"""


@pytest.mark.parametrize(
    ("vhost", "mounts"),
    [
        pytest.param(
            None,
            [
                ("/shared", "other/other.wsgi", "site.conf:1"),
                ("/deep", "app/sub/deep.wsgi", "site.conf:2"),
            ],
            id="main-server",
        ),
        pytest.param(
            0,
            [
                ("", "app/app.wsgi", "site.conf:7"),
                ("/shared", "other/other.wsgi", "site.conf:1"),
                ("/deep", "app/sub/deep.wsgi", "site.conf:2"),
            ],
            id="vhost-inherits-server-mounts",
        ),
        pytest.param(
            1,
            [
                ("/shared", "app/app.wsgi", "site.conf:11"),
                ("/deep", "app/sub/deep.wsgi", "site.conf:2"),
            ],
            id="vhost-mount-shadows-server-mount",
        ),
    ],
)
def test_vhost_mounts(
    tmp_path: Path, vhost: int | None, mounts: list[tuple[str, str, str]]
) -> None:
    site = build(tmp_path, {"site.conf": VHOSTS})
    got = site.mounts if vhost is None else site.vhosts[vhost].mounts
    assert [(m.path, m.script, m.origin) for m in got] == [
        (p, str(tmp_path / s), at(tmp_path, o)) for p, s, o in mounts
    ]


def test_vhost_names_and_addresses(tmp_path: Path) -> None:
    site = build(tmp_path, {"site.conf": VHOSTS})
    got = [(v.addresses, v.server_name, v.aliases, v.origin) for v in site.vhosts]
    assert got == [
        (
            (("*", "80"), ("127.0.0.1", "8080")),
            "www.example.com",
            ("example.com", "*.example.com"),
            at(tmp_path, "site.conf:3"),
        ),
        ((("::1", "*"),), "docs.test", (), at(tmp_path, "site.conf:9")),
    ]


def test_inherited_mount_takes_the_vhost_settings(tmp_path: Path) -> None:
    site = build(tmp_path, {"site.conf": VHOSTS})
    assert effective(site, find_mount(site, 0, "/shared"))["callable"] == (
        "inA",
        at(tmp_path, "site.conf:6"),
    )
    assert effective(site, find_mount(site, None, "/shared"))["callable"] == (
        "application",
        DEFAULT,
    )


# --------------------------------------------------------------------------------------
# read_site: WSGIDaemonProcess and Listen
# --------------------------------------------------------------------------------------

GROUP_DEFAULTS: dict[str, Any] = {
    "processes": 1,
    "threads": 15,
    "graceful_timeout": 15.0,
    "shutdown_timeout": 5.0,
    "maximum_requests": 0,
    "restart_interval": 0.0,
    "request_timeout": 0.0,
    "display_name": "",
    "given": (),
    "vhost": -1,
    "title": "asyncwsgi: daemon g",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("WSGIDaemonProcess g", {}, id="defaults"),
        pytest.param(
            "WSGIDaemonProcess g processes=3 threads=4 graceful-timeout=2.5 shutdown-timeout=1 "
            "maximum-requests=100 restart-interval=60 request-timeout=30 display-name=%{GROUP}",
            {
                "processes": 3,
                "threads": 4,
                "graceful_timeout": 2.5,
                "shutdown_timeout": 1.0,
                "maximum_requests": 100,
                "restart_interval": 60.0,
                "request_timeout": 30.0,
                "display_name": "%{GROUP}",
                "given": (
                    "processes",
                    "threads",
                    "graceful_timeout",
                    "shutdown_timeout",
                    "maximum_requests",
                    "restart_interval",
                    "request_timeout",
                    "display_name",
                ),
                "title": "(wsgi:g)",
            },
            id="every-option",
        ),
        pytest.param(
            'WSGIDaemonProcess g "display-name=my app" Threads=2',
            {
                "display_name": "my app",
                "title": "my app",
                "threads": 2,
                "given": ("display_name", "threads"),
            },
            id="quoted-display-name-and-option-case",
        ),
        pytest.param(
            "<VirtualHost *:80>\nWSGIDaemonProcess g\n</VirtualHost>",
            {"vhost": 0, "origin_line": 2},
            id="in-a-vhost",
        ),
    ],
)
def test_daemon_group(tmp_path: Path, text: str, expected: dict[str, Any]) -> None:
    site = build(tmp_path, {"site.conf": text + "\n" + APP})
    assert [g.name for g in site.groups] == ["g"]
    group = site.group("g")
    assert group is not None
    want = {**GROUP_DEFAULTS, **expected}
    line = want.pop("origin_line", 1)
    assert {key: getattr(group, key) for key in want} == want
    assert group.origin == at(tmp_path, f"site.conf:{line}")


@pytest.mark.parametrize(
    ("words", "address"),
    [
        pytest.param("80", BindAddress("tcp", host="0.0.0.0", port=80), id="port"),
        pytest.param("127.0.0.1:8080", BindAddress("tcp", host="127.0.0.1", port=8080), id="ipv4"),
        pytest.param("[::1]:8080", BindAddress("tcp", host="::1", port=8080), id="ipv6"),
        pytest.param(
            "8080 http", BindAddress("tcp", host="0.0.0.0", port=8080), id="protocol-http"
        ),
    ],
)
def test_listen(tmp_path: Path, words: str, address: BindAddress) -> None:
    site = build(tmp_path, {"site.conf": f"Listen {words}\n" + APP})
    assert site.listen == ((address, at(tmp_path, "site.conf:1")),)


def test_listen_several(tmp_path: Path) -> None:
    site = build(tmp_path, {"site.conf": "Listen 80\n" + APP + "Listen [::1]:80\n"})
    assert [(str(a), o) for a, o in site.listen] == [
        ("0.0.0.0:80", at(tmp_path, "site.conf:1")),
        ("[::1]:80", at(tmp_path, "site.conf:3")),
    ]


# --------------------------------------------------------------------------------------
# read_site: errors name FILE:LINE
# --------------------------------------------------------------------------------------


@dataclass
class Error:
    files: dict[str, str]
    where: str  # "FILE:LINE" under tmp_path
    fragment: str
    overrides: Layer | None = field(default=None)


def err(conf: str, line: int, fragment: str, **files: str) -> Error:
    return Error({"site.conf": conf, **files}, f"site.conf:{line}", fragment)


ALLOW_APP = "<Directory {root}/app>\n    AllowOverride FileInfo\n</Directory>\n" + APP

ERRORS = [
    pytest.param(
        err(APP + "RewriteRule ^ - [L]\n", 2, "unknown directive 'RewriteRule'"),
        id="unknown-directive",
    ),
    pytest.param(
        err("AllowOverride All\n" + APP, 1, "AllowOverride is not allowed in server config"),
        id="allowoverride-at-server",
    ),
    pytest.param(
        err("ServerAlias a.test\n" + APP, 1, "ServerAlias is not allowed in server config"),
        id="serveralias-at-server",
    ),
    pytest.param(
        err(
            "<Directory /srv>\n  WSGIScriptAlias / app/app.wsgi\n</Directory>\n",
            2,
            "WSGIScriptAlias is not allowed in <Directory>",
        ),
        id="scriptalias-in-directory",
    ),
    pytest.param(
        err(
            "<Directory /a>\n<Directory /a/b>\n</Directory>\n</Directory>\n" + APP,
            2,
            "not allowed in <Directory>",
        ),
        id="directory-in-directory",
    ),
    pytest.param(
        Error(
            {"site.conf": ALLOW_APP, "app/.htaccess": "\nWSGIDaemonProcess g\n"},
            "app/.htaccess:2",
            "WSGIDaemonProcess is not allowed in .htaccess",
        ),
        id="daemonprocess-in-htaccess",
    ),
    pytest.param(
        Error(
            {
                "site.conf": ALLOW_APP,
                "app/.htaccess": "# ok\nWSGIScriptReloading Off\nRewriteEngine On\n",
            },
            "app/.htaccess:3",
            "unknown directive 'RewriteEngine'",
        ),
        id="bad-htaccess-line",
    ),
    pytest.param(
        Error(
            {"site.conf": ALLOW_APP, "app/.htaccess": "Include ../x.conf\n", "x.conf": ""},
            "app/.htaccess:1",
            "Include is not allowed in .htaccess",
        ),
        id="include-in-htaccess",
    ),
    pytest.param(
        err("WSGIScriptReloading yes\n" + APP, 1, "takes On or Off, not 'yes'"), id="bad-on-off"
    ),
    pytest.param(
        err(APP + "WSGICallableObject my-app\n", 2, "is not a Python identifier"), id="bad-callable"
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g processes=two\n" + APP,
            1,
            "processes='two': expected a positive whole number",
        ),
        id="processes-not-a-number",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g threads=0\n" + APP,
            1,
            "threads='0': expected a positive whole number",
        ),
        id="threads-zero",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g graceful-timeout=0\n" + APP,
            1,
            "expected a positive number of seconds",
        ),
        id="graceful-timeout-zero",
    ),
    pytest.param(
        err("WSGIDaemonProcess g request-timeout=nan\n" + APP, 1, "request-timeout='nan'"),
        id="request-timeout-nan",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g cpu-time-limit=9\n" + APP,
            1,
            "option cpu-time-limit=: not supported",
        ),
        id="unknown-daemon-option",
    ),
    pytest.param(
        err("WSGIDaemonProcess g processes\n" + APP, 1, "'processes' is not an option=value pair"),
        id="option-without-value",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g\n" + APP + "WSGIDaemonProcess g threads=1\n",
            3,
            "WSGIDaemonProcess g: already defined at ",
        ),
        id="duplicate-group",
    ),
    pytest.param(
        err(
            "Listen 8080\n" + APP + "Listen 0.0.0.0:8080\n",
            3,
            "Listen 0.0.0.0:8080: already given at ",
        ),
        id="duplicate-listen",
    ),
    pytest.param(err("Listen 443 https\n" + APP, 1, "protocol 'https'"), id="listen-https"),
    pytest.param(
        err(
            "WSGIScriptAlias /app app/app.wsgi\nWSGIScriptAlias /app/ other/other.wsgi\n",
            2,
            "already mounted at ",
        ),
        id="duplicate-mount-path",
    ),
    pytest.param(
        err("WSGIScriptAlias app app/app.wsgi\n", 1, "must start with '/'"),
        id="mount-path-not-absolute",
    ),
    pytest.param(
        err("\nWSGIScriptAlias / app/missing.wsgi\n", 2, "missing.wsgi' does not exist"),
        id="missing-script",
    ),
    pytest.param(err("WSGIScriptAlias / app\n", 1, "is a folder"), id="script-is-a-folder"),
    pytest.param(
        err(
            "WSGIProcessGroup nosuch\n\n" + APP,
            1,
            "no WSGIDaemonProcess named 'nosuch' (groups: none defined)",
        ),
        id="missing-group-from-server-line",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g\n" + "WSGIScriptAlias / app/app.wsgi process-group=nosuch\n",
            2,
            "no WSGIDaemonProcess named 'nosuch' (groups: g)",
        ),
        id="missing-group-from-alias-option",
    ),
    pytest.param(
        Error(
            {"site.conf": ALLOW_APP, "app/.htaccess": "\n\nWSGIProcessGroup nosuch\n"},
            "app/.htaccess:3",
            "no WSGIDaemonProcess named 'nosuch'",
        ),
        id="missing-group-from-htaccess",
    ),
    pytest.param(
        Error(
            {"site.conf": "\n" + APP},
            "site.conf:2",
            "no WSGIDaemonProcess named 'cli'",
            {"process_group": Setting("cli", "x")},
        ),
        id="missing-group-from-command-line",
    ),
    pytest.param(
        err(
            "<VirtualHost *:80>\n  WSGIDaemonProcess g\n</VirtualHost>\n"
            "<VirtualHost *:81>\n  WSGIProcessGroup g\n"
            "  WSGIScriptAlias / app/app.wsgi\n</VirtualHost>\n",
            5,
            "daemon group 'g' is defined inside another <VirtualHost>",
        ),
        id="group-of-another-vhost",
    ),
    pytest.param(
        err(
            "<VirtualHost *:80>\n  WSGIDaemonProcess g\n</VirtualHost>\n"
            "WSGIScriptAlias / app/app.wsgi process-group=g\n",
            4,
            "is defined inside another <VirtualHost>",
        ),
        id="vhost-group-used-by-main-server",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g\nWSGIProcessGroup g\n"
            "WSGIScriptAlias /a app/app.wsgi\nWSGIScriptAlias /o other/other.wsgi\n",
            4,
            "daemon group 'g' already runs ",
        ),
        id="two-scripts-one-group",
    ),
    pytest.param(
        err(
            "WSGIDaemonProcess g\nWSGIProcessGroup g\nWSGIScriptAlias /a app/app.wsgi\n"
            "<VirtualHost *:80>\n  WSGICallableObject other\n</VirtualHost>\n",
            3,
            "daemon group 'g' already runs ",
        ),
        id="one-script-two-callables-one-group",
    ),
    pytest.param(
        err("<Directory srv/app>\n</Directory>\n" + APP, 1, "give an absolute path"),
        id="relative-directory",
    ),
    pytest.param(
        err(
            '<Directory ~ "^/srv">\n</Directory>\n' + APP, 1, "<Directory ~ regex> is not supported"
        ),
        id="regex-directory",
    ),
    pytest.param(
        err(
            "<Directory /srv>\n  AllowOverride Everything\n</Directory>\n" + APP,
            2,
            "'Everything' is not an override class",
        ),
        id="bad-override-class",
    ),
    pytest.param(
        err(APP + "<VirtualHost *:80>\n  ServerName a\n", 2, "<VirtualHost> has no </VirtualHost>"),
        id="section-not-closed",
    ),
    pytest.param(
        err(APP + "Include nothing.conf\n", 2, "no such file or folder 'nothing.conf'"),
        id="include-nothing",
    ),
    pytest.param(
        err(APP + "Include conf.d/*.conf\n", 2, "no file matches 'conf.d/*.conf'"),
        id="include-wildcard-nothing",
    ),
    pytest.param(err(APP + "Include site.conf\n", 2, "(a loop?)"), id="include-loop"),
    pytest.param(
        err("WSGIDaemonProcess embedded\n" + APP, 1, "'embedded' names the mounts"),
        id="group-named-embedded",
    ),
    pytest.param(
        Error(
            {"site.conf": "Include a.conf\n" + APP, "a.conf": "\nWSGICallableObject 1x\n"},
            "a.conf:2",
            "not a Python identifier",
        ),
        id="error-in-included-file",
    ),
]


@pytest.mark.parametrize("case", ERRORS)
def test_errors(tmp_path: Path, case: Error) -> None:
    with pytest.raises(ConfigFileError) as info:
        build(tmp_path, case.files, case.overrides)
    message = str(info.value)
    assert message.startswith(at(tmp_path, case.where) + ": "), message
    assert case.fragment in message


@pytest.mark.parametrize(
    "module", [pytest.param("!mod_wsgi.c", id="not-wsgi"), pytest.param("mod_ssl.c", id="other")]
)
def test_include_in_skipped_ifmodule_not_followed(tmp_path: Path, module: str) -> None:
    conf = f"<IfModule {module}>\n  Include nothing.conf\n</IfModule>\n" + APP
    site = build(tmp_path, {"site.conf": conf})
    assert [m.path for m in site.mounts] == [""]


def test_nothing_to_serve(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as info:
        build(tmp_path, {"site.conf": "Listen 80\n"})
    assert str(info.value) == f"{tmp_path}/site.conf: no WSGIScriptAlias: nothing to serve"


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^.*missing\.conf: cannot read: "):
        read_site(str(tmp_path / "missing.conf"))


@pytest.mark.parametrize(
    ("conf", "line"),
    [
        pytest.param("WSGIProcessGroup nosuch\n" + APP, 1, id="from-group-line"),
        pytest.param("WSGIScriptAlias / app/app.wsgi process-group=nosuch\n", 1, id="from-alias"),
    ],
)
def test_missing_group_error_in_a_folder_with_a_blank(tmp_path: Path, conf: str, line: int) -> None:
    root = tmp_path / "my site"
    with pytest.raises(ConfigFileError) as info:
        build(root, {"site.conf": conf})
    assert str(info.value).startswith(f"{root}/site.conf:{line}: "), str(info.value)


# --------------------------------------------------------------------------------------
# parse_htaccess
# --------------------------------------------------------------------------------------

HTPATH = "/srv/app/.htaccess"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", {}, id="empty"),
        pytest.param(
            "WSGIScriptReloading Off\nwsgicallableobject app\n",
            {"script_reloading": (False, 1), "callable": ("app", 2)},
            id="two-settings",
        ),
        pytest.param(
            "WSGIProcessGroup a\nWSGIProcessGroup 'b'\n",
            {"process_group": ("b", 2)},
            id="later-wins",
        ),
        pytest.param("WSGIProcessGroup %{GLOBAL}\n", {"process_group": (EMBEDDED, 1)}, id="global"),
        pytest.param(
            "<IfModule mod_wsgi.c>\n  WSGIScriptReloading on\n</IfModule>\n"
            "<IfModule !mod_wsgi.c>\n  Whatever\n</IfModule>\n",
            {"script_reloading": (True, 2)},
            id="ifmodule",
        ),
    ],
)
def test_parse_htaccess(text: str, expected: dict[str, tuple[Any, int]]) -> None:
    layer = parse_htaccess(HTPATH, text)
    assert {k: (s.value, s.origin) for k, s in layer.items()} == {
        k: (v, f"{HTPATH}:{line}") for k, (v, line) in expected.items()
    }


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param("\nRedirect /a /b\n", 2, "unknown directive 'Redirect'", id="unknown"),
        pytest.param("WSGIDaemonProcess g\n", 1, "not allowed in .htaccess", id="daemon-process"),
        pytest.param("Include x.conf\n", 1, "Include is not allowed in .htaccess", id="include"),
        pytest.param(
            "<IfModule mod_wsgi.c>\nInclude x.conf\n</IfModule>\n",
            2,
            "not allowed in .htaccess",
            id="include-in-ifmodule",
        ),
        pytest.param("WSGIScriptReloading maybe\n", 1, "takes On or Off", id="bad-on-off"),
    ],
)
def test_parse_htaccess_errors(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_htaccess(HTPATH, text)
    message = str(info.value)
    assert message.startswith(f"{HTPATH}:{line}: "), message
    assert fragment in message


# --------------------------------------------------------------------------------------
# describe_site (--check-config)
# --------------------------------------------------------------------------------------

DESCRIBED = """\
Listen 127.0.0.1:8080
WSGIDaemonProcess shop processes=2 display-name=%{GROUP}
WSGIDaemonProcess idle
WSGIScriptReloading Off
<Directory {root}/app>
    AllowOverride FileInfo
</Directory>
<VirtualHost *:80>
    ServerName www.test
    ServerAlias alias.test
    WSGIScriptAlias /shop other/other.wsgi process-group=shop
    WSGIScriptAlias / app/app.wsgi
</VirtualHost>
"""


def test_describe_site_header(tmp_path: Path) -> None:
    site = build(tmp_path, {"site.conf": DESCRIBED})
    lines = describe_site(site, (), at(tmp_path, "site.conf")).splitlines()
    conf = at(tmp_path, "site.conf")
    assert lines[0] == f"{conf}: syntax OK"
    for line in (
        f"WSGIDaemonProcess shop  ({conf}:2)",
        f"    processes=2 ({conf}:2)",
        "    threads=15 (default)",
        f"    display-name='(wsgi:shop)' ({conf}:2)",
        f"WSGIDaemonProcess idle  ({conf}:3)  -- no application uses it; not started",
        "    display-name='asyncwsgi: daemon idle' (default)",
        f"<VirtualHost> www.test on *:80, aliases alias.test  ({conf}:8)",
    ):
        assert line in lines


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        pytest.param(
            "  /shop -> {root}/other/other.wsgi  ({root}/site.conf:11)",
            [
                ("WSGIScriptReloading", "Off", "{root}/site.conf:4"),
                ("WSGICallableObject", "application", "default"),
                ("WSGIProcessGroup", "shop", "{root}/site.conf:11 (process-group=)"),
            ],
            id="daemon-mount",
        ),
        pytest.param(
            "  / -> {root}/app/app.wsgi  ({root}/site.conf:12)",
            [
                ("WSGIScriptReloading", "Off", "{root}/site.conf:4"),
                ("WSGICallableObject", "app", "{root}/app/.htaccess:1"),
                ("WSGIProcessGroup", "%{GLOBAL} (embedded)", "default"),
                (".htaccess", "{root}/app/.htaccess", "(read; re-read when it changes)"),
            ],
            id="embedded-mount-with-htaccess",
        ),
    ],
)
def test_describe_site_mounts(
    tmp_path: Path, head: str, expected: list[tuple[str, str, str]]
) -> None:
    site = build(tmp_path, {"site.conf": DESCRIBED, "app/.htaccess": "WSGICallableObject app\n"})
    lines = describe_site(site, (), "FILE").splitlines()
    head = head.replace("{root}", str(tmp_path))
    assert head in lines
    start = lines.index(head) + 1
    block = lines[start : start + len(expected) + 1]
    for label, value, origin in expected:
        value, origin = (x.replace("{root}", str(tmp_path)) for x in (value, origin))
        pattern = rf"^    {re.escape(label)}\s+{re.escape(value)}\s+{re.escape(origin)}$"
        assert any(re.match(pattern, line) for line in block), (pattern, block)
    # the block ends with the mount: no .htaccess line where none is read
    assert len([line for line in block if line.startswith("    ")]) == len(expected)


@pytest.mark.parametrize(
    ("bind_origin", "listen_line"),
    [
        pytest.param("FILE", "Listen 127.0.0.1:8080  ({root}/site.conf:1)", id="from-the-file"),
        pytest.param(
            COMMAND_LINE, "Listen 10.0.0.1:9000  (command line)", id="from-the-command-line"
        ),
    ],
)
def test_describe_site_listen(tmp_path: Path, bind_origin: str, listen_line: str) -> None:
    site = build(tmp_path, {"site.conf": DESCRIBED})
    binds = (BindAddress("tcp", host="10.0.0.1", port=9000),)
    text = describe_site(site, binds, bind_origin)
    assert listen_line.replace("{root}", str(tmp_path)) in text.splitlines()


def test_vhost_without_server_name_has_the_main_servers(tmp_path: Path) -> None:
    conf = (
        "ServerName Main.Test\n<VirtualHost *:80>\n  WSGIScriptAlias / {root}/app/app.wsgi\n"
        "</VirtualHost>\n<VirtualHost *:80>\n  ServerName own.test\n"
        "  WSGIScriptAlias / {root}/app/app.wsgi\n</VirtualHost>\n"
    )
    site = build(tmp_path, {"site.conf": conf})
    assert [v.server_name for v in site.vhosts] == ["main.test", "own.test"]


def test_group_of_a_vhost_serves_the_vhosts_of_its_name(tmp_path: Path) -> None:
    # mod_wsgi: a group defined in a <VirtualHost> serves that ServerName, e.g. :80 and :443.
    conf = (
        "<VirtualHost *:80>\n  ServerName shop.test\n  WSGIDaemonProcess shop\n"
        "  WSGIScriptAlias / {root}/app/app.wsgi process-group=shop\n</VirtualHost>\n"
        "<VirtualHost *:443>\n  ServerName shop.test\n"
        "  WSGIScriptAlias / {root}/app/app.wsgi process-group=shop\n</VirtualHost>\n"
    )
    site = build(tmp_path, {"site.conf": conf})
    assert [len(v.mounts) for v in site.vhosts] == [1, 1]
    other = conf.replace("*:443>\n  ServerName shop.test", "*:443>\n  ServerName other.test")
    with pytest.raises(ConfigFileError, match=r"site\.conf:8: daemon group 'shop'"):
        build(tmp_path, {"site.conf": other})


def test_mount_paths_are_pep3333_strings(tmp_path: Path) -> None:
    site = build(tmp_path, {"site.conf": "WSGIScriptAlias /café {root}/app/app.wsgi\n"})
    assert site.mounts[0].path == "/café".encode().decode("latin-1")
    shown = describe_site(site, (BindAddress("tcp", host="127.0.0.1", port=80),), DEFAULT)
    assert "  /café -> " in shown


def test_command_line_daemon_options_and_any_port(tmp_path: Path) -> None:
    from asyncwsgi.sites.report import any_port, override_groups, unserved

    conf = (
        "WSGIDaemonProcess g maximum-requests=9 threads=3\n<VirtualHost 127.0.0.1:80>\n"
        "  WSGIScriptAlias / {root}/app/app.wsgi process-group=g\n</VirtualHost>\n"
    )
    site = override_groups(build(tmp_path, {"site.conf": conf}), {"maximum_requests": 5})
    group = site.groups[0]
    assert (group.maximum_requests, group.threads, group.overridden) == (
        5,
        3,
        ("maximum_requests",),
    )
    shown = describe_site(site, (BindAddress("tcp", host="127.0.0.1", port=80),), DEFAULT)
    assert "maximum-requests=5 (command line)" in shown
    assert f"threads=3 ({tmp_path / 'site.conf'}:1)\n" in shown
    bind = (BindAddress("tcp", host="127.0.0.1", port=8080),)
    assert unserved(site, bind) == ["127.0.0.1:8080"]
    assert "warning: requests to 127.0.0.1:8080 get 404" in describe_site(site, bind, DEFAULT)
    assert unserved(any_port(site), bind) == []
    assert any_port(site).vhosts[0].addresses == (("127.0.0.1", "*"),)
