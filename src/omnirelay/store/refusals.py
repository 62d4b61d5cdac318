"""Which failures mean the database refused a row's values, and how to name a failure.

A refusal is about the row: written again, unchanged, it fails again. Everything else (a
connection lost, a lock timeout, a deadlock, a read-only standby, disk full, a permission
missing) is about the database, and passes; the row is kept and written later. When in
doubt a failure is *not* a refusal, so nothing is set aside that a retry would have
written.

Refusals are:

- on PostgreSQL, SQLSTATE class 22 (data exception: an integer out of range, a value too
  long for its column, a NUL character, invalid JSON), class 23 (integrity constraint: a
  NOT NULL, CHECK or UNIQUE violation) and P0001 (a trigger's ``RAISE EXCEPTION``);
- on SQLite, the constraint errors (``SQLITE_CONSTRAINT_*``, also a trigger's
  ``RAISE(ABORT)``), ``SQLITE_TOOBIG`` and ``SQLITE_MISMATCH``;
- with any driver, SQLAlchemy's ``IntegrityError`` and ``DataError``;
- values that cannot even be sent: an integer beyond 64 bits (``OverflowError``), a string
  that is not valid Unicode or a value with no JSON form (``TypeError``, ``ValueError``),
  a row missing a column the statements need (``LookupError``).

A duplicate request id is a refusal too, but the writer tells it apart by looking the id
up: that row is already stored.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

REFUSING_SQLSTATE_CLASSES = ("22", "23")
REFUSING_SQLSTATES = ("P0001",)
REFUSING_SQLITE_ERRORS = ("SQLITE_CONSTRAINT", "SQLITE_TOOBIG", "SQLITE_MISMATCH")
UNSENDABLE = (OverflowError, TypeError, ValueError, LookupError)
MAX_MESSAGE_CHARS = 500


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` says the row itself is unacceptable, not the database unavailable."""
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return False
        if isinstance(error, IntegrityError | DataError):
            return True
        return _refused_by_code(error.orig)
    if isinstance(error, StatementError):  # raised while binding, before the database
        return isinstance(error.orig, UNSENDABLE)
    return isinstance(error, UNSENDABLE)


def _refused_by_code(orig: BaseException | None) -> bool:
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in REFUSING_SQLSTATE_CLASSES or sqlstate in REFUSING_SQLSTATES
    name = getattr(orig, "sqlite_errorname", None)
    return isinstance(name, str) and name.startswith(REFUSING_SQLITE_ERRORS)


def traceable(error: BaseException) -> bool:
    """Whether a failure's traceback may be logged: SQLAlchemy's own text of a statement's
    failure holds the statement's parameters (the rows), which stay out of the log."""
    return not isinstance(error, StatementError)


def describe(error: BaseException) -> tuple[str, str]:
    """The failure's class and message, from the driver when there is one.

    SQLAlchemy's own message would add the statement and its parameters (every row of the
    batch), and PostgreSQL's DETAIL line may repeat the failing row: only the driver's
    first line is kept, which says what went wrong.
    """
    cause: BaseException = error
    if isinstance(error, StatementError) and error.orig is not None:
        cause = error.orig
        # asyncpg's error reaches SQLAlchemy wrapped in an adapter named plainly "Error".
        if isinstance(cause.__cause__, Exception):
            cause = cause.__cause__
    kind = type(cause)
    module = kind.__module__
    name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
    text = str(cause).replace("\x00", "\\x00").encode("utf-8", "replace").decode("utf-8")
    lines = text.splitlines() or [""]
    return name, lines[0].strip()[:MAX_MESSAGE_CHARS]
