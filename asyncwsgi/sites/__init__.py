"""Serving an Apache/mod_wsgi config file (``--config``): one package for the feature.

``syntax`` reads Apache's file syntax, ``directives`` turns the directives into a
``model.Site`` (virtual hosts, mounts, daemon groups, each setting with where it came
from), ``report`` applies the command line to it and prints ``--check-config``,
``routing`` picks the virtual host and mount of a request, and ``runner`` serves the site.
"""
