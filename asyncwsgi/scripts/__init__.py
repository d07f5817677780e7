"""Loading a WSGI script file as a module, the per-tick stat cache, and reloading.

Rule: nothing in this package imports ``asyncwsgi.http``, ``asyncwsgi.server`` or
``asyncwsgi.daemon``.
"""
