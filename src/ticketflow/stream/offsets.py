"""Only a message the worker finished may make its offset committable.

Faust acks some messages its stream never hands to the agent: a message fetched before a
rebalance and read after it (an older consumer generation), or one read while the flow is
paused for a rebalance, is skipped *and acked* (``faust/streams.py``, ``Stream._py_aiter``:
"we want to ack the filtered out message, otherwise the lag would increase"). An acked
offset is committable. Faust then commits the first run of consecutive acked offsets, and it
checks that this run starts at the committed offset only when that offset is truthy
(``Consumer._new_offset``): on a partition with nothing committed yet, one skipped message
acked at offset 7 commits 8 while offsets 0–6 wait, unlabelled, in a batch the rebalance
cleared. The partition's next owner starts at 8 and those tickets are never labelled.

:class:`FinishedOnly` closes that path: the consumer records an ack of a message of the
guarded topics only once the agent has marked it finished (its outputs acknowledged by the
broker). A skipped message stays unacked, so its offset is not committed and the partition's
next owner (this worker or another) reads it again.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import Any

logger = logging.getLogger(__name__)


class FinishedOnly:
    """Wraps ``consumer.ack`` (Faust's Consumer) so that only finished messages count.

    ``topics``: the guarded topics' names; messages of other topics are acked as before.
    Marks are weak references: a message no longer referenced anywhere leaves the set.
    """

    def __init__(self, consumer: Any, topics: Collection[str]) -> None:
        self.topics = frozenset(topics)
        self._finished: weakref.WeakSet[Any] = weakref.WeakSet()
        self.refused = 0
        ack: Callable[[Any], bool] = consumer.ack
        self._ack = ack
        # Faust reaches it as ``consumer.ack(message)`` (ConsumerMessage.on_final_ack): an
        # attribute of the instance is found before the class's method.
        consumer.ack = self.ack

    def finished(self, messages: Iterable[Any]) -> None:
        """Mark ``messages`` done: their outputs are written, their offsets may be committed."""
        self._finished.update(messages)

    def ack(self, message: Any) -> bool:
        if message.topic in self.topics and message not in self._finished:
            self.refused += 1
            logger.info(
                "not committing %s[%d]@%d: the stream acked it without the worker labelling "
                "it (fetched before a rebalance); it is read again from the committed offset",
                message.topic,
                message.partition,
                message.offset,
            )
            return False
        return self._ack(message)
