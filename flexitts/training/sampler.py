"""A resumable batch sampler that groups items of similar length under a budget of frames per batch."""
from __future__ import annotations

import math
import random
from typing import Iterator, Sequence


class BucketBatchSampler:
    """Yields lists of dataset indices whose padded size (`len(batch) * max length`) stays under `max_units`.

    Each epoch shuffles deterministically from `(seed, epoch)`: items are sorted by length inside large random
    pools, cut into batches, and the batches shuffled. `state_dict()` / `load_state_dict()` record the epoch
    and the position inside it, so a resumed run sees exactly the batches an uninterrupted run would. With
    several processes, rank r takes batches r, r + world, ... of the same order.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_units: int,
        seed: int = 0,
        max_items: int | None = None,
        pool_factor: int = 50,
        rank: int = 0,
        world_size: int = 1,
    ):
        if not lengths:
            raise ValueError("cannot sample batches from an empty data set")
        self.lengths = list(lengths)
        self.max_units = max_units
        self.max_items = max_items
        self.seed = seed
        self.pool_factor = pool_factor
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0  # batches of the current epoch already yielded (on this rank)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The batches of `epoch` for this rank, in order (deterministic from seed and epoch)."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        # Sort inside pools of ~pool_factor batches: similar lengths share a batch, yet epochs differ.
        typical = max(1, self.max_units // max(1, sorted(self.lengths)[len(self.lengths) // 2]))
        pool = max(1, typical * self.pool_factor)
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            batch: list[int] = []
            longest = 0
            for index in chunk:
                longest_if_added = max(longest, self.lengths[index])
                full = (len(batch) + 1) * longest_if_added > self.max_units
                if batch and (full or (self.max_items is not None and len(batch) >= self.max_items)):
                    batches.append(batch)
                    batch, longest_if_added = [], self.lengths[index]
                batch.append(index)
                longest = longest_if_added
            if batch:
                batches.append(batch)
        rng.shuffle(batches)
        # Every rank gets the same number of batches (the tail that does not divide evenly is dropped).
        usable = len(batches) - len(batches) % self.world_size if len(batches) >= self.world_size else len(batches)
        return batches[self.rank : usable : self.world_size]

    def batches_per_epoch(self) -> int:
        return len(self.epoch_batches(self.epoch))

    def __iter__(self) -> Iterator[list[int]]:
        """Endless: epoch after epoch, starting where the state says."""
        while True:
            batches = self.epoch_batches(self.epoch)
            while self.position < len(batches):
                batch = batches[self.position]
                self.position += 1
                yield batch
            self.epoch += 1
            self.position = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError("the checkpoint was trained with another data seed")


def epochs_to_steps(num_batches: int, epochs: float) -> int:
    """Steps covering `epochs` passes over `num_batches` batches."""
    return max(1, math.ceil(num_batches * epochs))
