"""What may leave the process: URLs and messages with their secrets masked."""
from __future__ import annotations

import re


def shown_url(url: str) -> str:
    """`url` as it may be printed or written: a user:password part becomes ***."""
    return re.sub(r"//[^/@]*@", "//***@", url, count=1)
