"""Loading `.env` from the project root, whatever the working directory.

Programs call `load_env()` before reading settings; variables already set in the environment win
over the file, so a shell export always overrides `.env`.
"""

from __future__ import annotations

import functools
import os

from dotenv import load_dotenv

from app.core.names import PROJECT_ROOT


@functools.cache
def load_env() -> None:
    """Load `<project>/.env` once, without overriding variables that are already set."""
    load_dotenv(PROJECT_ROOT / ".env", override=False)
    # LiteLLM otherwise fetches its price table from the internet at import time.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
