"""The service's size limits, shared by the service (validation) and the runner (checks before sending)."""
from __future__ import annotations

#: Longest prompt (and system text) in characters.
MAX_PROMPT_CHARS = 32_000
#: Most prompts in one POST /batch.
MAX_BATCH_PROMPTS = 100
#: Largest request body read for POST /chat (bytes): a prompt and a system text of MAX_PROMPT_CHARS characters,
#: even if every character is written as a JSON \\u escape, plus room for the options.
MAX_CHAT_BODY_BYTES = 1024 * 1024
#: Largest request body read for any other route, POST /batch included (bytes): MAX_BATCH_PROMPTS prompts of
#: MAX_PROMPT_CHARS characters in UTF-8 (up to 4 bytes a character) fit.
MAX_BATCH_BODY_BYTES = 16 * 1024 * 1024
