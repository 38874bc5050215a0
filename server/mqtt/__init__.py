"""Satellites over MQTT: the broker connection, the bridge onto Realtime sessions, the embedded broker.

* :mod:`.client` — paho-mqtt in its network thread, handing messages to the event loop
* :mod:`.bridge` — routes satellite messages; arbitration timing; presence; errors
* :mod:`.conversation` — one satellite conversation mapped onto one RealtimeSession
* :mod:`.arbitration` — multi-room arbitration rules (pure, unit-tested)
* :mod:`.broker` — amqtt's broker in-process, when no broker is configured
* :mod:`.service` — the `cleanup_ctx` generators `create_app` installs

docs/mqtt-bridge.md describes the behaviour; hearth.wire defines the protocol.
"""
