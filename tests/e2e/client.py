"""Talks to the running app the way the browser does: HTTP login, then Chainlit's socket.io protocol."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import socketio


async def login(base_url: str, username: str, password: str) -> httpx.Cookies:
    """Log in through the password form; the cookies of the session, or an HTTPStatusError."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.post("/login", data={"username": username, "password": password})
        response.raise_for_status()
        return response.cookies


def cookie_header(cookies: httpx.Cookies) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


@dataclass
class ChatSession:
    """One browser tab: a socket.io connection with its events recorded in order."""

    base_url: str
    cookies: httpx.Cookies
    thread_id: str | None = None
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    events: list[tuple[str, Any]] = field(default_factory=list)
    sio: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # What the person types when the app asks (AskUserMessage): given what it asked, the answer
    # (None: no answer, the question times out).
    answer: Callable[[str], Awaitable[str | None]] | None = None

    async def connect(self, origin: str | None = None, restoring: bool = False) -> None:
        """Open the socket.io connection (as a page of `origin` would, when given). `restoring`:
        the tab reconnects to its session, for which Chainlit starts no chat."""

        @self.sio.on("*")
        async def record(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            if event == "first_interaction" and isinstance(data, dict):
                self.thread_id = self.thread_id or data.get("thread_id")
            self._changed.set()

        @self.sio.on("ask")
        async def ask(data: Any) -> dict[str, Any] | None:
            self.events.append(("ask", data))
            self._changed.set()
            said = await self.answer(data["msg"]["output"]) if self.answer else None
            if said is None:
                return None
            return {
                "id": str(uuid.uuid4()), "threadId": self.thread_id, "name": "user",
                "type": "user_message", "output": said, "createdAt": datetime.now(UTC).isoformat(),
            }  # fmt: skip

        await self.sio.connect(
            self.base_url,
            socketio_path="/ws/socket.io",
            transports=["websocket"],
            headers={
                "Cookie": cookie_header(self.cookies),
                **({"Origin": origin} if origin else {}),
            },
            auth={
                "clientType": "webapp",
                "sessionId": self.session_id,
                "threadId": self.thread_id,
                "userEnv": json.dumps({}),
                "chatProfile": None,
            },
            wait_timeout=10,
        )
        await self.sio.emit("connection_successful")
        if self.thread_id is None and not restoring:  # a new chat: wait for on_chat_start
            await self.wait_for_run("on_chat_start")

    async def wait_for_run(self, name: str, after: int = 0, timeout: float = 120) -> None:
        """Wait until Chainlit reports the callback `name` finished (its run step is updated)."""
        async with asyncio.timeout(timeout):
            while not any(
                n == "update_message" and d.get("type") == "run" and d.get("name") == name
                for n, d in self.events[after:]
            ):
                self._changed.clear()
                await self._changed.wait()

    async def wait_for(self, event: str, after: int = 0, timeout: float = 120) -> Any:
        """The data of the first `event` recorded at index `after` or later."""
        async with asyncio.timeout(timeout):
            while True:
                for name, data in self.events[after:]:
                    if name == event:
                        return data
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_action(self, name: str, after: int = 0, timeout: float = 10) -> Any:
        """The first action button called `name` the app sent at index `after` or later."""
        async with asyncio.timeout(timeout):
            while True:
                for event, data in self.events[after:]:
                    if event == "action" and data.get("name") == name:
                        return data
                self._changed.clear()
                await self._changed.wait()

    async def wait_until(
        self, done: Callable[[list[tuple[str, Any]]], bool], after: int = 0, timeout: float = 60
    ) -> None:
        """Wait until `done` holds for the events recorded at index `after` or later."""
        async with asyncio.timeout(timeout):
            while not done(self.events[after:]):
                self._changed.clear()
                await self._changed.wait()

    async def send(
        self,
        text: str,
        timeout: float = 120,
        command: str | None = None,
        message_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
    ) -> list[tuple[str, Any]]:
        """Send a message (a command's text when `command` is picked from the menu) and return
        every event until the app says the task ended."""
        start = await self.emit_message(text, command, message_id, files=files)
        await self.wait_for_run("on_message", start, timeout)
        await self.wait_for("task_end", start, timeout)
        if self.thread_id is None:  # Chainlit names a new chat's thread in a task of its own
            await self.wait_for("first_interaction", 0, timeout)
        return self.events[start:]

    async def upload(self, name: str, data: bytes, mime: str) -> dict[str, Any]:
        """Upload a file as the composer does (an HTTP call naming this session): a reference to
        send with the next message (`files=`)."""
        async with httpx.AsyncClient(base_url=self.base_url, cookies=self.cookies) as http:
            response = await http.post(
                "/project/file", params={"session_id": self.session_id},
                files={"file": (name, data, mime)},
            )  # fmt: skip
        response.raise_for_status()
        return {"id": response.json()["id"]}

    async def emit_message(
        self,
        text: str,
        command: str | None = None,
        message_id: str | None = None,
        edit: bool = False,
        files: list[dict[str, Any]] | None = None,
    ) -> int:
        """Send a message (or, with `edit`, an edit of message `message_id`) without waiting; the
        index of the first event that may answer it. `files`: uploads it carries."""
        start = len(self.events)
        message = {
            "id": message_id or str(uuid.uuid4()),
            "threadId": self.thread_id,
            "name": "user",
            "type": "user_message",
            "output": text,
            "createdAt": datetime.now(UTC).isoformat(),
        }
        if command is not None:
            message["command"] = command
        if edit:
            await self.sio.emit("edit_message", {"message": message})
        else:
            await self.sio.emit(
                "client_message", {"message": message, "fileReferences": files or []}
            )
        return start

    async def turn(self, text: str, **send: Any) -> list[tuple[str, Any]]:
        """`send`, then wait for the turn's charge to show: the app settles after the answer
        (off the person's path) and then updates the balance badge. Every event since sending."""
        start = len(self.events)
        await self.send(text, **send)
        await self.wait_for_badge(start)
        return self.events[start:]

    async def wait_for_badge(self, after: int) -> None:
        await self.wait_until(
            lambda events: any(
                n == "element" and d.get("name") == "CreditBadge" for n, d in events
            ),
            after,
        )

    async def call_action(self, action: dict[str, Any]) -> int:
        """Press an action button as the browser does (an HTTP call naming this session); the
        HTTP status. What the callback sends arrives as events (see `wait_until`)."""
        async with httpx.AsyncClient(base_url=self.base_url, cookies=self.cookies) as http:
            response = await http.post(
                "/project/action", json={"action": action, "sessionId": self.session_id}
            )
        return response.status_code

    async def call_action_for(self, action: dict[str, Any]) -> Any:
        """Call an action as a custom element does (`callAction`): what its callback returned."""
        async with httpx.AsyncClient(base_url=self.base_url, cookies=self.cookies) as http:
            response = await http.post(
                "/project/action", json={"action": action, "sessionId": self.session_id}
            )
        response.raise_for_status()
        return response.json()["response"]

    async def fetch_file(self, element: dict[str, Any]) -> bytes:
        """The content of an element the app sent (a chart, a file), as the browser loads it."""
        async with httpx.AsyncClient(base_url=self.base_url, cookies=self.cookies) as http:
            response = await http.get(
                f"/project/file/{element['chainlitKey']}", params={"session_id": self.session_id}
            )
        response.raise_for_status()
        return response.content

    async def change_settings(self, settings: dict[str, Any]) -> None:
        """Change the chat settings and wait for the change's own `task_end` (Chainlit runs the
        app's settings hook as a task): one arriving later would be taken for the next message's."""
        start = len(self.events)
        await self.sio.emit("chat_settings_change", settings)
        await self.wait_for("task_end", start, timeout=60)

    async def close(self) -> None:
        await self.sio.disconnect()


def streamed_text(events: list[tuple[str, Any]]) -> str:
    """What the browser displayed while streaming: the first chunk opens the stream, then tokens."""
    parts = []
    for name, data in events:
        if name == "stream_start":
            parts.append(data["output"])
        elif name == "stream_token" and not data.get("isInput"):
            parts.append(data["token"])
    return "".join(parts)


def messages(events: list[tuple[str, Any]], kind: str = "assistant_message") -> list[dict]:
    """Final versions of the messages of `kind` among `events`, by id, in first-seen order."""
    latest: dict[str, dict] = {}
    for name, data in events:
        if name in ("new_message", "update_message", "stream_start") and data.get("type") == kind:
            latest[data["id"]] = {**latest.get(data["id"], {}), **data}
    return list(latest.values())


def steps(events: list[tuple[str, Any]], kind: str = "llm") -> list[dict]:
    latest: dict[str, dict] = {}
    for name, data in events:
        if name in ("new_message", "update_message") and data.get("type") == kind:
            latest[data["id"]] = {**latest.get(data["id"], {}), **data}
    return list(latest.values())
