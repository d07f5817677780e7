"""Helpers to run Apache httpd + mod_wsgi as a benchmark peer (see modwsgi.py)."""
