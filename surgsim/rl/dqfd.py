"""Deep Q-learning from demonstrations (Hester et al., 2018, "Deep Q-learning from Demonstrations",
AAAI): the demonstration losses that ``surgsim pretrain --algo dqn`` trains on, and the DQN that
keeps using them while ``surgsim train --init-from`` fine-tunes it.

On a batch of demonstrated transitions: the one-step TD loss, the ``n``-step TD loss (n = 10)
and the supervised large-margin loss ``max_a [Q(s, a) + margin * (a != a_E)] - Q(s, a_E)``
(margin 0.8), all weighted 1 as in the paper. Without the margin loss during fine-tuning, the
first TD updates on the agent's own transitions undid the pretraining (measured on
SurgicalPathDiscrete hard: a clone at 50-75 % success needed 65-80k steps to reach 85 %, scratch
25k).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN

from surgsim.datasets.store import Demonstrations

#: DQfD's defaults (Hester et al., 2018): large-margin value, n of the n-step return
MARGIN = 0.8
N_STEP = 10


def n_step_targets(rewards: np.ndarray, demos: Demonstrations, gamma: float, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each transition: the discounted sum of up to ``n`` rewards within its episode, the
    index of the observation after them (to bootstrap from), and the discount to apply to that
    bootstrap (0 when the episode terminated inside the window)."""
    size = len(rewards)
    sums, ends, discounts = np.zeros(size), np.zeros(size, dtype=np.int64), np.zeros(size)
    for i in range(size):
        total, factor, j = 0.0, 1.0, i
        while True:
            total += factor * rewards[j]
            factor *= gamma
            if demos.terminations[j]:
                factor = 0.0
                break
            if demos.truncations[j] or j - i + 1 == n:
                break
            j += 1
        sums[i], ends[i], discounts[i] = total, j, factor
    return sums, ends, discounts


class DemoLoss:
    """DQfD's three losses on batches of one dataset's transitions.

    ``rewards`` are the demonstrations' rewards in the units the Q-network learns (normalised
    when the run normalises rewards); ``normalize`` maps raw observations to what the network
    sees, applied per batch so that it follows running statistics.
    """

    def __init__(self, demos: Demonstrations, rewards: np.ndarray, gamma: float, device: torch.device,
                 normalize: Callable[[np.ndarray], np.ndarray] = lambda obs: obs) -> None:
        n_sum, n_end, n_discount = n_step_targets(rewards, demos, gamma, N_STEP)
        self.observations, self.next_observations = demos.observations, demos.next_observations
        self.normalize, self.gamma, self.device = normalize, gamma, device

        def tensor(values: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.as_tensor(values, dtype=dtype, device=device)

        self.actions = tensor(demos.actions.astype(np.int64).reshape(-1), torch.int64)
        self.rewards, self.done = tensor(rewards), tensor(demos.terminations)
        self.n_rewards, self.n_discount = tensor(n_sum), tensor(n_discount)
        self.n_next = n_end

    def __len__(self) -> int:
        return len(self.actions)

    def __call__(self, q_net: torch.nn.Module, target: torch.nn.Module,
                 idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(one-step TD, n-step TD, large-margin) losses on transitions ``idx``."""
        def obs(values: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(self.normalize(values), dtype=torch.float32, device=self.device)

        i = torch.as_tensor(idx, device=self.device)
        actions = self.actions[i, None]
        q = q_net(obs(self.observations[idx]))
        q_taken = q.gather(1, actions).squeeze(1)
        with torch.no_grad():
            one = self.rewards[i] + self.gamma * (1.0 - self.done[i]) * \
                target(obs(self.next_observations[idx])).max(dim=1).values
            n_step = self.n_rewards[i] + self.n_discount[i] * \
                target(obs(self.next_observations[self.n_next[idx]])).max(dim=1).values
        margins = torch.full_like(q, MARGIN).scatter(1, actions, 0.0)
        margin = ((q + margins).max(dim=1).values - q_taken).mean()
        return F.smooth_l1_loss(q_taken, one), F.smooth_l1_loss(q_taken, n_step), margin


class DQfD(DQN):
    """DQN fine-tuning from a DQfD-pretrained run: after SB3's TD updates on the replay buffer,
    each training call takes as many gradient steps of the demonstration losses (:class:`DemoLoss`)
    on random demonstration batches, with the same optimiser. Batches are drawn with NumPy's
    global generator, which checkpoints save, so a resumed run stays exact.
    Call :meth:`use_demonstrations` before learning."""

    demo_loss: DemoLoss | None = None

    def use_demonstrations(self, demos: Demonstrations, rewards: np.ndarray) -> None:
        normalizer = self.get_vec_normalize_env()
        normalize = normalizer.normalize_obs if normalizer is not None else (lambda obs: obs)
        self.demo_loss = DemoLoss(demos, rewards, self.gamma, self.device, normalize)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "demo_loss"]  # reattached from the dataset, not saved

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        super().train(gradient_steps, batch_size)
        if self.demo_loss is None:
            return
        self.policy.set_training_mode(True)
        for _ in range(gradient_steps):
            idx = np.random.randint(0, len(self.demo_loss), size=batch_size)
            loss = sum(self.demo_loss(self.q_net, self.q_net_target, idx))
            self.policy.optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.max_grad_norm)
            self.policy.optimizer.step()
        self.policy.set_training_mode(False)
