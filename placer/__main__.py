"""``python -m placer`` runs the CLI."""

from placer.cli import app

app(prog_name="placer")
