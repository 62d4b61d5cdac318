"""A trigger that makes the database refuse some log rows and take the others.

It stands for a constraint the rows break: SQLite answers ``RAISE(ABORT)`` (a constraint
error), PostgreSQL ``RAISE EXCEPTION`` with the SQLSTATE given (by default P0001, a plain
``raise_exception``; ``check_violation`` is what a CHECK constraint would say). The
condition is SQL over ``NEW``, the row being inserted into ``request_logs``.
"""

from __future__ import annotations

NAME = "refuse_marked_rows"
MESSAGE = "marked row refused by a trigger"


def install(dialect: str, condition: str, errcode: str = "raise_exception") -> list[str]:
    """The statements that create the trigger (the condition is test-written SQL)."""
    if dialect == "sqlite":
        return [
            f"CREATE TRIGGER {NAME} BEFORE INSERT ON request_logs WHEN {condition} "
            f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END"
        ]
    return [
        f"CREATE FUNCTION {NAME}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF {condition} THEN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = '{errcode}'; "
        "END IF; RETURN NEW; END $$",
        f"CREATE TRIGGER {NAME} BEFORE INSERT ON request_logs FOR EACH ROW "
        f"EXECUTE FUNCTION {NAME}()",
    ]


def remove(dialect: str) -> list[str]:
    """The statements that drop it again: the cause fixed."""
    if dialect == "sqlite":
        return [f"DROP TRIGGER {NAME}"]
    return [f"DROP TRIGGER {NAME} ON request_logs", f"DROP FUNCTION {NAME}()"]
