"""The Hearth satellite: wake word and edge VAD on a small device, speech over MQTT.

Runs with only the ``satellite`` extra installed; never imports the server.
Entry points: ``hearth satellite`` (see :mod:`.cli`) and ``python -m hearth.satellite``.
"""
