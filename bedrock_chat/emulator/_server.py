"""The emulator's HTTP/1.1 server: anyio for sockets and tasks, h11 for the protocol.

Theory of operation
-------------------
:class:`BedrockEmulator` is an async context manager. Entering it binds a TCP listener (port 0 picks a
free port, published as :attr:`~BedrockEmulator.endpoint_url`) and starts ``listener.serve`` in a task
group it owns; leaving it cancels that task group, which ends every connection task -- including
stalled responses, which otherwise wait for the client forever -- and closes the listener. Nothing
outlives the ``async with`` block, under asyncio or trio.

Connections are accepted by one loop per listening socket, not by ``listener.serve``: it takes a slot of
a semaphore of ``max_connections`` before each ``accept`` (so a flood waits in the kernel's backlog),
and an ``accept`` that fails for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) is
retried when one of our connections closes, or after 0.1 s (trio's ``serve_listeners`` waits the same),
instead of ending the server: the connections it holds are served meanwhile.

Each connection is one task running a keep-alive loop over one ``h11.Connection``:

1. read until h11 yields a ``Request`` (headers) within the ``header_timeout`` of :class:`ServerLimits`
   (counted from the request's first byte; a keep-alive connection may first wait ``idle_timeout`` for
   that byte), else close; refuse a ``Content-Length`` over 25,000,000 bytes before reading any body
   (400, then close, since the unread body poisons the connection);
2. read the body (h11 sends ``100 Continue`` on our behalf the moment we ask for body bytes, if the
   client is waiting for it), capping chunked bodies at the same limit, within ``body_timeout`` of the
   end of the headers; every read of the body and every send is charged to an :class:`_Allowance`: a
   client that falls ``idle_timeout`` behind ``min_data_rate`` (a pause, or a trickle of one byte per
   interval) is disconnected;
3. hand method, raw target, headers and body to the sans-IO ``Dispatcher``, which returns a ``Reply``
   (status, headers, body parts, delays, and how the body ends);
4. play the reply: usually one ``send`` of headers, every part and the terminator; with delays, part by
   part; for a DROP fault, close the socket mid-body; for a STALL, wait for the client to leave;
5. record the request (its body only if it was authenticated, and at most ``max_recorded_body_bytes`` of
   it), and ``start_next_cycle`` if both sides may keep the connection open.

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
import errno
import time
from types import TracebackType

import anyio
import anyio.abc
import attrs
import h11
from anyio.streams.stapled import MultiListener

from ._cache import PromptCache
from ._control_plane import ControlPlane
from ._faults import FaultInjector
from ._handlers import Dispatched, Dispatcher
from ._limits import ServerLimits
from ._options import EmulatorOptions
from ._responses import Ending, Reply, error_reply, new_request_id
from ._wire_errors import ServiceError

__all__ = ["MAX_BODY_BYTES", "BedrockEmulator", "RecordedRequest"]

#: Bedrock's documented maximum request body (the ``body`` blob of InvokeModel).
MAX_BODY_BYTES = 25_000_000
_RECEIVE_SIZE = 65536
_MAX_HEADER_BYTES = 64 * 1024
# OSError covers TimeoutError, which is how fail_after ends a read or send that exceeded idle_timeout.
_DISCONNECTS = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
#: accept() errors that say "no descriptor or buffer for now": wait for one to free up (trio's list).
_ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: accept() errors about the one connection being accepted (Linux's accept(2) says: retry).
_ACCEPT_RETRY_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNABORTED", "EPROTO", "EPERM", "ENETDOWN", "ENOPROTOOPT", "EHOSTDOWN", "ENONET",
        "EHOSTUNREACH", "EOPNOTSUPP", "ENETUNREACH",
    )
    if hasattr(errno, name)
)  # fmt: skip
#: With ``min_data_rate`` set, sends are cut into pieces of at most this many bytes, so that a client reading a
#: large reply slowly is charged piece by piece rather than given the whole reply's time for one send.
_SEND_PIECE = 16384
#: Longest wait before accept() is retried after a capacity error, if none of our connections closes first.
_ACCEPT_BACKOFF = 0.1


@attrs.frozen
class RecordedRequest:
    """A request the emulator received, and the status it answered.

    ``path`` is the raw request target as it arrived (percent-encoding and query included);
    ``headers`` keep arrival order with lower-case names; ``model_id`` is the decoded model id and
    ``operation`` the routed operation (None when routing failed); ``fault`` names the injected fault.
    ``body`` is what the log kept of the body, ``body_size`` the body's full length: they differ when the
    body was longer than ``ServerLimits.max_recorded_body_bytes`` (``body_truncated``) or the request
    was refused before authentication (nothing kept).
    """

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    model_id: str | None
    operation: str | None
    status: int
    fault: str | None = None
    body_size: int = attrs.field(default=attrs.Factory(lambda self: len(self.body), takes_self=True))

    @property
    def body_truncated(self) -> bool:
        """Whether :attr:`body` is less than the body that arrived."""
        return len(self.body) < self.body_size

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
        limits: timeouts, the connection cap and how much of each body the log keeps
            (default :class:`ServerLimits`).

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
        limits: ServerLimits | None = None,
    ) -> None:
        self.options: EmulatorOptions = options if options is not None else EmulatorOptions()
        #: Read when a connection is accepted (the connection cap: when the server starts).
        self.limits: ServerLimits = limits if limits is not None else ServerLimits()
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
        self._listener: MultiListener[anyio.abc.SocketStream] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._bound_port: int | None = None
        #: Set (and replaced) each time a connection ends: wakes an accept loop waiting for a descriptor.
        self._connection_ended = anyio.Event()
        #: Times accept() failed for want of descriptors or memory (the server waited and went on).
        self.accept_capacity_errors = 0

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
        """Forget recorded requests, scripted faults, errors, cached prompts and quota use (options are kept)."""
        self.requests.clear()
        self.errors.clear()
        self.clear_faults()
        self.prompt_cache.clear()
        self._dispatcher.quota.reset()

    @property
    def prompt_cache(self) -> PromptCache:
        """The prompt cache (``_cache``): ``len()`` is the number of live-or-unexpired prefixes."""
        return self._dispatcher.cache

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
        self._connection_ended = anyio.Event()
        slots = anyio.Semaphore(self.limits.max_connections)
        for one in listener.listeners:
            assert isinstance(one, anyio.abc.SocketListener), "create_tcp_listener makes socket listeners"
            task_group.start_soon(self._accept_loop, one, task_group, slots)
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

    async def _accept_loop(
        self,
        listener: anyio.abc.SocketListener,
        task_group: anyio.abc.TaskGroup,
        slots: anyio.Semaphore,
    ) -> None:
        """Accept while a connection slot is free; outlive a shortage of descriptors (see the module docstring)."""
        while True:
            await slots.acquire()
            try:
                stream = await listener.accept()
            except (OSError, anyio.BrokenResourceError) as exc:
                slots.release()
                # asyncio raises the OSError; anyio's trio backend wraps it in BrokenResourceError.
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                code = cause.errno if isinstance(cause, OSError) else None
                if code in _ACCEPT_CAPACITY_ERRNOS:
                    self.accept_capacity_errors += 1
                    with anyio.move_on_after(_ACCEPT_BACKOFF):
                        await self._connection_ended.wait()
                elif code not in _ACCEPT_RETRY_ERRNOS:
                    raise
                continue
            except BaseException:
                slots.release()
                raise
            task_group.start_soon(self._serve_connection, stream, slots)

    async def _serve_connection(self, stream: anyio.abc.SocketStream, slots: anyio.Semaphore) -> None:
        try:
            await self._serve(stream)
        finally:
            slots.release()
            ended, self._connection_ended = self._connection_ended, anyio.Event()
            ended.set()

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADER_BYTES)
        client = _Client(stream, self.limits)
        try:
            await self._connection_loop(conn, client)
        except _DISCONNECTS:
            pass
        except h11.RemoteProtocolError as exc:
            await self._try_send_error(conn, client, ServiceError("ValidationException", f"Bad request: {exc}"))
        except Exception as exc:  # the emulator's own bug: answer 500, keep it for the tests, keep serving
            self.errors.append(exc)
            await self._try_send_error(conn, client, ServiceError("InternalServerException", "Emulator error."))
        finally:
            await anyio.aclose_forcefully(stream)

    async def _try_send_error(self, conn: h11.Connection, client: _Client, error: ServiceError) -> None:
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        reply = error_reply(error, new_request_id())
        try:
            data = conn.send(
                h11.Response(status_code=reply.status, headers=[*reply.headers, (b"connection", b"close")])
            )
            data += conn.send(h11.Data(data=reply.parts[0])) + conn.send(h11.EndOfMessage())
            await client.send(data)
        except (h11.LocalProtocolError, *_DISCONNECTS):
            pass

    async def _read_head(self, conn: h11.Connection, client: _Client, *, fresh: bool) -> object:
        """The next ``Request`` (or ``ConnectionClosed``): within ``header_timeout`` of its first byte.

        A keep-alive connection may first wait ``idle_timeout`` for that byte; a fresh connection's
        header time starts when it is accepted. Running out raises TimeoutError (the connection closes).
        """
        deadline = anyio.current_time() + client.header_timeout if fresh else None
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if deadline is None:
                data = await client.receive(anyio.current_time() + client.idle_timeout)
                deadline = anyio.current_time() + client.header_timeout
            else:
                data = await client.receive(deadline)
            conn.receive_data(data)

    async def _next_event(self, conn: h11.Connection, client: _Client, allowance: _Allowance, end: float) -> object:
        """The next body event; TimeoutError once the client is out of ``allowance`` or past ``end``."""
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            if conn.they_are_waiting_for_100_continue:
                await client.send(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
            started = anyio.current_time()
            data = await client.receive(min(started + allowance.wait_for(0), end))
            allowance.charge(anyio.current_time() - started, len(data))
            conn.receive_data(data)

    async def _read_body(self, conn: h11.Connection, client: _Client) -> bytes | int:
        """The whole body; or, once it exceeds :data:`MAX_BODY_BYTES` (chunked uploads), the bytes read.

        Bounded by ``body_timeout`` in all and by the minimum rate along the way (see :class:`_Allowance`),
        so that neither a stalled nor a trickled body holds the connection.
        """
        allowance = _Allowance(client.idle_timeout, client.seconds_per_byte)
        end = anyio.current_time() + client.body_timeout
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event(conn, client, allowance, end)
            if type(event) is h11.Data:
                size += len(event.data)
                if size > MAX_BODY_BYTES:
                    return size
                chunks.append(event.data)
            elif type(event) is h11.EndOfMessage:
                return b"".join(chunks)
            else:  # pragma: no cover - h11 raises RemoteProtocolError for a truncated body
                raise h11.RemoteProtocolError(f"unexpected {event!r} inside a request body")

    async def _connection_loop(self, conn: h11.Connection, client: _Client) -> None:
        fresh = True
        while True:
            event = await self._read_head(conn, client, fresh=fresh)
            fresh = False
            if type(event) is not h11.Request:
                return  # ConnectionClosed: the client went away between requests
            if not await self._exchange(conn, client, event):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _exchange(self, conn: h11.Connection, client: _Client, request: h11.Request) -> bool:
        """Read the body, answer, record; whether the connection may go on.

        A method of its own so that the body is garbage the moment the answer is sent, not held by an
        idle keep-alive connection until its next request.
        """
        method = request.method.decode("ascii")
        target = request.target.decode("latin-1")
        headers = list(request.headers)
        declared = 0
        for name, value in headers:
            if name == b"content-length":
                declared = int(value)
        body = await self._read_body(conn, client) if declared <= MAX_BODY_BYTES else declared
        if isinstance(body, int):
            error = ServiceError("ValidationException", f"Request body exceeds the maximum of {MAX_BODY_BYTES} bytes.")
            reply = error_reply(error, new_request_id())
            self._record(method, target, headers, b"", Dispatched(reply), body_size=body)
            await self._play(conn, client, reply, head=False, close=True)
            return False
        options = self.options  # one read: the reply and its quota settlement see the same options
        dispatched = self.control_plane.dispatch(options, method, target, headers, body) or self._dispatcher.dispatch(
            options, method, target, headers, body
        )
        self._record(method, target, headers, body, dispatched, body_size=len(body))
        if dispatched.reservation is None:
            return await self._play(conn, client, dispatched.reply, head=method == "HEAD", close=False)
        try:
            return await self._play(conn, client, dispatched.reply, head=method == "HEAD", close=False)
        finally:
            self._dispatcher.settle(options, dispatched.reservation)

    def _record(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        dispatched: Dispatched,
        *,
        body_size: int,
    ) -> None:
        if not dispatched.authenticated:
            body = b""
        else:
            keep = self.limits.max_recorded_body_bytes
            if keep is not None and len(body) > keep:
                body = body[:keep]
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
                body_size,
            )
        )

    async def _play(self, conn: h11.Connection, client: _Client, reply: Reply, *, head: bool, close: bool) -> bool:
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
            await client.send(out)
        else:
            await client.send(out)
            for index, part in enumerate(parts):
                delay = reply.first_part_delay if index == 0 else reply.part_delay
                if delay:
                    await anyio.sleep(delay)
                await client.send(conn.send(h11.Data(data=part)))
            if reply.ending is Ending.COMPLETE:
                await client.send(conn.send(h11.EndOfMessage()))
        if reply.ending is Ending.STALL:
            await self._wait_for_disconnect(client.stream)
        return reply.ending is Ending.COMPLETE and not close

    async def _wait_for_disconnect(self, stream: anyio.abc.SocketStream) -> None:
        """Stall: read and discard until the client goes away (or the emulator stops and cancels us)."""
        try:
            while await stream.receive(_RECEIVE_SIZE):
                pass
        except _DISCONNECTS:
            return


class _Allowance:
    """Seconds the server may still wait on a client that moves data: why a trickle cannot hold a connection.

    It starts at ``cap`` (``idle_timeout``). Time spent waiting on the client is taken off; each byte moved
    adds ``per_byte`` seconds (``1 / min_data_rate``); it never rises above ``cap``, so moving fast for a
    while buys no long pause later. A client at or above the rate never runs short; one that falls ``cap``
    seconds behind it does. With no minimum rate (``per_byte`` None) any progress restores ``cap``: the
    plain idle timeout.
    """

    __slots__ = ("cap", "per_byte", "seconds")

    def __init__(self, cap: float, per_byte: float | None) -> None:
        self.cap = cap
        self.per_byte = per_byte
        self.seconds = cap

    def wait_for(self, moving: int) -> float:
        """The longest wait allowed for moving ``moving`` bytes (0: whatever arrives next)."""
        return self.seconds + (moving * self.per_byte if self.per_byte is not None else 0.0)

    def charge(self, waited: float, moved: int) -> None:
        """Account for ``waited`` seconds that moved ``moved`` bytes."""
        if self.per_byte is None:
            self.seconds = self.cap if moved else self.seconds - waited
        else:
            self.seconds = min(self.seconds - waited + moved * self.per_byte, self.cap)


class _Client:
    """One connection's socket, with every wait on the client bounded by the server's limits."""

    __slots__ = ("body_timeout", "header_timeout", "idle_timeout", "seconds_per_byte", "sending", "stream")

    def __init__(self, stream: anyio.abc.SocketStream, limits: ServerLimits) -> None:
        self.stream = stream
        self.header_timeout = limits.header_timeout
        self.idle_timeout = limits.idle_timeout
        self.body_timeout = limits.body_timeout
        rate = limits.min_data_rate
        self.seconds_per_byte = 1.0 / rate if rate is not None else None
        #: What this connection's sends may still wait, across its replies.
        self.sending = _Allowance(self.idle_timeout, self.seconds_per_byte)

    async def receive(self, deadline: float) -> bytes:
        """The next bytes (b"" at end of stream); TimeoutError if none came by ``deadline`` (anyio's clock)."""
        with anyio.CancelScope(deadline=deadline):
            try:
                return await self.stream.receive(_RECEIVE_SIZE)
            except anyio.EndOfStream:
                return b""
        raise TimeoutError

    async def send(self, data: bytes) -> None:
        """Send ``data``; TimeoutError if the client runs out of its allowance (see :class:`_Allowance`).

        Without a minimum rate, each call may wait ``idle_timeout``. With one, data is sent in pieces of
        :data:`_SEND_PIECE` bytes, each given its own share of time, so that a reader slower than the rate is
        caught within a piece or so, whatever the reply's size.
        """
        allowance = self.sending
        if allowance.per_byte is None:
            with anyio.fail_after(self.idle_timeout):
                await self.stream.send(data)
            return
        for start in range(0, len(data), _SEND_PIECE):
            piece = data[start : start + _SEND_PIECE] if len(data) > _SEND_PIECE else data
            started = anyio.current_time()
            with anyio.fail_after(allowance.wait_for(len(piece))):
                await self.stream.send(piece)
            allowance.charge(anyio.current_time() - started, len(piece))
