"""Stage-2 teacher policy at a site: which weights the EMA teacher holds when a federated round starts.

In stage 2 every site distils its own P images with the bundle's EMA teacher (``distill.json``: ``ema_handler``,
``aals_handler``). ignite's ``EMAHandler`` copies the network when it is built, before any global weights arrive,
so the teacher must be set from the received global model at least once. Two policies:

* ``"local"``: the site keeps its own EMA teacher across rounds; it is set to the global model at the first round
  only, then follows the site's student (which restarts from the global model every round).
* ``"global"``: the teacher is reset to the received global model at the start of every round, then follows the
  site's student within the round as usual. Every site then distils from the consortium's current model.

Neither policy sends the teacher anywhere: only the student's weight differences leave the site.
"""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine, Events

__all__ = ["TEACHER_POLICIES", "TeacherSync"]

TEACHER_POLICIES = ("local", "global")
logger = logging.getLogger(__name__)


class TeacherSync:
    """Copy the student's weights into the teacher when the trainer starts a round (``Events.STARTED``).

    ``MonaiAlgo.train`` loads the global weights into the trainer's network and then calls ``trainer.run()``,
    which fires ``STARTED``; this handler then copies them into the teacher (every round for ``"global"``, the first
    round only for ``"local"``).

    Args:
        teacher: the EMA teacher (``distill.json``'s ``teacher``, ``EMAHandler.ema_model``).
        student: the trained network (``network``), holding the global weights at ``STARTED``.
        policy: ``"local"`` or ``"global"``.
    """

    def __init__(self, teacher: torch.nn.Module, student: torch.nn.Module, policy: str) -> None:
        if policy not in TEACHER_POLICIES:
            raise ValueError(f"teacher policy must be one of {TEACHER_POLICIES}, got {policy!r}.")
        self.teacher = teacher
        self.student = student
        self.policy = policy
        self.rounds = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        if self.policy == "global" or self.rounds == 0:
            self.teacher.load_state_dict(self.student.state_dict())
            logger.info("teacher set to the received global model (policy %s, round %d)", self.policy, self.rounds)
        self.rounds += 1
