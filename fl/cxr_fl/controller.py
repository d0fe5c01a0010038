"""FedAvg that closes a round with a quorum of sites, so one site dropping out does not stop the consortium.

FLARE's ``FedAvg`` waits, every round, for a result from every sampled site (``min_responses`` = all, no timeout). A
site that fails during a round sends an error result, which FLARE ignores only while the others can still reach
``min_responses`` (its "dynamic" error policy); with "all sites" they never can, so the job stops.

:class:`QuorumFedAvg` sends each round's task with ``min_responses = quorum``. A round ends when every site has answered
(an error counts as an answer), or ``wait_after_quorum`` seconds after the quorum answered, or when every site still
awaited has been reported dead by FLARE, or at ``round_timeout``. The global model is the weighted mean of the updates
that did arrive (InTime aggregation, weights = iterations run), so a failed site contributes nothing to that round and
the others carry on. Fewer than ``quorum`` good results stop the job, as FLARE's policy says. ``quorum`` equal to the
number of sites reproduces FLARE's default.
"""

from __future__ import annotations

from nvflare.app_common.workflows.fedavg import FedAvg

__all__ = ["QuorumFedAvg"]


class QuorumFedAvg(FedAvg):
    """FLARE ``FedAvg`` whose rounds need ``quorum`` results, not all of them.

    Args:
        num_clients: sites sampled per round (all of the job's sites).
        num_rounds: FedAvg rounds.
        quorum: results a round needs (``1 <= quorum <= num_clients``).
        wait_after_quorum: seconds to keep waiting for the other sites once ``quorum`` sites have answered; their
            updates are lost to this round when they come later. Irrelevant when ``quorum`` is every site.
        round_timeout: seconds after which a round ends whatever has arrived (0: no limit).
        persistor_id: the model persistor component (initial model, global checkpoints).
    """

    def __init__(
        self,
        num_clients: int,
        num_rounds: int,
        quorum: int,
        wait_after_quorum: int = 3600,
        round_timeout: int = 0,
        persistor_id: str = "persistor",
    ) -> None:
        # explicit arguments (not **kwargs): FLARE's job export records a component's constructor arguments by name
        super().__init__(num_clients=num_clients, num_rounds=num_rounds, persistor_id=persistor_id)
        if not 1 <= quorum <= num_clients:
            raise ValueError(f"quorum must be in [1, num_clients={num_clients}], got {quorum}.")
        if round_timeout < 0 or wait_after_quorum < 0:
            raise ValueError("round_timeout and wait_after_quorum must not be negative.")
        self.quorum = quorum
        self.round_timeout = round_timeout
        self.wait_after_quorum = wait_after_quorum

    def send_model(self, task_name="train", data=None, targets=None, min_responses=None, timeout=0, callback=None):
        """FedAvg's per-round send, with the quorum and timeouts of this controller."""
        return self.broadcast_model(
            task_name=task_name,
            data=data,
            targets=targets,
            min_responses=min(self.quorum, len(targets)) if targets else self.quorum,
            timeout=self.round_timeout,
            wait_time_after_min_received=self.wait_after_quorum,
            blocking=False,
            callback=callback,
        )
