"""Who may read and write which topic: the shipped Mosquitto ACL, evaluated for the embedded broker.

The rules are written once, in Mosquitto's ``acl_file`` syntax (:data:`HEARTH_ACL`), and
must say the same as ``firmware-config/mosquitto.acl`` (a test compares the two rule by
rule), so a house gets the same isolation from the embedded broker as from Mosquitto:

* ``user NAME`` starts the rules of one account; ``topic [read|write|readwrite|deny] FILTER``
  lines belong to it;
* ``pattern [read|write|readwrite|deny] FILTER`` applies to every account, with ``%u``
  replaced by the username and ``%c`` by the client id;
* a matching ``deny`` wins; otherwise any matching grant allows; nothing matching refuses.

Reading is checked on every message delivered (and every retained message replayed), so a
wildcard subscription sees only what its account may read; a subscription is refused only
when it cannot match anything the account may read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

Access = Literal["read", "write"]

#: The server's own account (the same name as in firmware-config/mosquitto.acl).
SERVER_USER = "hearth-server"
#: Home Assistant's account.
HOME_ASSISTANT_USER = "homeassistant"
#: Account names with rights beyond one satellite's: never a satellite id.
SERVICE_USERS = (SERVER_USER, HOME_ASSISTANT_USER)

#: The rules; keep them equal to firmware-config/mosquitto.acl.
HEARTH_ACL = """
user hearth-server
topic readwrite hearth/#

user homeassistant
topic read hearth/v1/satellite/+/status
topic read hearth/v1/server/+/status
topic write hearth/v1/satellite/+/command
topic readwrite hearth/v1/ha/#

pattern write hearth/v1/satellite/%u/status
pattern write hearth/v1/satellite/%u/event
pattern write hearth/v1/satellite/%u/audio
pattern read hearth/v1/satellite/%u/command
pattern read hearth/v1/satellite/%u/reply
pattern read hearth/v1/ha/satellite/%u/settings
pattern read hearth/v1/server/+/status
"""


@dataclass(frozen=True)
class Rule:
    #: The account, or None for a ``pattern`` (every account).
    user: str | None
    #: What it grants: {"read"}, {"write"}, both, or empty for ``deny``.
    access: frozenset[str]
    #: A topic filter (``+``/``#``); patterns may hold ``%u`` and ``%c``.
    topic: str

    @property
    def deny(self) -> bool:
        return not self.access


class AclError(ValueError):
    """A line of an ACL file that this evaluator does not understand."""


_ACCESS = {"read": frozenset({"read"}), "write": frozenset({"write"}), "readwrite": frozenset({"read", "write"}),
           "deny": frozenset()}


def parse_acl(text: str) -> tuple[Rule, ...]:
    """Parse Mosquitto ``acl_file`` syntax (comments and blank lines are skipped)."""
    rules: list[Rule] = []
    user: str | None = None
    in_user_block = False
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        rest = rest.strip()
        if keyword == "user":
            if not rest:
                raise AclError(f"line {number}: 'user' without a name")
            user, in_user_block = rest, True
            continue
        if keyword not in ("topic", "pattern"):
            raise AclError(f"line {number}: unknown keyword {keyword!r}")
        access_word, _, topic = rest.partition(" ")
        if access_word in _ACCESS and topic.strip():
            access, topic = _ACCESS[access_word], topic.strip()
        else:  # no access word: readwrite
            access, topic = _ACCESS["readwrite"], rest
        if not topic:
            raise AclError(f"line {number}: {keyword} without a topic")
        if keyword == "pattern":
            rules.append(Rule(None, access, topic))
        else:
            # A `topic` line before any `user` line is for anonymous clients, which no Hearth
            # broker admits; keep it out rather than granting it to somebody.
            if not in_user_block:
                raise AclError(f"line {number}: 'topic' outside a 'user' block (anonymous access)")
            rules.append(Rule(user, access, topic))
    return tuple(rules)


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT matching of a concrete topic against a filter with ``+`` and ``#``."""
    filter_levels = filter_.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)


def filters_overlap(a: str, b: str) -> bool:
    """Whether some concrete topic matches both filters."""
    a_levels, b_levels = a.split("/"), b.split("/")
    for index in range(max(len(a_levels), len(b_levels))):
        x = a_levels[index] if index < len(a_levels) else None
        y = b_levels[index] if index < len(b_levels) else None
        if x == "#" or y == "#":
            return True
        if x is None or y is None:
            return False
        if x != y and x != "+" and y != "+":
            return False
    return True


class Acl:
    """The rules, evaluated for one account and client id at a time (results are cached)."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self.allows = functools.lru_cache(maxsize=4096)(self._allows)
        self.may_subscribe = functools.lru_cache(maxsize=1024)(self._may_subscribe)

    @classmethod
    def parse(cls, text: str = HEARTH_ACL) -> "Acl":
        return cls(parse_acl(text))

    def _rules_for(self, username: str, client_id: str) -> list[Rule]:
        found = []
        for rule in self.rules:
            if rule.user is None:
                topic = rule.topic.replace("%u", username).replace("%c", client_id)
                found.append(Rule(None, rule.access, topic))
            elif rule.user == username:
                found.append(rule)
        return found

    def _allows(self, username: str | None, client_id: str, topic: str, access: Access) -> bool:
        """May ``username`` publish (``write``) to, or receive (``read``) from, the concrete ``topic``?"""
        if not username:
            return False
        rules = [rule for rule in self._rules_for(username, client_id) if topic_matches(rule.topic, topic)]
        if any(rule.deny for rule in rules):
            return False
        return any(access in rule.access for rule in rules)

    def _may_subscribe(self, username: str | None, client_id: str, topic_filter: str) -> bool:
        """Could the filter deliver anything ``username`` may read? (Each message is checked again.)"""
        if not username:
            return False
        return any("read" in rule.access and filters_overlap(rule.topic, topic_filter)
                   for rule in self._rules_for(username, client_id))
