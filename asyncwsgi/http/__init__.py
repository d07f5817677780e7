"""HTTP/1.1 on asyncio.Protocol, parsed by httptools.

Rule: nothing in this package imports ``asyncwsgi.wsgi``, ``asyncwsgi.scripts`` or
``asyncwsgi.daemon``. The application side is reached through the ``ApplicationRunner``
protocol in :mod:`asyncwsgi.http.state`.
"""
