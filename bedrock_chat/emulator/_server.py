"""The emulator's HTTP/1.1 server: anyio for sockets and tasks, h11 for the protocol.

Theory of operation
-------------------
:class:`BedrockEmulator` is an async context manager. Entering it binds a TCP listener (port 0 picks a
free port, published as :attr:`~BedrockEmulator.endpoint_url`) and starts ``listener.serve`` in a task
group it owns; leaving it cancels that task group, which ends every connection task -- including
stalled responses, which otherwise wait for the client forever -- and closes the listener. Nothing
outlives the ``async with`` block, under asyncio or trio.

Each connection is one task running a keep-alive loop over one ``h11.Connection``:

1. read until h11 yields a ``Request`` (headers); refuse a ``Content-Length`` over 25,000,000 bytes
   before reading any body (400, then close, since the unread body poisons the connection);
2. read the body (h11 sends ``100 Continue`` on our behalf the moment we ask for body bytes, if the
   client is waiting for it), capping chunked bodies at the same limit;
3. hand method, raw target, headers and body to the sans-IO ``Dispatcher``, which returns a ``Reply``
   (status, headers, body parts, delays, and how the body ends);
4. play the reply: usually one ``send`` of headers, every part and the terminator; with delays, part by
   part; for a DROP fault, close the socket mid-body; for a STALL, wait for the client to leave;
5. record the request, and ``start_next_cycle`` if both sides may keep the connection open.

Client errors (malformed HTTP, resets, early disconnects) end that connection quietly: the server keeps
serving. An exception from the emulator's own code is answered with a 500, appended to
:attr:`~BedrockEmulator.errors` (tests assert it stays empty) and never propagates into the task group,
so one bad request cannot take the server down.

Cost per request is a few h11 events, one dict lookup for the route, one JSON parse and one JSON dump;
nothing is logged, and every regex is compiled at import time.
"""

from __future__ import annotations

import collections
import email.utils
import time
from types import TracebackType

import anyio
import anyio.abc
import attrs
import h11

from ._control_plane import ControlPlane
from ._faults import FaultInjector, ServiceError
from ._handlers import Dispatched, Dispatcher
from ._options import EmulatorOptions
from ._responses import Ending, Reply, error_reply, new_request_id

__all__ = ["MAX_BODY_BYTES", "BedrockEmulator", "RecordedRequest"]

#: Bedrock's documented maximum request body (the ``body`` blob of InvokeModel).
MAX_BODY_BYTES = 25_000_000
_RECEIVE_SIZE = 65536
_MAX_HEADER_BYTES = 64 * 1024
_DISCONNECTS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


@attrs.frozen
class RecordedRequest:
    """A request the emulator received, and the status it answered.

    ``path`` is the raw request target as it arrived (percent-encoding and query included);
    ``headers`` keep arrival order with lower-case names; ``model_id`` is the decoded model id and
    ``operation`` the routed operation (None when routing failed); ``fault`` names the injected fault.
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    model_id: str | None
    operation: str | None
    status: int
    fault: str | None = None

    def header(self, name: str) -> str | None:
        """The last value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        found = None
        for key, value in self.headers:
            if key == name:
                found = value
        return found


class _DateHeader:
    """``Date`` header value, formatted at most once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = email.utils.formatdate(now, usegmt=True).encode()
        return self._value


class BedrockEmulator:
    """A local Bedrock runtime: ``async with BedrockEmulator() as emu:`` then point a client at ``emu.endpoint_url``.

    Args:
        options: credentials, region, model knobs and faults (default :class:`EmulatorOptions`). May
            be replaced at any time through :attr:`options`; each request reads it once.
        host: interface to bind (loopback by default).
        port: port to bind; 0 picks a free one.
        max_recorded_requests: size of the :attr:`requests` log (oldest dropped first).

    All methods and attributes may be used from any thread, so a server run by
    :func:`run_emulator_in_thread` is driven the same way as one in the caller's event loop.
    """

    def __init__(
        self,
        options: EmulatorOptions | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_recorded_requests: int = 1000,
    ) -> None:
        self.options: EmulatorOptions = options if options is not None else EmulatorOptions()
        #: What the emulator received, oldest first (bounded).
        self.requests: collections.deque[RecordedRequest] = collections.deque(maxlen=max_recorded_requests)
        #: Exceptions raised by the emulator's own code while serving (each answered with a 500).
        self.errors: list[BaseException] = []
        self._host = host
        self._port = port
        self._injector = FaultInjector()
        self._dispatcher = Dispatcher(self._injector)
        #: Batch inference jobs (``_control_plane``): their table and the task group they run in.
        self.control_plane = ControlPlane()
        self._date = _DateHeader()
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._bound_port: int | None = None

    # -- public surface ------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://host:port`` of the running server, for a client's ``endpoint_url``/``base_url``."""
        if self._bound_port is None:
            raise RuntimeError("the emulator is not running; use 'async with BedrockEmulator() as emu'")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self._host, self._host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._bound_port}"

    @property
    def port(self) -> int:
        """The bound port."""
        if self._bound_port is None:
            raise RuntimeError("the emulator is not running")
        return self._bound_port

    @property
    def region(self) -> str:
        """The region requests must be signed for."""
        return self.options.region

    @property
    def access_key(self) -> str:
        """The accepted access key id."""
        return self.options.access_key

    @property
    def secret_key(self) -> str:
        """The accepted secret key."""
        return self.options.secret_key

    @property
    def session_token(self) -> str | None:
        """The session token requests must carry (None: none allowed)."""
        return self.options.session_token

    def enqueue_faults(self, *names: str) -> None:
        """Script faults: each is consumed by the next routed, authenticated request (see ``_faults``)."""
        self._injector.enqueue(*names)

    def clear_faults(self) -> None:
        """Drop all scripted faults and restart the random fault sequence from its seed."""
        self._injector.clear()

    @property
    def pending_faults(self) -> tuple[str, ...]:
        """Scripted faults not yet consumed, next first."""
        return self._injector.pending

    def reset(self) -> None:
        """Forget recorded requests, scripted faults and recorded errors (options are kept)."""
        self.requests.clear()
        self.errors.clear()
        self.clear_faults()

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> BedrockEmulator:
        if self._task_group is not None:
            raise RuntimeError("this emulator is already running")
        listener = await anyio.create_tcp_listener(local_host=self._host, local_port=self._port)
        try:
            self._bound_port = listener.extra(anyio.abc.SocketAttribute.local_port)
            task_group = anyio.create_task_group()
            await task_group.__aenter__()
        except BaseException:
            await listener.aclose()
            raise
        self._listener, self._task_group = listener, task_group
        task_group.start_soon(listener.serve, self._serve_connection)
        task_group.start_soon(self.control_plane.run)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        task_group, listener = self._task_group, self._listener
        assert task_group is not None
        assert listener is not None
        self._task_group = self._listener = None
        try:
            task_group.cancel_scope.cancel()
            # The caller's exception is not passed in: the task group would wrap it in an
            # ExceptionGroup, and it is not ours to wrap. Connection tasks never raise.
            await task_group.__aexit__(None, None, None)
        finally:
            self._bound_port = None
            await listener.aclose()

    # -- connections ---------------------------------------------------------------------------

    async def _serve_connection(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        try:
            await self._connection_loop(conn, stream)
        except _DISCONNECTS:
            pass
        except h11.RemoteProtocolError as exc:
            await self._try_send_error(conn, stream, ServiceError("ValidationException", 400, f"Bad request: {exc}"))
        except Exception as exc:  # the emulator's own bug: answer 500, keep it for the tests, keep serving
            self.errors.append(exc)
            await self._try_send_error(conn, stream, ServiceError("InternalServerException", 500, "Emulator error."))
        finally:
            await anyio.aclose_forcefully(stream)

    async def _try_send_error(self, conn: h11.Connection, stream: anyio.abc.SocketStream, error: ServiceError) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        reply = error_reply(error, new_request_id())
        try:
            data = conn.send(
                h11.Response(status_code=reply.status, headers=[*reply.headers, (b"connection", b"close")])
            )
            data += conn.send(h11.Data(data=reply.parts[0])) + conn.send(h11.EndOfMessage())
            await stream.send(data)
        except (h11.LocalProtocolError, *_DISCONNECTS):
            pass

    async def _next_event(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if conn.they_are_waiting_for_100_continue:
                await stream.send(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            try:
                data = await stream.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)

    async def _read_body(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> bytes | None:
        """The whole body, or None once it exceeds :data:`MAX_BODY_BYTES` (chunked uploads)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, stream)
            if type(event) is h11.Data:
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(event.data)
            elif type(event) is h11.EndOfMessage:
                return b"".join(chunks)
            else:  # pragma: no cover - h11 raises RemoteProtocolError for a truncated body
                raise h11.RemoteProtocolError(f"unexpected {event!r} inside a request body")

    async def _connection_loop(self, conn: h11.Connection, stream: anyio.abc.SocketStream) -> None:
        while True:
            event = await self._next_event(conn, stream)
            if type(event) is not h11.Request:
                return  # ConnectionClosed: the client went away between requests
            method = event.method.decode("ascii")
            target = event.target.decode("latin-1")
            headers = list(event.headers)
            declared = 0
            for name, value in headers:
                if name == b"content-length":
                    declared = int(value)
            body = await self._read_body(conn, stream) if declared <= MAX_BODY_BYTES else None
            if body is None:
                error = ServiceError(
                    "ValidationException", 400, f"Request body exceeds the maximum of {MAX_BODY_BYTES} bytes."
                )
                reply = error_reply(error, new_request_id())
                self._record(method, target, headers, b"", Dispatched(reply))
                await self._play(conn, stream, reply, head=False, close=True)
                return
            dispatched = self.control_plane.dispatch(
                self.options, method, target, headers, body
            ) or self._dispatcher.dispatch(self.options, method, target, headers, body)
            self._record(method, target, headers, body, dispatched)
            reply = dispatched.reply
            if not await self._play(conn, stream, reply, head=method == "HEAD", close=False):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    def _record(
        self, method: str, target: str, headers: list[tuple[bytes, bytes]], body: bytes, dispatched: Dispatched
    ) -> None:
        self.requests.append(
            RecordedRequest(
                method,
                target,
                tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers),
                body,
                dispatched.model_id,
                dispatched.operation,
                dispatched.reply.status,
                dispatched.reply.fault,
            )
        )

    async def _play(
        self, conn: h11.Connection, stream: anyio.abc.SocketStream, reply: Reply, *, head: bool, close: bool
    ) -> bool:
        """Send ``reply``; returns whether the connection may serve another request."""
        if reply.delay:
            await anyio.sleep(reply.delay)
        headers = [*reply.headers, (b"date", self._date())]
        if close:
            headers.append((b"connection", b"close"))
        out = conn.send(h11.Response(status_code=reply.status, headers=headers))
        parts = () if head else reply.parts
        if reply.ending is not Ending.COMPLETE:
            parts = parts[: reply.sent_parts]
        if not reply.first_part_delay and not reply.part_delay:
            out += b"".join([conn.send(h11.Data(data=part)) for part in parts])
            if reply.ending is Ending.COMPLETE:
                out += conn.send(h11.EndOfMessage())
            await stream.send(out)
        else:
            await stream.send(out)
            for index, part in enumerate(parts):
                delay = reply.first_part_delay if index == 0 else reply.part_delay
                if delay:
                    await anyio.sleep(delay)
                await stream.send(conn.send(h11.Data(data=part)))
            if reply.ending is Ending.COMPLETE:
                await stream.send(conn.send(h11.EndOfMessage()))
        if reply.ending is Ending.STALL:
            await self._wait_for_disconnect(stream)
        return reply.ending is Ending.COMPLETE and not close

    async def _wait_for_disconnect(self, stream: anyio.abc.SocketStream) -> None:
        """Stall: read and discard until the client goes away (or the emulator stops and cancels us)."""
        try:
            while await stream.receive(_RECEIVE_SIZE):
                pass
        except _DISCONNECTS:
            return
