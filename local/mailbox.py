"""The local mailbox: every message Cognito would email (sign-up and password-reset codes), kept in memory.

moto sends no mail, so the local Cognito front (`local/cognito_front.py`) delivers here instead. Each
message is logged (the `make run` console and `.run/local.log`) and listed by the gateway at
`/_local/mailbox` (a page) and `/_local/mailbox.json?to=<email>` (newest first), which the browser
tests read the codes from.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import json
import logging
import threading
from dataclasses import asdict, dataclass

LOG = logging.getLogger("latchkey.local.mailbox")
KEEP = 500  # messages kept; the oldest go first


@dataclass(frozen=True)
class Message:
    id: int
    sent_at: str  # ISO 8601, UTC
    to: str
    subject: str
    text: str
    code: str | None  # the code the message carries, for tests and the console line


class Mailbox:
    def __init__(self) -> None:
        self._messages: list[Message] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def deliver(self, to: str, subject: str, text: str, code: str | None = None) -> Message:
        sent_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._lock:
            message = Message(next(self._ids), sent_at, to, subject, text, code)
            self._messages.append(message)
            del self._messages[:-KEEP]
        LOG.info("mail to %s: %s%s", to, subject, f" (code {code})" if code else "")
        return message

    def messages(self, to: str | None = None) -> list[Message]:
        """Newest first; `to` matches case-insensitively, as Cognito's email sign-in does."""
        with self._lock:
            found = list(self._messages)
        if to:
            found = [m for m in found if m.to.lower() == to.strip().lower()]
        return found[::-1]

    def as_json(self, to: str | None = None) -> bytes:
        return json.dumps({"messages": [asdict(m) for m in self.messages(to)]}).encode()

    def as_html(self, to: str | None = None) -> bytes:
        rows = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>".format(
                *(html.escape(v) for v in (m.sent_at, m.to, m.subject, m.text))
            )
            for m in self.messages(to)
        )
        body = rows or '<tr><td colspan="4">No messages yet.</td></tr>'
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Local mailbox</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head><body>'
            "<h1>Local mailbox</h1><p>What Cognito would have emailed, newest first "
            '(<a href="/_local/mailbox.json">JSON</a>). Reload to see new messages.</p>'
            "<table><thead><tr><th>Sent</th><th>To</th><th>Subject</th><th>Message</th></tr></thead>"
            f"<tbody>{body}</tbody></table></body></html>"
        )
        return page.encode()
