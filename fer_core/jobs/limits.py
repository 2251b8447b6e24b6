"""Limits on what one person can queue, so that no one takes the machine from the rest of a class.

Three limits, each an environment variable a lecturer sets before starting the server:

- ``FER_MAX_QUEUED``: jobs waiting or running, in all;
- ``FER_MAX_EPOCHS``: epochs of one job (a resume that extends a run included);
- ``FER_MAX_JOBS_PER_SESSION``: jobs waiting or running that one browser session submitted (a
  fair share for a class, not a hard per-person quota: a reloaded page is a new session, so the
  total is the limit that always holds).

The web server applies them with defaults (:meth:`Limits.for_server`: 20, 500 and 10); the
command line only where the variable is set (:meth:`Limits.from_env`), so a script that queues
a long study on its own machine works as before. The total is checked inside the transaction
that inserts the job, so two submissions at once cannot both slip under it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fer_core.config import env_number
from fer_core.errors import JobError
from fer_core.jobs.store import queue_full_message

#: The three variables. Their registered defaults (``fer_core.config.SETTINGS``) are the server's: a
#: whole study (8 experiments) fits in one person's share; thirty students cannot all queue one job
#: each at once: the queue's total is the first limit they meet.
VARIABLES = ("FER_MAX_QUEUED", "FER_MAX_EPOCHS", "FER_MAX_JOBS_PER_SESSION")


@dataclass(frozen=True)
class Limits:
    """Each limit, or None for none."""

    queued: int | None = None
    epochs: int | None = None
    per_session: int | None = None

    @classmethod
    def from_env(cls) -> "Limits":
        """The limits the environment sets, none where it sets nothing (the command line)."""
        return cls(*(env_number(name, None) for name in VARIABLES))

    @classmethod
    def for_server(cls) -> "Limits":
        """The limits of the web server: the environment's, else the registered defaults."""
        return cls(*(env_number(name) for name in VARIABLES))

    def check_epochs(self, epochs: int) -> None:
        """Raises JobError when one job asks for more epochs than allowed."""
        if self.epochs is not None and epochs > self.epochs:
            raise JobError(f"{epochs} epochs is more than this server allows for one job ({self.epochs}, "
                           "FER_MAX_EPOCHS). Ask for fewer; a finished run can be extended later with Resume.")

    def check_session(self, waiting_of_session: int, new: int = 1) -> None:
        """Raises JobError when a browser session that has ``waiting_of_session`` jobs waiting or
        running would go over its share with ``new`` more."""
        if self.per_session is not None and waiting_of_session + new > self.per_session:
            raise JobError(f"You have {waiting_of_session} job(s) waiting or running, and this server allows "
                           f"{self.per_session} per browser session (FER_MAX_JOBS_PER_SESSION): wait for one to "
                           "finish, or cancel one of yours, then submit again.")

    def queue_full(self, waiting: int, new: int = 1) -> str | None:
        """The refusal when ``waiting`` jobs (waiting or running, in all) and ``new`` more exceed the
        total, else None."""
        if self.queued is None or waiting + new <= self.queued:
            return None
        return queue_full_message(waiting, self.queued)
