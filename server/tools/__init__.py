"""The tool layer: which tools a session has, and who runs their calls.

Client tools come from the client's own `session.update` and stay the client's to run,
per the Realtime protocol. Server-side tools come from providers the composition root
registers (Home Assistant's catalog, the server's configuration); a `ToolRegistry` gives
each session a toolbox of them, and the session executes their calls.
"""
