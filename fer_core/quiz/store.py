"""The quiz store: rounds opened to a class and the answers given, in a SQLite file of their own.

``data/quiz.sqlite3``, never the job store: it is the one thing a read-only server writes (its
students' answers), so it holds nothing else, and a read-only server never creates it (the
lecturer's full server or the command line opens the first round). Every rule is checked inside
the transaction that writes (``BEGIN IMMEDIATE``), so sessions answering at once can neither lose
an answer nor pass a limit together:

- a round accepts answers from when it is opened until it is closed or its hours are up
  (``FER_QUIZ_HOURS``: whole hours, default 3, at most 24); a closed or expired round accepts nothing;
- an answer names a face of the round and one of its classes; a session answers a face once
  (a second answer is refused), so it gives a round at most its faces' worth (``FER_QUIZ_MAX_FACES``);
- at most ``FER_QUIZ_OPEN_ROUNDS`` rounds (default 5) are open at once, at most
  ``FER_QUIZ_SESSIONS`` sessions (default 200) answer one round, and the store holds at most
  ``FER_QUIZ_MAX_ANSWERS`` answers in all (default 100,000; ``quiz delete`` frees them).

No names: a session is a random id its page makes; a nickname (at most 20 characters) is kept
only when the round allows nicknames. A refused answer is stored nowhere.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from fer_core.config import check_writable, data_dir, env_number, read_only
from fer_core.errors import ConfigError, QuizError
from fer_core.quiz.rounds import NICKNAME_CHARS, Round, results

STORE_FILE = "quiz.sqlite3"
BUSY_TIMEOUT_S = 30
#: Codes are four letters without the ones read for digits or for each other (I, L, O).
CODE_LETTERS = "ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 4
SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    code TEXT PRIMARY KEY,
    round TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    closed REAL
);
CREATE TABLE IF NOT EXISTS answers (
    code TEXT NOT NULL,
    session TEXT NOT NULL,
    face INTEGER NOT NULL,
    choice INTEGER,
    nickname TEXT,
    at REAL NOT NULL,
    PRIMARY KEY (code, session, face)
);
"""


MAX_HOURS = 24


def limits() -> dict[str, int]:
    """The store's limits, from the environment (see the module); whole hours, at most a day."""
    return {"hours": min(env_number("FER_QUIZ_HOURS"), MAX_HOURS),
            "open_rounds": env_number("FER_QUIZ_OPEN_ROUNDS"),
            "sessions": env_number("FER_QUIZ_SESSIONS"), "answers": env_number("FER_QUIZ_MAX_ANSWERS")}


def check_hours(hours: float | None) -> float:
    """How long a round stays open: ``hours``, or the setting's default; ConfigError out of (0, 24]."""
    hours = limits()["hours"] if hours is None else hours
    if not 0 < hours <= MAX_HOURS:
        raise ConfigError(f"hours: {hours} is not above 0 and at most {MAX_HOURS}.", field="hours")
    return hours


def store_path() -> Path:
    return data_dir(create=False) / STORE_FILE


def normal_code(code: str) -> str:
    """A code as typed (any case, spaces around) in its stored form."""
    return str(code or "").strip().upper()


class QuizStore:
    """The quiz store's file (see the module); one connection per store object, safe to share
    between threads (each call takes the connection's lock)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else store_path()
        self.lock = threading.RLock()
        try:
            if read_only():  # answers only: the file must be there, made by the lecturer's side
                if not self.path.is_file():
                    raise QuizError("No quiz round is open on this server: check the code with your lecturer.")
                self.conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                                            timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                            check_same_thread=False)
            self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
            if not read_only():
                self.conn.execute("PRAGMA journal_mode = WAL")
                self.conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise QuizError(f"Cannot open the quiz store {self.path}: {exc}. Check that the data folder is "
                            "writable (answers are written there, even by a read-only server).") from None

    def __enter__(self) -> "QuizStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close_store()

    def close_store(self) -> None:
        self.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (``BEGIN IMMEDIATE``: the checks and the write are atomic)."""
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise QuizError(f"The quiz store {self.path} is busy or not writable ({exc}); try again.") from None
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise QuizError(f"The quiz store {self.path} could not record it ({exc}); try again.") from None
                raise

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            with self.lock:
                return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise QuizError(f"The quiz store {self.path} cannot be read ({exc}); try again.") from None

    # ------------------------------------------------------------------------ rounds
    def open_round(self, rnd: Round, *, hours: float | None = None, nicknames: bool = False,
                   now: float | None = None) -> Round:
        """Store a copy of ``rnd`` under a new code, open until closed or ``hours`` from now; returns
        the copy, with its code and times. Raises QuizError when the open rounds are at their limit."""
        check_writable("Opening a quiz round")
        now = time.time() if now is None else now
        lim, hours = limits(), check_hours(hours)
        with self._write() as conn:
            open_now = conn.execute("SELECT COUNT(*) FROM rounds WHERE closed IS NULL AND expires > ?",
                                    (now,)).fetchone()[0]
            if open_now >= lim["open_rounds"]:
                raise QuizError(f"{open_now} rounds are open, the most this server allows at once "
                                "(FER_QUIZ_OPEN_ROUNDS): close one first (quiz close CODE, or on the board).")
            taken = {r[0] for r in conn.execute("SELECT code FROM rounds")}
            code = new_code(taken)
            rnd = replace(rnd, code=code, created=now, expires=now + hours * 3600, closed=None, nicknames=nicknames)
            conn.execute("INSERT INTO rounds (code, round, created, expires, closed) VALUES (?, ?, ?, ?, NULL)",
                         (code, json.dumps(rnd.to_json()), now, rnd.expires))
        return rnd

    def get(self, code: str) -> Round:
        """The round with ``code`` (any case). Raises QuizError for an unknown code."""
        row = self._read("SELECT round, created, expires, closed FROM rounds WHERE code = ?", (normal_code(code),))
        row = row[0] if row else None
        if row is None:
            raise QuizError(f"No quiz round has the code {normal_code(code)!r}: check it with your lecturer.")
        try:
            rnd = Round.from_json(json.loads(row[0]))
        except (ValueError, TypeError, KeyError) as exc:
            raise QuizError(f"Round {normal_code(code)} is damaged in {self.path} ({exc}); delete it with "
                            f"'python -m fer_core quiz delete {normal_code(code)}'.") from None
        rnd.created, rnd.expires, rnd.closed = row[1], row[2], row[3]
        return rnd

    def rounds(self) -> list[Round]:
        """Every readable round in the store, newest first (a damaged one is left out: ``get`` says why)."""
        out = []
        for (code,) in self._read("SELECT code FROM rounds ORDER BY created DESC"):
            try:
                out.append(self.get(code))
            except QuizError:
                continue
        return out

    def close(self, code: str, now: float | None = None) -> Round:
        """Close a round: it accepts no more answers; its answers stay. Closing twice is no error."""
        check_writable("Closing a quiz round")
        rnd = self.get(code)
        with self._write() as conn:
            conn.execute("UPDATE rounds SET closed = ? WHERE code = ? AND closed IS NULL",
                         (time.time() if now is None else now, rnd.code))
        return self.get(code)

    def delete(self, code: str) -> int:
        """Delete a round and its answers; returns how many answers went."""
        check_writable("Deleting a quiz round")
        rnd = self.get(code)
        with self._write() as conn:
            gone = conn.execute("DELETE FROM answers WHERE code = ?", (rnd.code,)).rowcount
            conn.execute("DELETE FROM rounds WHERE code = ?", (rnd.code,))
        return gone

    # ----------------------------------------------------------------------- answers
    def answer(self, code: str, session: str, face: int, choice: int | None, nickname: str = "",
               now: float | None = None) -> None:
        """Record one session's answer to one face (``choice`` None: the face was left).

        Raises:
            QuizError: the round is unknown, closed or expired; the face or class is not the
                round's; the session answered this face already; a nickname is too long; or a
                limit is reached. Nothing is stored then.
        """
        now = time.time() if now is None else now
        rnd = self.get(code)
        if not SESSION.fullmatch(str(session)):
            raise QuizError("This browser session has no valid id: reload the page.")
        if not isinstance(face, int) or not 0 <= face < rnd.size:
            raise QuizError(f"Face {face} is not in round {rnd.code} (it has faces 0 to {rnd.size - 1}).")
        if choice is not None and (not isinstance(choice, int) or not 0 <= choice < len(rnd.classes)):
            raise QuizError(f"Answer {choice} is not one of the round's {len(rnd.classes)} classes.")
        nickname = (nickname or "").strip() if rnd.nicknames else ""
        if len(nickname) > NICKNAME_CHARS:
            raise QuizError(f"A nickname has at most {NICKNAME_CHARS} characters; this one has {len(nickname)}.")
        lim = limits()
        with self._write() as conn:
            state = conn.execute("SELECT closed, expires FROM rounds WHERE code = ?", (rnd.code,)).fetchone()
            if state is None or state[0] is not None or now >= state[1]:
                raise QuizError(f"Round {rnd.code} is closed: it takes no more answers.")
            if conn.execute("SELECT 1 FROM answers WHERE code = ? AND session = ? AND face = ?",
                            (rnd.code, session, face)).fetchone():
                raise QuizError(f"You answered face {face + 1} of round {rnd.code} already: one answer per face.")
            if conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] >= lim["answers"]:
                raise QuizError("The quiz store is full (FER_QUIZ_MAX_ANSWERS): the lecturer can delete old "
                                "rounds with 'python -m fer_core quiz delete CODE'.")
            known = conn.execute("SELECT 1 FROM answers WHERE code = ? AND session = ? LIMIT 1",
                                 (rnd.code, session)).fetchone()
            if not known and conn.execute("SELECT COUNT(DISTINCT session) FROM answers WHERE code = ?",
                                          (rnd.code,)).fetchone()[0] >= lim["sessions"]:
                raise QuizError(f"Round {rnd.code} has as many players as this server takes (FER_QUIZ_SESSIONS).")
            conn.execute("INSERT INTO answers (code, session, face, choice, nickname, at) VALUES (?, ?, ?, ?, ?, ?)",
                         (rnd.code, session, face, choice, nickname or None, now))

    def answered(self, code: str, session: str) -> dict[int, int | None]:
        """``{face: choice}`` that one session gave a round (to pick up where it left off)."""
        return {f: c for f, c in self._read("SELECT face, choice FROM answers WHERE code = ? AND session = ?",
                                            (normal_code(code), session))}

    def results(self, code: str) -> dict:
        """The board of a round (:func:`fer_core.quiz.rounds.results`), with whether it is open."""
        rnd = self.get(code)
        rows = self._read("SELECT session, face, choice, nickname FROM answers WHERE code = ? ORDER BY at", (rnd.code,))
        names = {s: n for s, _, _, n in rows if n}
        return {**results(rnd, [(s, f, c) for s, f, c, _ in rows], names), "open": rnd.is_open(time.time()),
                "expires": rnd.expires, "closed": rnd.closed}


def new_code(taken: set[str]) -> str:
    """A code no round in the store has (random letters, see :data:`CODE_LETTERS`)."""
    for _ in range(1000):
        code = "".join(secrets.choice(CODE_LETTERS) for _ in range(CODE_LENGTH))
        if code not in taken:
            return code
    raise QuizError("No free round code is left: delete old rounds with 'python -m fer_core quiz delete CODE'.")


def new_session() -> str:
    """An anonymous id for one browser session (nothing about the person in it)."""
    return secrets.token_urlsafe(12)
