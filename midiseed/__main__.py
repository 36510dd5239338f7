"""`python -m midiseed` is the `midiseed` command."""

from midiseed.cli import app

app(prog_name="midiseed")
