"""The Typer app, logging set-up and the one place that turns user errors into exit status 2."""

from __future__ import annotations

import difflib
import functools
import logging
import os
import sys

import typer
from typer.core import TyperGroup

try:  # the click that Typer carries within it (Typer 0.17 and later), or click itself
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:
    from click.exceptions import ClickException, NoArgsIsHelpError

from midiseed.errors import UserError


def _close(typo: str, option: str) -> bool:
    # click compares "--bogus" with "--verbose" including the dashes, which alone make them look alike
    return difflib.SequenceMatcher(None, typo.lstrip("-"), option.lstrip("-")).ratio() >= 0.6


class _Group(TyperGroup):
    """Typer's group, minus click's far-fetched "Possible options" for a mistyped option, and with
    usage errors (a value out of range, a missing option) as one line, as every other user error
    is, not Typer's six-line box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as err:
            if isinstance(err, NoArgsIsHelpError):  # `midiseed` alone: the help, as Typer shows it
                return super().main(args, prog_name, complete_var, **extra)
            ctx = getattr(err, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"error: {err.format_message()}{where}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:  # end of input at a prompt, as click's own main says it
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)  # an Exit's status (commands return None)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as err:  # click's NoSuchOption (vendored by newer Typer): re-raised as it is
            if type(err).__name__ == "NoSuchOption" and getattr(err, "possibilities", None):
                err.possibilities = [p for p in err.possibilities if _close(err.option_name, p)]
            raise


app = typer.Typer(no_args_is_help=True, add_completion=False, help="A real-time MIDI generator.", cls=_Group)
data_app = typer.Typer(no_args_is_help=True, help="Prepare training data.", cls=_Group)
app.add_typer(data_app, name="data")

log = logging.getLogger("midiseed")


def setup_logging(verbose: bool = False) -> None:
    """Log lines to stderr (the CLI's own output goes to stdout)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def user_errors(fn):
    """Turn the errors a user can cause into one line on stderr and exit status 2: `UserError`,
    and an OSError about a path (a folder given where a file goes, a file where a folder goes, a
    folder that does not exist, no permission, a full disk). Anything else is a bug: it keeps its
    traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        except OSError as err:
            if err.filename is None or isinstance(err, BrokenPipeError):
                raise
            also = f" -> {err.filename2}" if getattr(err, "filename2", None) else ""
            typer.echo(f"error: {err.filename}{also}: {err.strerror or err}", err=True)
            raise typer.Exit(2) from None

    return wrapper
