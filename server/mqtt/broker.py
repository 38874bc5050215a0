"""The embedded broker: amqtt's ``Broker`` in the server's own event loop.

Started when no ``mqtt.url`` is configured, so a house needs nothing else. It admits no
anonymous client, on any address: every client logs in with its own account, and what an
account may read and write is the shipped Mosquitto ACL (:mod:`.acl`), checked by amqtt's
auth and topic-check plugin hooks (:class:`AccountAuth`, :class:`AclTopicCheck`):

* the server itself: ``hearth-server`` with a random password made at every start and
  never written anywhere (the bridge is in the same process);
* each satellite with a password in ``mqtt.satellites.<id>.password``: username = its id,
  rights = its own topics only;
* optionally one more account (``mqtt.broker.username``/``password``, e.g. ``homeassistant``),
  whose rights are the ACL's for that name.

amqtt speaks MQTT 3.1.1 only; the bridge asks it for 3.1.1 straight away and satellites
fall back to it.

When the port is taken and an MQTT broker answers there (typically Mosquitto on 1883 in a
Home Assistant home), the server uses that broker instead (:attr:`EmbeddedBroker.adopted`).

Measured (docs/reference, component trials): it starts in about 12 ms and relays
20 ms audio frames at far more than the 50 messages per second a stream needs.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import paho.mqtt.client as paho
from aiohttp import web
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from hearth.wire import MqttUrl

from ..errors import StartupError
from .acl import HEARTH_ACL, SERVER_USER, Acl
from .options import EmbeddedBrokerConfig

_LOGGER = logging.getLogger(__name__)

#: Longest wait for messages still being relayed (the session-end of each satellite) at stop.
DRAIN_S = 0.5
#: Longest wait for client connections to end after they were closed, and for amqtt's shutdown.
STOP_S = 3.0
#: How long a broker found on the port has to answer a CONNECT.
PROBE_S = 3.0


def _acl(text: str) -> Acl:
    acl = _ACLS.get(text)
    if acl is None:
        acl = _ACLS[text] = Acl.parse(text)
    return acl


_ACLS: dict[str, Acl] = {}


class AccountAuth(BaseAuthPlugin):
    """amqtt auth plugin: one password per username (constant-time compare), and a will only
    on a topic the account may publish to (else a satellite could leave another's ``offline``)."""

    @dataclass
    class Config:
        accounts: dict[str, str] = field(default_factory=dict)
        acl: str = HEARTH_ACL

    async def authenticate(self, *, session: Any) -> bool:
        config = self.context.config
        username = getattr(session, "username", None) or ""
        password = getattr(session, "password", None) or ""
        client_id = getattr(session, "client_id", None) or ""
        expected = config.accounts.get(username)
        ok = expected is not None and hmac.compare_digest(password.encode(), expected.encode())
        if not ok:
            _LOGGER.warning("embedded broker: refused client %r from %s: %s", client_id,
                            getattr(session, "remote_address", "?"),
                            "no username (anonymous clients are not admitted)" if not username
                            else f"bad password or unknown account {username!r}")
            return False
        if getattr(session, "will_flag", False):
            will_topic = getattr(session, "will_topic", None) or ""
            if not _acl(config.acl).allows(username, client_id, will_topic, "write"):
                _LOGGER.warning("embedded broker: refused %r (account %r): its last will is on %s, where it may "
                                "not publish", client_id, username, will_topic)
                return False
        return True


class AclTopicCheck(BaseTopicPlugin):
    """amqtt topic-check plugin: the Mosquitto ACL for publish, subscribe and every delivery."""

    @dataclass
    class Config:
        acl: str = HEARTH_ACL

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                              action: Action | None = None) -> bool:
        return self.decide(session, topic, action)

    def decide(self, session: Any, topic: str | None, action: Action | None) -> bool:
        """The check itself, without awaiting (see :meth:`_Broker._topic_filtering`)."""
        if session is None or not topic:
            return False
        acl = _acl(self.context.config.acl)
        username = getattr(session, "username", None)
        client_id = getattr(session, "client_id", None) or ""
        if action == Action.SUBSCRIBE:
            allowed = acl.may_subscribe(username, client_id, topic)
        elif action == Action.PUBLISH:
            allowed = acl.allows(username, client_id, topic, "write")
        elif action == Action.RECEIVE:
            allowed = acl.allows(username, client_id, topic, "read")
        else:
            allowed = False
        if not allowed and action != Action.RECEIVE:
            _LOGGER.warning("embedded broker: %r (account %r) may not %s %s", client_id, username, action, topic)
        return allowed


class _Broker(Broker):
    """amqtt's Broker with two fixes (amqtt 0.12.1).

    * On every CONNECT it replayed the retained messages matching *every* client's
      subscription filters to the new client (``_handle_client_session`` loops over the
      broker-wide ``_subscriptions``), so each satellite received every other satellite's
      retained status. Retained messages now go only to a session that holds the filter,
      and only those the ACL lets it read (amqtt checks reading for live messages only).
    * It deleted (clean session) or took over (persistent session) the session of the
      CONNECT's client id *before* authenticating, so a client with no password could
      unsubscribe the server by connecting with its client id. Authentication now comes
      first, and a client id in use by one account is refused to every other account.
    """

    _acl_check: AclTopicCheck | None = None

    async def _topic_filtering(self, session: Any, topic: str, action: Action) -> bool:
        """Deliveries are checked without an await, the rest through amqtt's plugin hook.

        amqtt awaits its topic plugins for every message and every subscriber. Between
        taking a message off its broadcast queue and handing it to the writers, that await
        would let :meth:`EmbeddedBroker.stop` see an empty queue and close the connections
        with the message still in hand (a satellite's ``session-end`` at shutdown, lost
        about once in 20 runs under load). Asking the same plugin synchronously keeps
        the hand-off in one loop step, as it is without topic checks.
        """
        if action == Action.RECEIVE:
            check = self._acl_check
            if check is None:
                check = self._acl_check = self.plugins_manager.get_plugin("AclTopicCheck")  # type: ignore[assignment]
            if check is not None:
                return check.decide(session, topic, action)
        return await super()._topic_filtering(session, topic, action)

    async def _publish_retained_messages_for_subscription(self, subscription: tuple[str, int], session: Any) -> None:
        topic_filter, qos = subscription
        holders = self._subscriptions.get(topic_filter, ())
        if not any(holder is session for holder, _qos in holders):
            return
        handler = self._get_handler(session)
        if handler is None:
            return
        tasks = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic=topic, action=Action.RECEIVE):
                continue
            tasks.append(asyncio.ensure_future(
                handler.mqtt_publish(retained.topic, retained.data, min(qos, retained.qos or qos), retain=True)))
        if tasks:
            await asyncio.wait(tasks)

    async def _initialize_client_session(self, reader: Any, writer: Any, remote_address: str,
                                         remote_port: int) -> tuple[BrokerProtocolHandler, Any]:
        try:
            handler, session = await BrokerProtocolHandler.init_from_connect(reader, writer, self.plugins_manager)
        except AMQTTError as exc:
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            raise AMQTTError(exc) from exc
        refusal = None
        if not await self._authenticate(session, None):  # type: ignore[arg-type]
            refusal = NOT_AUTHORIZED
        elif session.client_id:
            existing = self._sessions.get(session.client_id)
            if existing is not None and existing[0].username != session.username and (
                    existing[0].transitions.is_connected() or not existing[0].clean_session):
                _LOGGER.warning("embedded broker: refused client id %r for account %r: it belongs to account %r",
                                session.client_id, session.username, existing[0].username)
                refusal = IDENTIFIER_REJECTED
        if refusal is not None:
            await ConnackPacket.build(0, refusal).to_stream(writer)
            await writer.close()
            raise MQTTError(f"refused {session.client_id!r} before any session change")
        # What amqtt's own method does after reading the CONNECT:
        if session.clean_session:
            if session.client_id:
                await self._delete_session(session.client_id)
            else:
                from amqtt.utils import gen_client_id

                session.client_id = gen_client_id()
            session.parent = 0
        elif session.client_id in self._sessions:
            existing, _ = self._sessions[session.client_id]
            for name in ("will_flag", "will_message", "will_topic", "will_qos", "keep_alive", "username",
                         "password"):
                setattr(existing, name, getattr(session, name))
            session = existing
            session.parent = 1
        else:
            session.parent = 0
        delay = self.config.get("timeout-disconnect-delay", 0)
        if session.keep_alive > 0 and isinstance(delay, int):
            session.keep_alive += delay
        return handler, session


@dataclass(frozen=True)
class ProbeResult:
    """What answered on a port the embedded broker could not take."""

    #: True: a broker accepted our CONNECT; False: it refused it; None: no MQTT answer.
    accepted: bool | None
    detail: str


def probe_broker(host: str, port: int, username: str | None, password: str | None,
                 timeout: float = PROBE_S) -> ProbeResult:
    """Send one MQTT 3.1.1 CONNECT and wait for the CONNACK (blocking: run it in a thread)."""
    answered = threading.Event()
    outcome: list[ProbeResult] = []

    def on_connect(client: paho.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        outcome.append(ProbeResult(not reason.is_failure, str(reason)))
        answered.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"hearth-probe-{secrets.token_hex(4)}",
                         protocol=paho.MQTTv311)
    if username is not None:
        client.username_pw_set(username, password)
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10)
    except OSError as err:
        return ProbeResult(None, f"cannot connect: {err}")
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return ProbeResult(None, f"no MQTT answer within {timeout:.0f} s")
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


class EmbeddedBroker:
    KEY: ClassVar[web.AppKey[EmbeddedBroker]]

    def __init__(
        self,
        config: EmbeddedBrokerConfig,
        satellites: Mapping[str, str] | None = None,
        *,
        adopt_credentials: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """``satellites``: satellite id -> password. ``adopt_credentials``: the login for a
        broker found on the port (the server's ``mqtt.username``/``password``)."""
        self.config = config
        self.satellites = dict(satellites or {})
        self.adopt_credentials = adopt_credentials
        #: The server's own account, made afresh at every start and never written anywhere.
        self.server_account = (SERVER_USER, secrets.token_urlsafe(24))
        #: A broker that already answered on the port and is used instead (None: ours runs).
        self.adopted: MqttUrl | None = None
        self._broker: Broker | None = None

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def port(self) -> int:
        return self.config.port

    @property
    def client_url(self) -> MqttUrl:
        """Where and as whom the server's own MQTT client logs in."""
        if self.adopted is not None:
            return self.adopted
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        return MqttUrl(host, self.port, *self.server_account)

    def accounts(self) -> dict[str, str]:
        """Username -> password of every account the broker admits."""
        accounts = dict(self.satellites)
        cfg = self.config
        if cfg.username is not None and cfg.password is not None:
            accounts[cfg.username] = cfg.password
        accounts[SERVER_USER] = self.server_account[1]  # last: nothing can replace it
        return accounts

    def amqtt_config(self) -> dict[str, Any]:
        module = AccountAuth.__module__
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{_bind_host(self.host)}:{self.port}"}},
            # No $SYS publisher and no packet logger: accounts and the ACL only.
            "plugins": {
                f"{module}.AccountAuth": {"accounts": self.accounts(), "acl": HEARTH_ACL},
                f"{module}.AclTopicCheck": {"acl": HEARTH_ACL},
            },
        }

    async def start(self) -> None:
        for name in ("amqtt", "transitions"):
            # amqtt logs every connection at INFO; keep the server's log about the server.
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET and not _LOGGER.isEnabledFor(logging.DEBUG):
                logger.setLevel(logging.WARNING)
        broker = _Broker(self.amqtt_config())
        try:
            await broker.start()
        except Exception as err:
            cause = err.__cause__ or err
            await self._adopt_or_fail(cause, err)
            return
        self._broker = broker
        names = sorted(self.satellites)
        _LOGGER.info("embedded MQTT broker listening on %s:%d; accounts: the server, %s%s", self.host, self.port,
                     f"satellites {', '.join(names)}" if names else "no satellites (set mqtt.satellites.<id>.password)",
                     f", {self.config.username}" if self.config.username else "")

    async def _adopt_or_fail(self, cause: BaseException, err: Exception) -> None:
        """The port is taken: use the broker that answers there, or stop with a clear message."""
        host = self.client_url.host
        username, password = self.adopt_credentials
        probe = await asyncio.to_thread(probe_broker, host, self.port, username, password)
        if probe.accepted:
            self.adopted = MqttUrl(host, self.port, username, password)
            _LOGGER.warning(
                "the embedded MQTT broker cannot listen on %s:%d, but an MQTT broker already answers there: using "
                "that broker for satellites (set mqtt.url to say so explicitly, or mqtt.broker.port to run the "
                "embedded broker elsewhere). Satellite accounts and ACLs are then that broker's.",
                self.host, self.port)
            return
        found = (f" An MQTT broker answers there but refused the server ({probe.detail}): set mqtt.url with its "
                 "username and password (or mqtt.username/mqtt.password)." if probe.accepted is False else "")
        raise StartupError(
            f"the embedded MQTT broker cannot listen on {self.host}:{self.port}: {cause}.{found} Is another broker "
            "running there? Then set mqtt.url (or --mqtt-url) to use it, or set mqtt.broker.port."
        ) from err

    async def stop(self) -> None:
        """Relay what is queued, close every client connection, then shut amqtt down.

        Closing the connections first is not cosmetic. amqtt reads each client inside
        ``asyncio.wait_for``, and Python 3.11's ``wait_for`` loses a cancellation that
        arrives as the read completes: a satellite's PUBACK (for the session-end just
        sent) arriving while ``shutdown()`` cancelled its reader left the reader running
        and ``shutdown()`` waiting for it forever (1 stop in about 7 in a loop test).
        A connection closed beforehand ends its reader by end of stream instead.
        """
        broker, self._broker = self._broker, None
        if broker is None:
            return
        deadline = time.monotonic() + DRAIN_S
        queue = getattr(broker, "_broadcast_queue", None)
        # A message taken off the queue is still on its way until its publish tasks ran:
        # closing the connections before that lost a satellite's session-end (2 runs in 15).
        sending = getattr(broker, "_tasks_queue", ())
        while time.monotonic() < deadline and (
                (queue is not None and not queue.empty()) or any(not task.done() for task in sending)):
            await asyncio.sleep(0.01)
        readers = []
        for _session, handler in list(getattr(broker, "_sessions", {}).values()):
            writer = getattr(getattr(handler, "writer", None), "_writer", None)
            transport = getattr(writer, "transport", None)
            if transport is not None:
                transport.close()  # flushes what is buffered, then closes
            reader = getattr(handler, "_reader_task", None)
            if reader is not None and not reader.done():
                readers.append(reader)
        if readers:
            await asyncio.wait(readers, timeout=STOP_S)
        try:
            await asyncio.wait_for(broker.shutdown(), STOP_S)
        except TimeoutError:
            _LOGGER.warning("embedded MQTT broker: shutdown did not finish within %.0f s; going on", STOP_S)


EmbeddedBroker.KEY = web.AppKey("hearth_mqtt_broker", EmbeddedBroker)


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
