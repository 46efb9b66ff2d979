"""Which feedback is already on the feedback topic, so that a repeated delivery (the CDS Hooks
spec allows the EHR to send the same feedback again, to any replica) is published and counted
once. Filled from this replica's own publishes and from the topic read back by every replica;
bounded, the oldest forgotten first."""

from __future__ import annotations

from collections import OrderedDict


class RecordedFeedback:
    """`feedback_id`s seen, at most `max_ids`."""

    def __init__(self, max_ids: int = 100_000) -> None:
        if max_ids < 1:
            raise ValueError("max_ids must be at least 1")
        self._max_ids = max_ids
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, feedback_id: object) -> bool:
        return feedback_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def record(self, feedback_id: str) -> None:
        self._ids[feedback_id] = None
        self._ids.move_to_end(feedback_id)
        while len(self._ids) > self._max_ids:
            self._ids.popitem(last=False)
