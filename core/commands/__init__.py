"""One module per `python -m core` command; each defines `register(subparsers)`."""

from __future__ import annotations

import errno
import functools
import pickle
import sys
from pathlib import Path

from core.config import HomeError, check_home, get_settings, home_problem


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line of text (first line of its message, shortened)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def guarded(func):
    """A command function whose home-folder and database failures (full, read-only, missing, a
    file, unreachable) end as one line on stderr and exit status 1, never as a traceback."""

    @functools.wraps(func)
    def run(args) -> int:
        try:
            return func(args)
        except HomeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except (OSError, *_db_errors()) as exc:
            if isinstance(exc, OSError) and (not _about_home(exc) or home_problem(exc) is None):
                raise
            why = home_problem(exc) or f"the database cannot be used: {one_line(getattr(exc, 'orig', None) or exc)}"
            print(f"error: {why}", file=sys.stderr)
            return 1

    return run


def open_repository():
    """`Store.open()` after checking NEUROGRADE_HOME when the database lives there (SQLite);
    HomeError with a clear message when the home is missing, a file, read-only or full."""
    from core.store import Store  # heavy: sqlalchemy; core.commands stays light for the CLI

    settings = get_settings()
    check_home(settings)  # the SQLite database, job logs and user models live there
    repo = Store.open()
    from core.store.jobs import reap_quietly  # heavy: sqlalchemy; core.commands stays light for the CLI

    reap_quietly(repo)  # a killed worker's job does not stay "running"
    return repo


def _about_home(exc: OSError) -> bool:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    home = get_settings().home
    for name in (exc.filename, getattr(exc, "filename2", None)):
        if name:
            try:
                if Path(str(name)).resolve().is_relative_to(home.resolve()):
                    return True
            except (OSError, RuntimeError):
                continue
    return False


def _db_errors():
    try:
        from sqlalchemy.exc import DBAPIError, OperationalError  # heavy: sqlalchemy; the CLI parser stays light

        return (OperationalError, DBAPIError)
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        return ()


def model_errors() -> tuple:
    """What loading a model version raises when the version cannot be trusted or found: checksum
    mismatch, unsafe pickle (model or int8 observers), unknown version, missing file, a
    calibration that does not fit. Commands print these as one line (`model_error_text`)."""
    from model_zoo import CheckpointError  # heavy: torch; core.commands stays light for the CLI

    return (CheckpointError, pickle.UnpicklingError, KeyError, FileNotFoundError, ValueError)


def model_error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return one_line(str(exc.args[0]))
    text = one_line(exc)
    if "weights_only" in str(exc) or "Weights only load failed" in str(exc):
        text = (
            "the file holds objects other than tensors (an unsafe pickle) and was refused; "
            "re-create it with `python -m core quantize` or retrain the version"
        )
    return text
