"""``python -m asyncwsgi``."""

from asyncwsgi.cli import entry

if __name__ == "__main__":
    entry()
