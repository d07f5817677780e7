"""PEP 3333: environ, ``wsgi.input``, ``start_response``/``write``, thread-pool dispatch.

Rule: nothing in this package imports ``asyncwsgi.http``, ``asyncwsgi.server`` or
``asyncwsgi.daemon``. A request reaches it as an object with the shape of
:class:`asyncwsgi.wsgi.types.Exchange`.
"""
