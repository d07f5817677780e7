"""Static files served by the server itself: ``Alias`` in a config file, ``--static``.

``files`` decides (which file, which status, which bytes); ``mount`` serves one mount's
files from worker threads with ``os.sendfile``.
"""
