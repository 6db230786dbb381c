"""The payload converter of every client and worker: pydantic models as JSON, built once.

The SDK builds a new payload converter for every workflow activation, twice. Pydantic's
converter then starts with an empty cache of type adapters and builds an adapter again for each
payload it decodes, several times per turn. `SharedPydanticPayloadConverter` converts exactly as
pydantic's does, but all its instances share one set of converters, and so one cache.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from temporalio.contrib.pydantic import PydanticPayloadConverter
from temporalio.converter import CompositePayloadConverter, EncodingPayloadConverter


@functools.cache
def _shared_converters() -> tuple[EncodingPayloadConverter, ...]:
    # Built once; pydantic's converter keeps its adapters in a thread-safe `functools.lru_cache`.
    return tuple(PydanticPayloadConverter().converters.values())


class SharedPydanticPayloadConverter(PydanticPayloadConverter):
    """Pydantic's payload converter, whose instances share their converters and caches."""

    # Encodings a subclass reads besides pydantic's (the codec's unreadable payloads).
    extra_converters: ClassVar[tuple[EncodingPayloadConverter, ...]] = ()

    def __init__(self) -> None:
        CompositePayloadConverter.__init__(self, *_shared_converters(), *self.extra_converters)
